"""The Transformers engine: the registry's model loaded in-process from the local Hugging Face cache.

It is the fallback when vLLM is down or cannot hold the GPU: same prompts, same resize rule, same
reading of the answer (:mod:`ocrq.worker.ocr_output`) as the vLLM engine, so a page reads the same
whichever engine produced it. Building the engine is cheap and imports neither torch nor
transformers: it checks the extra is installed, the model has a loading recipe, the installed
versions are ones the model works with, and the weights are completely in the cache, and otherwise
raises ``EngineUnavailable`` so the chain skips it. The model itself loads on the first page.

Concurrent pages are batched into one ``generate`` call (``OCRQ_TRANSFORMERS_BATCH_SIZE``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from ocrq.errors import ConfigurationError, DegenerateOutput, EngineUnavailable, PageRenderError
from ocrq.schemas import PageResult, PageTask
from ocrq.settings import Settings
from ocrq.worker.engines.hf.generate import PageJob, RawAnswer, generate_pages
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard, stop_vllm_containers
from ocrq.worker.engines.hf.loading import LoadedModel, LoadPlan, heavy_libraries_missing, load_model, release
from ocrq.worker.engines.hf.model_host import MicroBatcher, ModelHost
from ocrq.worker.engines.hf.recipes import check_versions, recipe_for
from ocrq.worker.engines.vllm.request import (
    PromptChoice,
    choose_prompt,
    inside_page,
    model_input,
    prompt_text,
    reads_layout,
)
from ocrq.worker.models.hf_cache import ModelNotCached, directory_problems, local_model_dir
from ocrq.worker.models.registry import ModelSpec, Registry, bundled_registry
from ocrq.worker.ocr_output.reading import Reading, page_result, read_layout, read_text
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

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            settings.transformers_batch_size,
            settings.transformers_idle_unload_seconds,
            settings.transformers_max_new_tokens or None,
            settings.vllm_drop_page_headers,
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


def read_answer(
    spec: ModelSpec, choice: PromptChoice, answer: RawAnswer, plan: ResizePlan, drop_furniture: bool = False
) -> Reading:
    """The very readers the vLLM engine uses (one dots.ocr parser for both), boxes back in page pixels."""
    if reads_layout(spec, choice):
        return read_layout(answer.text, answer.finish_reason, plan, drop_furniture)
    return read_text(answer.text, answer.finish_reason)


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
        self.max_in_flight = self.options.batch_size
        self.guard = guard or MemoryGuard()
        self.host: ModelHost[LoadedModel] = ModelHost(
            lambda: load_model(plan, self.guard), release, self.options.idle_unload_seconds
        )
        self._batcher: MicroBatcher[PageJob, RawAnswer] = MicroBatcher(
            self._run_batch, self.options.batch_size
        )

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        started = time.perf_counter()
        choice = choose_prompt(self.spec, task)
        page = prepare_page(image, self.spec, choice.crop)
        prompt = prompt_text(self.spec, choice, task, page.plan).removeprefix(self.spec.image_placeholder)
        answer = self._batcher.submit(PageJob(page.image, prompt, self._max_new_tokens()))
        reading = read_answer(self.spec, choice, answer, page.plan, self.options.drop_page_headers)
        if not reading.usable:
            raise DegenerateOutput(
                f"{self.spec.key} gave no usable answer (finish_reason={answer.finish_reason}, "
                f"{answer.tokens_out} tokens)"
            )
        return self._result(reading, answer, task, started)

    def close(self) -> None:
        """Release the model (GPU memory back); a later page would load it again."""
        self.host.unload()

    def _max_new_tokens(self) -> int:
        cap = self.options.max_new_tokens
        return min(self.spec.max_tokens, cap) if cap else self.spec.max_tokens

    def _run_batch(self, jobs: list[PageJob]) -> list[RawAnswer]:
        return self.host.run(lambda loaded: generate_pages(loaded, jobs))

    def _result(self, reading: Reading, answer: RawAnswer, task: PageTask, started: float) -> PageResult:
        tokens = (answer.tokens_in, answer.tokens_out)
        return page_result(reading, task, engine=self.name, model=self.model, tokens=tokens, started=started)


def model_location(spec: ModelSpec, model_dir: Path | None, cache_dir: Path | None = None) -> Path:
    """An explicit directory (checked like a snapshot) or the model's complete snapshot in the cache."""
    if model_dir is None:
        revision = spec.transformers.revision if spec.transformers else None
        return local_model_dir(spec.hf_repo, revision, cache_dir)
    problems = directory_problems(model_dir)
    if problems:
        raise ModelNotCached(f"OCRQ_TRANSFORMERS_MODEL_DIR {model_dir}: {'; '.join(problems)}")
    return model_dir


def load_plan(settings: Settings, registry: Registry | None = None) -> LoadPlan:
    """Everything checkable without torch; ``EngineUnavailable`` when this host cannot run the model."""
    missing = heavy_libraries_missing()
    if missing:
        raise EngineUnavailable(f"{', '.join(missing)} not installed (pip install 'ocrq[transformers]')")
    spec = (registry or bundled_registry()).get(settings.transformers_model)
    recipe = recipe_for(spec)
    check_versions(spec)
    path = model_location(spec, settings.transformers_model_dir)
    if recipe.dot_free_dir and "." in path.name:
        raise ConfigurationError(
            f"{spec.key} loads its code as a module named after the directory: rename {path} without '.'"
        )
    return LoadPlan(spec, path, recipe, settings.transformers_device, settings.transformers_8bit)


def transformers_engine(settings: Settings) -> TransformersEngine:
    """The factory :mod:`ocrq.worker.engines.selection` uses; never loads the model itself."""
    stopper = stop_vllm_containers if settings.transformers_stop_vllm else None
    return TransformersEngine(
        load_plan(settings), MemoryGuard(stop_vllm=stopper), EngineOptions.from_settings(settings)
    )
