"""The Transformers engine with a real model: the tiny random Qwen2-VL, loaded and run on the CPU.

The model is built by ``tests/tiny_model.py`` (the same builder the real-vLLM tests use) and loaded
through the engine exactly as a cached model would be. Its text is gibberish by construction, so the
tests assert structure: what was loaded, token accounting, lifecycle, refusals, and the fallback.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from ocrq.db.models import Attempt, Page
from ocrq.db.session import make_engine, make_session_factory
from ocrq.errors import EngineUnavailable, QuantizationUnavailable
from ocrq.schemas import PageTask
from ocrq.settings import Settings
from ocrq.worker.batch import BatchRequest, run_embedded_batch
from ocrq.worker.engines.hf.answers import PageJob, RawAnswer
from ocrq.worker.engines.hf.engine import EngineOptions, TransformersEngine, load_plan
from ocrq.worker.engines.hf.gpu_memory import GiB, GpuMemoryShort, MemoryGuard
from tests.conftest import REPO_ROOT
from tests.factories import make_text_pdf
from tests.hf_support import TINY
from tests.vllm_server import free_port

MISSING = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.transformers,
    pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not importable: pip install -e '.[transformers]'"),
]

MAX_NEW_TOKENS = 12


@pytest.fixture
def tiny_settings(make_settings: Callable[..., Settings], tiny_model: Path) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "engines": ["transformers"],
            "transformers_model": TINY,
            "transformers_model_dir": tiny_model,
            "transformers_max_new_tokens": MAX_NEW_TOKENS,
            "transformers_device": "cpu",
            "transformers_ladder_retries": 0,  # one greedy generation per page unless a test climbs
            "text_layer": "off",  # the typed test PDFs stand in for scans: the model must read them
        }
        return make_settings(**(base | overrides))

    return build


def tiny_engine(settings: Settings, guard: MemoryGuard | None = None, **options: Any) -> TransformersEngine:
    return TransformersEngine(
        load_plan(settings), guard, replace(EngineOptions.from_settings(settings), **options)
    )


@pytest.fixture(scope="module")
def page() -> Image.Image:
    image = Image.new("RGB", (420, 600), "white")
    image.paste((0, 0, 0), (40, 60, 380, 90))
    return image


def test_building_the_engine_loads_nothing(tiny_settings: Callable[..., Settings]) -> None:
    """A prefork parent builds the chain to size its pool: that must not import torch or load."""
    settings = tiny_settings()
    script = (
        "import sys; from ocrq.settings import build_settings;"
        "from ocrq.worker.engines.selection import build_chain;"
        f"chain = build_chain(build_settings(**{settings.model_dump(mode='json')!r}));"
        "engine = chain.engines[0];"
        "print(engine.name, engine.host.loaded, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["transformers", "False", "False", "False"]


def test_a_page_is_loaded_generated_and_read(
    tiny_settings: Callable[..., Settings], page: Image.Image
) -> None:
    engine = tiny_engine(tiny_settings())
    assert not engine.host.loaded
    first = engine.recognize(page, PageTask())
    assert engine.host.loaded and engine.host.loads == 1
    assert (first.engine, first.model) == ("transformers", "Qwen/Qwen2-VL-2B-Instruct")
    assert isinstance(first.text, str) and first.markdown == first.text  # a text model's reading
    image_tokens = (420 * 616) // (28 * 28)  # the page padded to the 28-px grid, one token per 28x28
    assert first.tokens_in is not None and first.tokens_in > image_tokens
    assert first.tokens_out is not None and 1 <= first.tokens_out <= MAX_NEW_TOKENS
    second = engine.recognize(page, PageTask())
    assert engine.host.loads == 1  # stays loaded across pages
    assert (second.text, second.tokens_out) == (first.text, first.tokens_out)  # greedy: deterministic
    engine.close()
    assert not engine.host.loaded


def test_concurrent_pages_share_generate_calls(
    tiny_settings: Callable[..., Settings], page: Image.Image
) -> None:
    engine = tiny_engine(tiny_settings(), batch_size=4)
    alone = engine.recognize(page, PageTask())
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _i: engine.recognize(page, PageTask()), range(4)))
    assert engine.max_in_flight == 4 and len(results) == 4
    assert {r.tokens_in for r in results} == {alone.tokens_in}  # left padding is not counted as prompt
    assert all(r.engine == "transformers" and r.tokens_out for r in results)
    engine.close()


def test_an_idle_model_is_released_and_loaded_again(
    tiny_settings: Callable[..., Settings], page: Image.Image
) -> None:
    engine = tiny_engine(tiny_settings(transformers_idle_unload_seconds=0.3))
    engine.recognize(page, PageTask())
    model = weakref.ref(engine.host._model.model)  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while engine.host.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.host.loaded
    gc.collect()
    assert model() is None  # nothing keeps the weights alive
    engine.recognize(page, PageTask())
    assert engine.host.loaded and engine.host.loads == 2
    engine.close()


def test_one_model_per_process(tiny_settings: Callable[..., Settings], page: Image.Image) -> None:
    first = tiny_engine(tiny_settings())
    second = tiny_engine(tiny_settings(transformers_model="qwen2-vl-7b"))
    first.recognize(page, PageTask())
    second.recognize(page, PageTask())
    assert second.host.loaded and not first.host.loaded
    second.close()


def test_the_memory_guard_refuses_before_loading(
    tiny_settings: Callable[..., Settings], page: Image.Image
) -> None:
    readings: list[int] = []

    def little_free(index: int) -> int:
        readings.append(index)
        return 64 * 1024**2

    engine = tiny_engine(tiny_settings(), MemoryGuard(read_free=little_free))
    with pytest.raises(GpuMemoryShort, match=r"needs about 1\.0 GiB on the CPU but only 0\.1 GiB") as refused:
        engine.recognize(page, PageTask())
    assert refused.value.retryable and isinstance(refused.value, EngineUnavailable)  # the chain moves on
    assert readings == [-1] and not engine.host.loaded and engine.host.loads == 0
    roomy = tiny_engine(tiny_settings(), MemoryGuard(read_free=lambda _index: 8 * GiB))
    assert roomy.recognize(page, PageTask()).engine == "transformers"
    roomy.close()


def test_looping_or_cut_answers_climb_the_shared_ladder(
    tiny_settings: Callable[..., Settings], page: Image.Image
) -> None:
    """The vLLM engine's ladder (worker/engines/ladder.py): cut at the cap, so hotter samples follow."""
    engine = tiny_engine(tiny_settings(transformers_max_new_tokens=4, transformers_ladder_retries=2))
    asked: list[tuple[float, int]] = []
    answers: list[RawAnswer] = []
    submit = engine.generator.submit

    def spy(job: PageJob) -> RawAnswer:
        asked.append((job.temperature, job.max_new_tokens))
        answers.append(submit(job))
        return answers[-1]

    engine.generator.submit = spy  # type: ignore[method-assign]
    result = engine.recognize(page, PageTask())
    cut = [answer.finish_reason == "length" for answer in answers]
    assert asked[0] == (0.0, 4) and len(asked) == 1 + min(2, cut.index(False) if False in cut else 2)
    assert [t for t, _ in asked] == [0.0, 0.3, 0.6][: len(asked)]  # no room past the cap: hotter, not longer
    assert result.tokens_out == sum(a.tokens_out or 0 for a in answers)  # every generation is paid for
    assert result.tokens_in == sum(a.tokens_in or 0 for a in answers)
    engine.close()


