"""The Transformers engine: the registry's model loaded in-process from the local Hugging Face cache.

It is the fallback when vLLM is down or cannot hold the GPU: same prompts, same resize rule, same
retry ladder (:mod:`ocrq.worker.engines.ladder`) and same reading of the answer as the vLLM engine, so a
page reads the same whichever engine produced it. Building the engine is cheap and imports neither
torch nor transformers: it checks the extra is installed, the model has a recipe (and, for remote
code, the registry's permission and the snapshot's code files), the installed versions are ones
the model works with, and the weights are completely in the cache, and otherwise raises
``EngineUnavailable`` (or a configuration error) so the chain skips it. The model loads on the
first page.

With ``OCRQ_TRANSFORMERS_URL`` the same engine name runs remotely instead, on an ``ocrq serve-hf``
server (:mod:`ocrq.worker.engines.hf.remote`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from ocrq.errors import (
    ConfigurationError,
    EngineUnavailable,
    ModelNotCached,
    PageRenderError,
    RemoteCodeMissing,
)
from ocrq.schemas import PageResult, PageTask
from ocrq.settings import Settings
from ocrq.worker.engines.hf.answers import PageJob
from ocrq.worker.engines.hf.generator import BATCH_WINDOW_SECONDS, Generator
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard, stop_vllm_containers
from ocrq.worker.engines.hf.loading import LoadPlan, heavy_libraries_missing
from ocrq.worker.engines.hf.quantization import requested_bits
from ocrq.worker.engines.hf.recipes import Recipe, recipe_for
from ocrq.worker.engines.hf.remote_code import code_problems
from ocrq.worker.engines.hf.versions import check_versions
from ocrq.worker.engines.ladder import Rung, Step, climb
from ocrq.worker.engines.vllm.request import (
    PromptChoice,
    choose_prompt,
    inside_page,
    model_input,
    prompt_text,
    read_reply,
)
from ocrq.worker.models.hf_cache import directory_problems, local_model_dir
from ocrq.worker.models.registry import ModelSpec, Registry, bundled_registry
from ocrq.worker.ocr_output.reading import page_result
from ocrq.worker.ocr_output.resize import Box, ResizePlan, plan_resize

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    batch_size: int = 4
    idle_unload_seconds: float = 600.0
    max_new_tokens: int | None = None
    """Caps the registry's ``max_tokens`` (slow CPU hosts, tests); None keeps the registry's."""
    drop_page_headers: bool = False
    """Shared with the vLLM engine (``OCRQ_VLLM_DROP_PAGE_HEADERS``): a page reads alike either way."""
    ladder_retries: int = 2
    batch_window_seconds: float = BATCH_WINDOW_SECONDS
    """How long a batch waits for companions (``serve-hf --batch-window-ms``; tests make it long)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            settings.transformers_batch_size,
            settings.transformers_idle_unload_seconds,
            settings.transformers_max_new_tokens or None,
            settings.vllm_drop_page_headers,
            settings.transformers_ladder_retries,
        )


@dataclass(frozen=True, slots=True)
class PreparedPage:
    image: Image.Image
    plan: ResizePlan


def prepare_page(image: Image.Image, spec: ModelSpec, crop: Box | None = None) -> PreparedPage:
    """Crop, then resize or pad with the model's rule exactly as the vLLM engine does (its
    ``model_input``), keeping the plan that maps the model's boxes back to the page."""
    try:
        source = image.crop(inside_page(crop, image.size)) if crop else image
        plan = plan_resize(source.size, spec.resize, spec.image_factor, spec.min_pixels, spec.max_pixels)
        plan = replace(plan, offset=crop[:2] if crop else (0, 0))
        return PreparedPage(model_input(source, plan).convert("RGB"), plan)
    except (OSError, ValueError) as error:
        raise PageRenderError(f"page image cannot be prepared: {error}") from error


