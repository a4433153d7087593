"""Peak RSS of the embedded pipeline on long PDFs: must stay flat in page count (target ≤ 400 MB).

Each size runs in its own process so peaks don't mix. The engine answers at
once (InstantEngine) unless ``--engine tesseract``: what is measured is ocrq's
rendering, database and output path, plus CPU seconds per page of that path.

    .venv/bin/python -m bench.long_pdf_memory --pages 100 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def make_pdf(path: Path, pages: int) -> None:
    document = pymupdf.open()
    for number in range(pages):
        page = document.new_page(width=595, height=842)
        page.insert_font(fontname="dejavu", fontfile=FONT)
        for line in range(30):
            page.insert_text(
                (50, 60 + line * 25),
                f"Page {number + 1}, line {line + 1}: строка текста",
                fontname="dejavu",
                fontsize=12,
            )
    document.subset_fonts()
    document.save(path, garbage=3, deflate=True)


def measure(pdf: Path, pages: int, engine: str) -> dict[str, float]:
    """Runs in a child process that never built the PDF, so its peak is the pipeline's alone."""
    from bench.instant_engine import instant_chain
    from ocrq.settings import build_settings
    from ocrq.worker.batch import BatchRequest, run_embedded_batch
    from ocrq.worker.engines.selection import build_chain

    folder = pdf.parent
    settings = build_settings(database_url=f"sqlite:///{folder / f'ocrq-{engine}.db'}", engines=["tesseract"])
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu, wall = time.process_time(), time.perf_counter()
    factory = build_chain if engine == "tesseract" else instant_chain
    batch = run_embedded_batch(settings, BatchRequest([pdf], folder / "out"), chain_factory=factory)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert batch["counts"]["pages"]["done"] == pages, batch["counts"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "pages": pages,
        "peak_rss_mb": round(peak, 1),
        "rss_before_run_mb": round(before_rss, 1),
        "cpu_s_per_page": round(cpu / pages, 4),
        "pages_per_s": round(pages / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--engine", choices=["instant", "tesseract"], default="instant")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.pages[0], args.engine)))
        return
    rows = [_run_child(pages, args.engine) for pages in args.pages]
    for row in rows:
        print(json.dumps(row))
    if len(rows) > 1:
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(
            f"peak RSS ratio {rows[-1]['pages']} pages / {rows[0]['pages']} pages: {ratio:.2f} "
            f"(flat = 1.0; target peak ≤ 400 MB, measured {rows[-1]['peak_rss_mb']} MB)"
        )


def _run_child(pages: int, engine: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "long.pdf"
        make_pdf(pdf, pages)
        command = [
            sys.executable,
            "-m",
            "bench.long_pdf_memory",
            "--child",
            str(pdf),
            "--pages",
            str(pages),
            "--engine",
            engine,
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
