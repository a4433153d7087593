"""Which packages the distribution holds: the ``api/``, ``worker/`` and ``alembic/`` folders install as
``ocrq.api``, ``ocrq.worker`` and ``ocrq.alembic``, so nothing named plain ``api``, ``worker`` or
``alembic`` lands in site-packages, and a wheel carries its migrations.

pyproject's ``packages.find`` cannot put a prefix on the packages it finds, so the list is made here;
everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_packages, setup

WINGS = ("api", "worker")


def packages() -> list[str]:
    kernel = find_packages(include=["ocrq", "ocrq.*"])
    wings = find_packages(include=[pattern for wing in WINGS for pattern in (wing, f"{wing}.*")])
    return kernel + [f"ocrq.{name}" for name in wings]


FOLDERS = {f"ocrq.{wing}": wing for wing in WINGS} | {"ocrq.alembic": "alembic"}
MIGRATIONS = ["ocrq.alembic", "ocrq.alembic.versions"]
"""``alembic/`` has no ``__init__.py`` (it would shadow the alembic library), so it is listed by name."""

setup(packages=packages() + MIGRATIONS, package_dir=FOLDERS)