def test_quantisation_without_cuda_is_one_line_then_full_precision_or_a_refusal(
    tiny_settings: Callable[..., Settings], page: Image.Image, caplog: pytest.LogCaptureFixture
) -> None:
    engine = tiny_engine(tiny_settings(hf_quantization="8bit"))
    with caplog.at_level(logging.WARNING, logger="ocrq.worker.engines"):
        assert engine.recognize(page, PageTask()).engine == "transformers"
        engine.recognize(page, PageTask())
    lines = [r.getMessage() for r in caplog.records if "bit loading" in r.getMessage()]
    assert lines == [
        "qwen2-vl-2b: 8-bit loading needs bitsandbytes on CUDA, and this host has no CUDA device; "
        "loading in full precision instead"
    ]  # one line per load, not per page
    loaded = engine.generator.loaded_model
    assert loaded is not None and loaded.quantization.bits == 0 and loaded.dtype == "float32"
    engine.close()
    strict = tiny_engine(tiny_settings(hf_quantization="4bit", hf_quantization_fallback="refuse"))
    with pytest.raises(QuantizationUnavailable, match=r"4-bit loading .* refusing") as refused:
        strict.recognize(page, PageTask())
    assert not strict.host.loaded and not refused.value.retryable


def test_a_dead_vllm_falls_back_to_transformers_page_by_page(
    tiny_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_text_pdf(folder / "two.pdf", ["Invoice 42", "Счёт 42"])
    settings = tiny_settings(
        engines=["vllm", "transformers"],
        vllm_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        vllm_model=TINY,
        vllm_retries=0,
        breaker_failures=100,  # keep asking vLLM, so every page shows both attempts
        render_dpi=72,
        fallback_after_seconds=0,  # the fallback itself is under test here; its grace in test_fallback_grace
    )
    summary = run_embedded_batch(settings, BatchRequest([folder], tmp_path / "out"))
    assert summary["status"] == "done" and summary["counts"]["engines"] == {"transformers": 2}
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        pages = session.scalars(select(Page).order_by(Page.index)).all()
        attempts = {
            page.index: [
                (a.engine, a.outcome, a.error_code is not None)
                for a in session.scalars(
                    select(Attempt).where(Attempt.page_id == page.id).order_by(Attempt.id)
                )
            ]
            for page in pages
        }
    assert attempts == {n: [("vllm", "error", True), ("transformers", "ok", False)] for n in (0, 1)}
    written = json.loads((tmp_path / "out" / "two.pdf.json").read_text())
    assert [p["engine"] for p in written["pages"]] == ["transformers", "transformers"]
