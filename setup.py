"""Which packages the distribution holds: the ``api/`` and ``worker/`` folders install as ``ocrq.api``
and ``ocrq.worker``, so nothing named plain ``api`` or ``worker`` lands in site-packages.

pyproject's ``packages.find`` cannot put a prefix on the packages it finds, so the list is made here;
everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_packages, setup

WINGS = ("api", "worker")


def packages() -> list[str]:
    kernel = find_packages(include=["ocrq", "ocrq.*"])
    wings = find_packages(include=[pattern for wing in WINGS for pattern in (wing, f"{wing}.*")])
    return kernel + [f"ocrq.{name}" for name in wings]


setup(packages=packages(), package_dir={f"ocrq.{wing}": wing for wing in WINGS})
