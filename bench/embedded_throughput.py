"""Pages/s of the embedded pipeline with Tesseract over the corpus scans, and ocrq's own CPU per page.

Two runs over the same files in one process: Tesseract (real throughput) and
the InstantEngine double (what ocrq itself costs per page: rendering, database,
result files). Figures only; nothing is asserted.

    .venv/bin/python -m bench.embedded_throughput [--corpus ../shared/corpus]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.instant_engine import instant_chain
from ocrq.settings import Settings, build_settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from ocrq.worker.engines.chain import EngineChain
from ocrq.worker.engines.selection import build_chain

SCANS = (
    "phototest.tif",
    "phototest-rotated-L.png",
    "unlv-8071_093.3B.tif",
    "linn.png",
    "linn-skew.pdf",
    "Seige_of_Vicksburg_Sample_OCR.pdf",
    "doclaynet-2pages.tif",
    "fmc-agreement-indirect-rotation.pdf",
    "la-precinct-bulletin-table-scan.jpg",
    "ru-debian-faq-p10-scan.png",
    "ru-eskdx-p7-table-scan.pdf",
)


def run(files: list[Path], factory: Callable[[Settings], EngineChain]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = build_settings(database_url=f"sqlite:///{Path(tmp) / 'ocrq.db'}", engines=["tesseract"])
        cpu, wall = time.process_time(), time.perf_counter()
        batch = run_embedded_batch(settings, BatchRequest(files, Path(tmp) / "out"), chain_factory=factory)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pages = batch["counts"]["pages"]["done"]
    return {
        "pages": pages,
        "wall_s": round(wall, 2),
        "pages_per_s": round(pages / wall, 3),
        "cpu_s_per_page": round(cpu / pages, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared/corpus")
    args = parser.parse_args()
    files = [args.corpus / name for name in SCANS if (args.corpus / name).exists()]
    tesseract = run(files, build_chain)
    overhead = run(files, instant_chain)
    print(json.dumps({"engine": "tesseract", **tesseract}))
    print(json.dumps({"engine": "instant (ocrq overhead)", **overhead}))
    print(
        f"ocrq's own CPU per page: {overhead['cpu_s_per_page']} s "
        f"({overhead['cpu_s_per_page'] / tesseract['cpu_s_per_page']:.1%} of a Tesseract page)"
    )


if __name__ == "__main__":
    main()
