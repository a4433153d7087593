"""Find Tesseract's language data before any engine is built.

The tesserocr wheel bundles its own libtesseract whose compiled-in data path
points nowhere on this host, so ocrq looks for ``tessdata`` itself and checks
every language up front: a missing language must surface as
:class:`~ocrq.errors.EngineUnavailable` when the chain is built, not as a
Tesseract failure on the first page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ocrq.errors import EngineUnavailable

OSD_LANGUAGE = "osd"
"""Orientation and script detection model, needed only when pages may be sideways."""

SYSTEM_PARENTS = (Path("/usr/share/tesseract-ocr"),)
"""Debian/Ubuntu keep one ``<version>/tessdata`` per major version under these."""
FIXED_DIRS = (Path("/usr/share/tessdata"), Path("/usr/local/share/tessdata"))
"""Fedora, Arch and source builds."""


def split_langs(langs: str) -> list[str]:
    """Tesseract's ``rus+eng`` syntax as a list; an empty list is a configuration mistake."""
    names = [part.strip() for part in langs.split("+") if part.strip()]
    if not names:
        raise EngineUnavailable(f"no Tesseract language given (langs={langs!r})")
    return names


def installed_languages(directory: Path) -> list[str]:
    """Languages in a tessdata directory, for error messages that say what would work."""
    if not directory.is_dir():
        return []
    return sorted(path.name.removesuffix(".traineddata") for path in directory.glob("*.traineddata"))


def _version_key(directory: Path) -> tuple[int, ...]:
    """Sort ``.../5/tessdata`` above ``.../4.00/tessdata`` so the newest data wins."""
    return tuple(int(number) for number in re.findall(r"\d+", directory.parent.name))


def candidate_dirs() -> list[Path]:
    """Where Tesseract data usually lives when nothing is configured, best first."""
    versioned: list[Path] = []
    for parent in SYSTEM_PARENTS:
        versioned.extend(parent.glob("*/tessdata"))
    return sorted(versioned, key=_version_key, reverse=True) + list(FIXED_DIRS)


def _from_prefix(prefix: str) -> Path:
    """``TESSDATA_PREFIX`` names the tessdata dir since Tesseract 4 but its parent before; accept both."""
    path = Path(prefix)
    if not installed_languages(path) and (path / "tessdata").is_dir():
        return path / "tessdata"
    return path


def find_tessdata(explicit: Path | None = None) -> Path:
    """The tessdata directory to use: configured, else ``TESSDATA_PREFIX``, else the first system one."""
    if explicit is not None:
        return explicit
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        return _from_prefix(prefix)
    candidates = candidate_dirs()
    for directory in candidates:
        if directory.is_dir():
            return directory
    looked = ", ".join(str(path) for path in candidates)
    raise EngineUnavailable(
        f"no Tesseract data found (looked in {looked}); install tesseract-ocr language packages "
        "or set OCRQ_TESSDATA_DIR / TESSDATA_PREFIX"
    )


def require_languages(langs: str, tessdata_dir: Path | None, detect_orientation: bool) -> Path:
    """Resolve tessdata and prove every needed model is there, naming what is missing and what exists."""
    directory = find_tessdata(tessdata_dir)
    needed = split_langs(langs) + ([OSD_LANGUAGE] if detect_orientation else [])
    missing = [lang for lang in needed if not (directory / f"{lang}.traineddata").is_file()]
    if missing:
        installed = ", ".join(installed_languages(directory)) or "none"
        hint = " (osd is needed for orientation detection)" if OSD_LANGUAGE in missing else ""
        raise EngineUnavailable(
            f"Tesseract language(s) {'+'.join(missing)} not found in {directory}{hint}; "
            f"installed there: {installed}"
        )
    return directory
