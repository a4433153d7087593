"""The recipes of architectures native to transformers, run end to end on tiny random-weight models.

Qwen2.5-VL, Qwen3-VL, GOT-OCR2 and the converted InternVL (``-hf``) are built here by
``tests/tiny_models.py`` with their real processor classes and loaded through the engine exactly as
a cached checkpoint would be (the registry entry's class, pixel limits and prompts). Qwen2-VL has
its own tests in ``test_transformers_engine.py``. Output is gibberish by construction: the tests
assert what was loaded and asked, token accounting and batching.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.engines.hf.engine import EngineOptions, TransformersEngine, load_plan, prepare_page
from tests import tiny_models

MISSING = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.transformers,
    pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not importable: pip install -e '.[transformers]'"),
]
MAX_NEW_TOKENS = 6
RECIPES = {
    "qwen2.5-vl-3b": "chat-template",
    "qwen3-vl-2b": "chat-template",
    "got-ocr-2.0": "got-ocr2",
    "internvl3-1b-hf": "chat-template",
}


@pytest.fixture(scope="session")
def bpe() -> Any:
    return tiny_models.trained_bpe()


@pytest.fixture(scope="module")
def built(bpe: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Each tiny model built once per module, when a test first needs it."""
    folders: dict[str, Path] = {}

    def build(key: str) -> Path:
        if key not in folders:
            folders[key] = tiny_models.build(key, bpe, tmp_path_factory.mktemp("tiny") / key)
        return folders[key]

    return build


@pytest.fixture(params=sorted(RECIPES))
def tiny(request: pytest.FixtureRequest, built: Callable[[str], Path]) -> tuple[str, Path]:
    return request.param, built(request.param)


@pytest.fixture(scope="module")
def page() -> Image.Image:
    image = Image.new("RGB", (420, 600), "white")
    image.paste((0, 0, 0), (40, 60, 380, 90))
    return image


def engine_for(make_settings: Callable[..., Settings], key: str, model_dir: Path) -> TransformersEngine:
    settings = make_settings(
        engines=["transformers"],
        transformers_model=key,
        transformers_model_dir=model_dir,
        transformers_device="cpu",
        transformers_max_new_tokens=MAX_NEW_TOKENS,
        transformers_ladder_retries=0,
    )
    options = replace(EngineOptions.from_settings(settings), batch_window_seconds=2.0, batch_size=3)
    return TransformersEngine(load_plan(settings), None, options)


def image_tokens(key: str, page: Image.Image, engine: TransformersEngine) -> int:
    """Visual tokens the page must cost: the resized grid for Qwen, GOT's fixed 256, InternVL's 4 per tile."""
    if key == "got-ocr-2.0":
        return 256
    if key == "internvl3-1b-hf":
        return 4
    width, height = prepare_page(page, engine.spec).plan.target
    return width * height // engine.spec.image_factor**2


def test_a_page_runs_through_the_registrys_recipe(
    tiny: tuple[str, Path], make_settings: Callable[..., Settings], page: Image.Image
) -> None:
    key, model_dir = tiny
    engine = engine_for(make_settings, key, model_dir)
    assert engine.plan.recipe.name == RECIPES[key]
    first = engine.recognize(page, PageTask())
    loaded = engine.generator.loaded_model
    assert loaded is not None and type(loaded.model).__name__ == engine.spec.architecture
    assert (first.engine, first.model) == ("transformers", engine.spec.hf_repo)
    assert first.tokens_in is not None and first.tokens_in > image_tokens(key, page, engine)
    assert first.tokens_out is not None and 1 <= first.tokens_out <= MAX_NEW_TOKENS
    again = engine.recognize(page, PageTask())
    assert (again.text, again.tokens_in, again.tokens_out) == (first.text, first.tokens_in, first.tokens_out)
    engine.close()


def test_concurrent_pages_share_one_generate(
    tiny: tuple[str, Path], make_settings: Callable[..., Settings], page: Image.Image
) -> None:
    key, model_dir = tiny
    engine = engine_for(make_settings, key, model_dir)
    alone = engine.recognize(page, PageTask())
    before = (engine.generator.batches, engine.generator.pages)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _i: engine.recognize(page, PageTask()), range(3)))
    assert (engine.generator.batches, engine.generator.pages) == (before[0] + 1, before[1] + 3)
    assert {r.tokens_in for r in results} == {alone.tokens_in}  # left padding is not counted as prompt
    engine.close()


def test_got_formats_only_when_the_layout_prompt_asks(
    built: Callable[[str], Path], make_settings: Callable[..., Settings], page: Image.Image
) -> None:
    """GOT-OCR2's prompt is a processor flag: pages asking differently share a batch, not a call."""
    engine = engine_for(make_settings, "got-ocr-2.0", built("got-ocr-2.0"))
    engine.recognize(page, PageTask())
    loaded = engine.generator.loaded_model
    assert loaded is not None
    calls: list[int] = []
    generate = loaded.model.generate

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    loaded.model.generate = counted
    tasks = [PageTask(mode=PromptMode.TEXT_ONLY), PageTask(mode=PromptMode.LAYOUT_ALL)]
    with ThreadPoolExecutor(2) as pool:
        plain, formatted = pool.map(lambda task: engine.recognize(page, task), tasks)
    assert engine.generator.batches == 2 and sorted(calls) == [1, 1]  # one batch, a call per prompt
    assert formatted.tokens_in is not None and plain.tokens_in is not None
    assert formatted.tokens_in > plain.tokens_in  # "OCR with format: " instead of "OCR: "
    engine.close()
