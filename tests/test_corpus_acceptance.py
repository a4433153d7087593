"""Acceptance: `submit-batch` over the shared corpus; each file's outcome as its MANIFEST describes it.

Character error rate against the ``.gt.txt`` files is printed for every file
with ground truth (``pytest -s`` shows it) and bounded for a few clean pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rapidfuzz.distance import Levenshtein

from ocrq.api.cli import cli
from tests.conftest import CORPUS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CORPUS / "MANIFEST.md").exists(), reason="../shared/corpus is not here"),
]

EXPECTED_ERRORS = {
    "libreoffice-writer-password.pdf": "encrypted",
    "invalid.pdf": "unreadable",
    "zero-byte.pdf": "empty",
    "qpdf-empty-zero-pages.pdf": "empty",
    "decompression_bomb.gif": "too_large",
}
EXPECTED_TYPES = {
    "typewriter-scan.pdf": "png",
    "phototest.tif": "tiff",
    "doclaynet-2pages.tif": "tiff",
    "la-precinct-bulletin-table-scan.jpg": "jpeg",
    "linn.png": "png",
}
CER_BOUNDS = {
    "phototest.tif": 0.05,
    "phototest-rotated-L.png": 0.05,
    "crazyones.pdf": 0.1,
    "ru-debian-faq-p10-scan.png": 0.15,
}


def _manifest_files() -> list[str]:
    rows = re.findall(r"^\| `([^`]+)` \|", (CORPUS / "MANIFEST.md").read_text(), flags=re.MULTILINE)
    return [name for name in rows if (CORPUS / name).exists()]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, dict], Path]:
    work = tmp_path_factory.mktemp("corpus")
    inputs = work / "in"
    inputs.mkdir()
    for name in _manifest_files():  # links, not copies: the run reads the shared files in place
        (inputs / name).symlink_to(CORPUS / name)
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{work / 'ocrq.db'}", "OCRQ_ENGINES": "tesseract"}
    result = CliRunner().invoke(cli, ["submit-batch", str(inputs), "--out", str(work / "out")], env=env)
    batch = json.loads((work / "out" / "batch.json").read_text())
    return result.exit_code, {doc["path"]: doc for doc in batch["documents"]}, work / "out"


def test_every_manifest_file_has_its_outcome(corpus_run: tuple[int, dict[str, dict], Path]) -> None:
    exit_code, documents, _ = corpus_run
    assert exit_code == 3
    assert set(documents) == set(_manifest_files())
    for name, doc in documents.items():
        if name in EXPECTED_ERRORS:
            assert (doc["status"], doc["error"]["code"]) == ("failed", EXPECTED_ERRORS[name]), name
        else:
            assert doc["status"] == "done", (name, doc["error"])
            assert doc["pages_done"] == doc["pages"] > 0, name


def test_types_come_from_content(corpus_run: tuple[int, dict[str, dict], Path]) -> None:
    _, documents, _ = corpus_run
    assert {name: documents[name]["type"] for name in EXPECTED_TYPES} == EXPECTED_TYPES


def test_character_error_rate_against_ground_truth(corpus_run: tuple[int, dict[str, dict], Path]) -> None:
    _, documents, out = corpus_run
    rates = {}
    for name, doc in sorted(documents.items()):
        truth = CORPUS / (Path(name).stem + ".gt.txt")
        if doc["status"] == "done" and truth.exists():
            rates[name] = _cer(_page_texts(out / f"{name}.json"), truth.read_text(encoding="utf-8"))
    print("\ncharacter error rate (whitespace-normalised, per page, then averaged):")
    for name, rate in rates.items():
        print(f"  {rate:6.3f}  {name}")
    assert len(rates) >= 15
    for name, bound in CER_BOUNDS.items():
        assert rates[name] <= bound, (name, rates[name])


def _page_texts(result_json: Path) -> list[str]:
    return [page["text"] or "" for page in json.loads(result_json.read_text())["pages"]]


def _cer(pages: list[str], truth: str) -> float:
    truths = truth.split("\f")
    if len(truths) != len(pages):
        truths, pages = ["\n".join(truths)], ["\n".join(pages)]
    rates = [_page_cer(page, gt) for page, gt in zip(pages, truths, strict=True) if gt.strip()]
    return sum(rates) / len(rates) if rates else 0.0


def _page_cer(text: str, truth: str) -> float:
    normal_text, normal_truth = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(normal_text, normal_truth) / max(len(normal_truth), 1)