class TransformersEngine:
    """:class:`~ocrq.worker.engines.base.Engine` over one lazily loaded model; thread-safe."""

    name = "transformers"
    image_mode = "RGB"

    def __init__(
        self, plan: LoadPlan, guard: MemoryGuard | None = None, options: EngineOptions | None = None
    ):
        self.spec, self.plan = plan.spec, plan
        self.model = plan.spec.hf_repo
        self.options = options or EngineOptions()
        self.generator = Generator(
            plan,
            guard,
            self.options.batch_size,
            self.options.idle_unload_seconds,
            self.options.batch_window_seconds,
        )
        self.host = self.generator.host
        self.max_in_flight = self.generator.batch_size

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        started = time.perf_counter()
        choice = choose_prompt(self.spec, task)
        page = prepare_page(image, self.spec, choice.crop)
        prompt = prompt_text(self.spec, choice, task, page.plan).removeprefix(self.spec.image_placeholder)
        first = Rung(self.spec.temperature, self._max_new_tokens())
        done = climb(first, self.options.ladder_retries, lambda rung: self._step(page, choice, prompt, rung))
        tokens = (done.tokens_in or None, done.tokens_out or None)
        reading = done.best(self.spec.key)
        return page_result(reading, task, engine=self.name, model=self.model, tokens=tokens, started=started)

    def close(self) -> None:
        """Release the model (GPU memory back); a later page would load it again."""
        self.generator.unload()

    def _step(self, page: PreparedPage, choice: PromptChoice, prompt: str, rung: Rung) -> Step:
        job = PageJob(page.image, prompt, rung.max_tokens, rung.temperature, self.spec.top_p)
        answer = self.generator.submit(job)
        reading = read_reply(
            self.spec, choice, answer.text, answer.finish_reason, page.plan, self.options.drop_page_headers
        )
        return Step(reading, rung, answer.tokens_in, answer.tokens_out, self.options.max_new_tokens)

    def _max_new_tokens(self) -> int:
        cap = self.options.max_new_tokens
        return min(self.spec.max_tokens, cap) if cap else self.spec.max_tokens


def model_location(spec: ModelSpec, model_dir: Path | None, cache_dir: Path | None = None) -> Path:
    """An explicit directory (checked like a snapshot) or the model's complete snapshot in the cache."""
    if model_dir is None:
        revision = spec.transformers.revision if spec.transformers else None
        return local_model_dir(spec.hf_repo, revision, cache_dir)
    problems = directory_problems(model_dir)
    if problems:
        raise ModelNotCached(f"OCRQ_TRANSFORMERS_MODEL_DIR {model_dir}: {'; '.join(problems)}")
    return model_dir


def check_snapshot(spec: ModelSpec, recipe: Recipe, path: Path) -> None:
    """What a remote-code snapshot needs beyond complete weights: its code, in an importable folder."""
    if not recipe.remote_code:
        return
    problems = code_problems(path)
    if problems:
        raise RemoteCodeMissing(
            f"{spec.key} runs code from its snapshot, but {path}: {'; '.join(problems)} (fetch the whole "
            f"repo, e.g. `huggingface-cli download {spec.hf_repo}`, not only the weights)"
        )
    if recipe.dot_free_dir and "." in path.name:
        raise ConfigurationError(
            f"{spec.key} loads its code as a module named after the directory: rename {path} without '.'"
        )


def load_plan(
    settings: Settings,
    registry: Registry | None = None,
    model: str | None = None,
    model_dir: Path | None = None,
) -> LoadPlan:
    """Everything checkable without torch; ``EngineUnavailable`` when this host cannot run the model.
    ``model``/``model_dir`` name another registry model than the settings' (``serve-hf`` loads several)."""
    missing = heavy_libraries_missing()
    if missing:
        raise EngineUnavailable(f"{', '.join(missing)} not installed (pip install 'ocrq[transformers]')")
    spec = (registry or bundled_registry()).get(model or settings.transformers_model)
    recipe = recipe_for(spec)
    check_versions(spec)
    path = model_location(spec, model_dir or (settings.transformers_model_dir if model is None else None))
    check_snapshot(spec, recipe, path)
    assert spec.transformers is not None  # recipe_for refused models without Transformers loading
    bits = requested_bits(settings.hf_quantization_name(), spec.transformers.quantization)
    return LoadPlan(spec, path, recipe, settings.transformers_device, bits, settings.hf_quantization_fallback)


def transformers_engine(settings: Settings) -> TransformersEngine:
    """The factory :mod:`ocrq.worker.engines.selection` uses; never loads the model itself."""
    stopper = stop_vllm_containers if settings.transformers_stop_vllm else None
    return TransformersEngine(
        load_plan(settings), MemoryGuard(stop_vllm=stopper), EngineOptions.from_settings(settings)
    )
