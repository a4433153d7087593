"""Print the dependencies pyproject.toml declares (plus the named extras), one per line.

The image installs these in a layer of their own before the code is copied in, so editing the code
rebuilds only the small wheel layer; the list has a single source, pyproject.toml.

    python deploy/requirements_from_pyproject.py pyproject.toml transformers,quantization
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: dict, extras: list[str]) -> list[str]:
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [name for name in extras if name not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml has {sorted(optional)}")
    return [*project["dependencies"], *(dep for name in extras for dep in optional[name])]


def main(argv: list[str]) -> None:
    with open(argv[1], "rb") as file:
        pyproject = tomllib.load(file)
    extras = [name.strip() for name in (argv[2] if len(argv) > 2 else "").split(",") if name.strip()]
    print("\n".join(requirements(pyproject, extras)))


if __name__ == "__main__":
    main(sys.argv)
