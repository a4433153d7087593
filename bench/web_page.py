"""What the web page costs the server per view, next to OCRing the page it shows.

One A4 scan (200 dpi, 30 printed lines) is OCRed by Tesseract on the embedded default, then each
page of the site is requested ``--reps`` times through the app (in-process client, no network):
the jobs list with ``--jobs`` jobs on it, the job page, the page viewer, its picture, the server's
layout picture and one live-progress snapshot (what each SSE tick computes). Figures are medians
in milliseconds, and each as a share of the page's own OCR time.

    .venv/bin/python -m bench.web_page --jobs 50 --reps 20
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from ocrq.api.rest.app import create_app
from ocrq.api.rest.security import add_key
from ocrq.settings import build_settings
from ocrq.worker.batch import open_database

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
LINE = "The quick brown fox jumps over the lazy dog near the river bank."


def a4_scan(path: Path) -> Path:
    image = Image.new("L", (1654, 2339), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 34)
    for number in range(30):
        draw.text((150, 150 + number * 68), f"{number + 1}. {LINE}", font=font, fill=0)
    image.save(path, dpi=(200, 200))
    return path


def signed_in(client: TestClient, key: str) -> None:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    client.post("/login", data={"csrf": token.group(1), "key": key}, follow_redirects=False)


def median_ms(client: TestClient, path: str, reps: int, headers: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        response = client.get(path, headers=headers or {}, follow_redirects=False)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ocrq-bench-web-"))
    settings = build_settings(
        database_url=f"sqlite:///{folder / 'ocrq.db'}",
        engines=["tesseract"],
        tesseract_langs="eng",
        api_upload_dir=folder / "uploads",
        output_dir=folder / "results",
    )
    _, sessions = open_database(settings)
    key = add_key(sessions, "bench")
    scan = a4_scan(folder / "a4.png")
    with TestClient(create_app(settings)) as client:
        api = {"X-API-Key": key}
        ids = []
        for _ in range(args.jobs):
            files = [("files", (scan.name, scan.read_bytes(), "image/png"))]
            job = client.post("/v1/jobs", files=files, headers=api).json()  # later jobs reuse the first's OCR
            ids.append(job["id"])
        for job_id in ids:
            client.get(f"/v1/jobs/{job_id}", params={"wait": 120}, headers=api)
        page = client.get("/v1/documents/1/pages/1", headers=api).json()
        ocr_ms = page["timings"]["ocr_ms"] + page["timings"]["render_ms"]
        signed_in(client, key)
        report(client, ids[0], args, ocr_ms)


def report(client: TestClient, job_id: int, args: argparse.Namespace, ocr_ms: float) -> None:
    views = {
        f"jobs list ({args.jobs} jobs)": "/",
        "job page": f"/jobs/{job_id}",
        "page viewer": "/documents/1/pages/1",
        "page picture (JPEG)": "/documents/1/pages/1/picture.jpg",
        "layout picture (PNG)": "/documents/1/pages/1/layout.png",
        "live snapshot, all jobs": "/events/jobs",
        "live snapshot, one job": f"/events/jobs?job={job_id}",
    }
    print(f"OCR of the A4 page (render + Tesseract): {ocr_ms:.0f} ms")
    print(f"{'view':<28}{'median ms':>10}{'x OCR':>8}")
    for name, path in views.items():
        ms = median_ms(client, path, args.reps)
        print(f"{name:<28}{ms:>10.1f}{ms / ocr_ms:>8.3f}")


if __name__ == "__main__":
    main()
