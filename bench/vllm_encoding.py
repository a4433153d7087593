"""What it costs to get a page ready for vLLM: render, resize (model rule), encode, per image format.

Renders real PDF pages at 200 DPI the way the pipeline does, resizes them with the registry's rule
for a model (dots.ocr by default), then encodes each page as PNG (zlib levels 1 and 6) and JPEG
(quality 90 and 95), in RGB and in greyscale, and prints milliseconds and kilobytes (base64 adds a
third on the wire). Figures only; nothing is asserted. The chosen defaults live in
``worker/engines/vllm/request.py`` and the registry's ``image_format``.

    .venv/bin/python -m bench.vllm_encoding [--corpus ../shared/corpus] [--model dots.ocr] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ocrq.schemas import DocumentType
from ocrq.worker.documents.render import RenderLimits, open_document
from ocrq.worker.engines.vllm.request import PreparedImage, prepare_image
from ocrq.worker.models.registry import ModelSpec, bundled_registry
from ocrq.worker.ocr_output.resize import smart_resize

PAGES = ("2305.03393v1-pg9.pdf", "debian-faq.ru.pdf", "Seige_of_Vicksburg_Sample_OCR.pdf")
LIMITS = RenderLimits(dpi=200, max_page_pixels=40_000_000, max_source_pixels=200_000_000, max_pages=10_000)
VARIANTS: dict[str, Callable[[Image.Image, io.BytesIO], None]] = {
    "png-1": lambda image, out: image.save(out, "PNG", compress_level=1),
    "png-6": lambda image, out: image.save(out, "PNG", compress_level=6),
    "jpeg-90": lambda image, out: image.save(out, "JPEG", quality=90),
    "jpeg-95": lambda image, out: image.save(out, "JPEG", quality=95),
}


def timed(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median milliseconds over ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def encode(image: Image.Image, variant: str) -> int:
    buffer = io.BytesIO()
    VARIANTS[variant](image, buffer)
    return buffer.tell()


def measure(path: Path, model: str, repeat: int) -> None:
    spec = bundled_registry().get(model)
    with open_document(path, DocumentType.PDF, LIMITS) as document:
        render_ms, page = timed(lambda: document.render(0, "RGB"), repeat)
    assert isinstance(page, Image.Image)
    new_h, new_w = smart_resize(page.height, page.width, spec.image_factor, spec.min_pixels, spec.max_pixels)
    resize_ms, sent = timed(lambda: page.resize((new_w, new_h), Image.Resampling.BICUBIC), repeat)
    assert isinstance(sent, Image.Image)
    print(f"\n{path.name}: render {page.size} {render_ms:.0f} ms, bicubic to {sent.size} {resize_ms:.0f} ms")
    for mode in ("L", "RGB"):  # the engine's default (grey) and OCRQ_VLLM_COLOR=true
        engine_path(path, mode, spec, repeat, rgb_render_ms=render_ms)
    for mode in ("RGB", "L"):
        image = sent if mode == "RGB" else sent.convert("L")
        for variant in VARIANTS:
            ms, size = timed(lambda image=image, variant=variant: encode(image, variant), repeat)
            print(
                f"  {mode:3} {variant:8} {ms:7.0f} ms {size / 1024:8.0f} KiB  ({ms / render_ms:4.1f}x render)"
            )


def engine_path(document_path: Path, mode: str, spec: ModelSpec, repeat: int, rgb_render_ms: float) -> None:
    """Page preparation cost: render in the engine's mode, then prepare_image; over MuPDF's RGB
    render alone (what dots.ocr's own parser pays before encoding) and over this mode's render."""
    with open_document(document_path, DocumentType.PDF, LIMITS) as document:
        render_ms, page = timed(lambda: document.render(0, mode), repeat)
    prepare_ms, prepared = timed(lambda: prepare_image(page, spec, spec.max_pixels), repeat)
    assert isinstance(prepared, PreparedImage)
    print(
        f"  engine path, {mode:3} render {render_ms:.0f} ms + prepare {prepare_ms:.0f} ms "
        f"({prepared.encoded_bytes / 1024:.0f} KiB {spec.image_format}): "
        f"(render+prepare)/RGB render {(render_ms + prepare_ms) / rgb_render_ms:.1f}, "
        f"/own render {(render_ms + prepare_ms) / render_ms:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus"
    )
    parser.add_argument("--model", default="dots.ocr")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name in PAGES:
        if (args.corpus / name).exists():
            measure(args.corpus / name, args.model, args.repeat)


if __name__ == "__main__":
    main()
