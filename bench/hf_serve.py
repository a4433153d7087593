"""The Transformers engine in-process against the same engine behind ``ocrq serve-hf``.

The tiny random Qwen2-VL (``tests/tiny_model.py``, built with the vLLM venv) on this CPU: pages/s at
concurrency 1 and 4 in-process (``TransformersEngine``, batches of 4) and through ``serve-hf`` (ocrq's
vLLM engine over HTTP, the server batching up to 4), every page asking for the same number of
greedy tokens with no retry ladder; then load and unload times, in-process and through
``/models/load`` and ``/models/unload``. The tiny model makes generation cheap, so the figures
show what the server adds (HTTP, PNG encode and decode, the batch window) rather than model speed.

    .venv/bin/python -m bench.hf_serve [--pages 8] [--rounds 3] [--tokens 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings, build_settings
from ocrq.worker.engines.hf.engine import EngineOptions, TransformersEngine, load_plan
from ocrq.worker.engines.vllm.engine import VllmEngine
from tests.hf_support import TINY, readable_by_transformers_4, running_serve_hf
from tests.vllm_server import build_tiny_model

TASK = PageTask(mode=PromptMode.TEXT_ONLY)


def page() -> Image.Image:
    """A 150-DPI A4 page with a few lines: the registry's Qwen2-VL budget caps it, as for real pages."""
    image = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(image)
    for line in range(30):
        draw.text((100, 100 + line * 50), f"Line {line}: invoice 42, total 1 234,56 EUR", fill="black")
    return image


def pages_per_second(
    recognize: Callable[[Image.Image, PageTask], object], pages: int, concurrency: int
) -> float:
    image = page()
    recognize(image, TASK)  # warm: first batch, allocator, connections
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _i: recognize(image, TASK), range(pages)))
    return pages / (time.perf_counter() - started)


def settings_for(model_dir: Path, tokens: int, **extra: object) -> Settings:
    base: dict[str, object] = {
        "engines": ["transformers"],
        "transformers_model": TINY,
        "transformers_model_dir": model_dir,
        "transformers_device": "cpu",
        "transformers_max_new_tokens": tokens,
        "transformers_ladder_retries": 0,
        "transformers_batch_size": 4,
        "vllm_ladder_retries": 0,
        "vllm_adapt_every_s": 0,
    }
    return build_settings(**(base | extra))


def compare(model_dir: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """Rounds alternate in-process and served runs, so the machine's drifting load hits both alike."""
    settings = settings_for(model_dir, args.tokens)
    local = TransformersEngine(load_plan(settings), None, EngineOptions.from_settings(settings))
    figures = {"in-process load s (cold: imports + weights)": local.generator.load()}
    flags = ("--max-new-tokens", str(args.tokens), "--batch-size", "4")
    started = time.perf_counter()
    with running_serve_hf(model_dir, work, *flags) as server:
        figures["serve-hf start to /health s (imports + load)"] = time.perf_counter() - started
        remote = VllmEngine.from_settings(
            settings_for(model_dir, args.tokens, engines=["vllm"], vllm_url=server.url, vllm_model=TINY)
        )
        for concurrency in (1, 4):
            rounds = [
                (pages_per_second(local.recognize, args.pages, concurrency),
                 pages_per_second(remote.recognize, args.pages, concurrency))
                for _ in range(args.rounds)
            ]  # fmt: skip
            figures[f"in-process c={concurrency}"] = statistics.median(r[0] for r in rounds)
            figures[f"serve-hf c={concurrency}"] = statistics.median(r[1] for r in rounds)
            figures[f"ratio serve-hf/in-process c={concurrency}"] = statistics.median(
                r[1] / r[0] for r in rounds
            )
        remote.close()
        figures |= load_cycles(local, server.url, args.rounds)
    local.close()
    return figures


def load_cycles(local: TransformersEngine, url: str, rounds: int) -> dict[str, float]:
    """Median unload and (warm) load seconds, in-process and through the server's routes."""
    cycles = [
        (_timed(local.generator.unload), _timed(local.generator.load),
         _timed(lambda: _post(url, "/models/unload")), _timed(lambda: _post(url, "/models/load")))
        for _ in range(rounds)
    ]  # fmt: skip
    names = (
        "in-process unload s",
        "in-process load s (warm)",
        "serve-hf /models/unload s",
        "serve-hf /models/load s",
    )
    return {name: statistics.median(cycle[i] for cycle in cycles) for i, name in enumerate(names)}


def _post(url: str, path: str) -> None:
    httpx.post(f"{url}{path}", json={"model": TINY}, timeout=300).raise_for_status()


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        default="1",
        help="OMP_NUM_THREADS for both processes: on a shared, oversubscribed CPU "
        "torch's spinning intra-op threads cost more than they give (1 was 3-5x faster here)",
    )
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = args.threads  # before torch loads; the server inherits it
    with tempfile.TemporaryDirectory(prefix="ocrq-bench-hf-") as folder:
        work = Path(folder)
        model_dir = build_tiny_model(work / "tiny-qwen2-vl")
        readable_by_transformers_4(model_dir)
        figures = compare(model_dir, work, args)
    print(
        f"tiny Qwen2-VL, {args.pages} pages of 1240x1754 px per run, {args.tokens} greedy tokens each, "
        f"median of {args.rounds} alternating rounds, OMP_NUM_THREADS={args.threads}"
    )
    for name, value in figures.items():
        unit = "pages/s" if name.startswith(("in-process c=", "serve-hf c=")) else ""
        print(f"  {name:<48} {value:8.2f} {unit}")


if __name__ == "__main__":
    main()
