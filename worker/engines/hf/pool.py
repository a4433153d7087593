"""The models one ``serve-hf`` process serves: each a :class:`Generator`, found by any of its names.

A model is *served* once added (its plan checked: recipe, versions, snapshot, code files) and
*loaded* while its weights are resident. The model host keeps one resident model per process, so
a request for another served model swaps it in (the seeds' Transformers server switched the same
way); ``/models/load`` and ``/models/unload`` do it on demand. Requests name a model by its served
name, its Hugging Face repo or its registry key, so ocrq's vLLM engine (which sends the repo) and
people (who type the key) both reach it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocrq.errors import ModelNotServed
from ocrq.settings import Settings
from ocrq.worker.engines.hf.engine import load_plan
from ocrq.worker.engines.hf.generator import BATCH_WINDOW_SECONDS, Generator
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard
from ocrq.worker.models.registry import ModelSpec, Registry, bundled_registry


@dataclass(frozen=True, slots=True)
class ServeOptions:
    batch_size: int = 4
    batch_window_seconds: float = BATCH_WINDOW_SECONDS
    idle_unload_seconds: float = 0.0
    """A server keeps its model unless told (0); a shared GPU may want it released when idle."""
    max_new_tokens: int | None = None
    """Caps what a request may ask for (slow CPU hosts); None: the registry's max_tokens."""
    max_image_pixels: int = 40_000_000
    """Larger images are refused before decoding (``OCRQ_MAX_PAGE_PIXELS``)."""


@dataclass(slots=True)
class Served:
    name: str
    spec: ModelSpec
    generator: Generator
    names: frozenset[str] = field(default_factory=frozenset)

    @property
    def loaded(self) -> bool:
        return self.generator.host.loaded


class ModelPool:
    """Thread-safe registry of served models."""

    def __init__(
        self,
        settings: Settings,
        options: ServeOptions | None = None,
        guard: MemoryGuard | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings, self.options = settings, options or ServeOptions()
        self.guard = guard or MemoryGuard()
        self.registry = registry or bundled_registry()
        self.models: list[Served] = []
        self._lock = threading.Lock()

    def add(self, key: str, model_dir: Path | None = None, served_name: str | None = None) -> Served:
        """Serve a registry model (checked now, loaded later); a model already served is returned."""
        with self._lock:
            known = self._find(key)
            if known is not None:
                return known
            if key not in self.registry.models:
                keys = ", ".join(sorted(self.registry.models))
                raise ModelNotServed(
                    f"The model `{key}` does not exist: not served here, not a registry key ({keys})"
                )
            plan = load_plan(self.settings, self.registry, key, model_dir)
            options = self.options
            generator = Generator(
                plan,
                self.guard,
                options.batch_size,
                options.idle_unload_seconds,
                options.batch_window_seconds,
            )
            name = served_name or plan.spec.served_name
            served = Served(name, plan.spec, generator, frozenset({name, plan.spec.hf_repo, plan.spec.key}))
            self.models.append(served)
            return served

    def get(self, name: str) -> Served:
        served = self._find(name)
        if served is None:
            known = ", ".join(s.name for s in self.models) or "none"
            raise ModelNotServed(f"The model `{name}` does not exist. ocrq serve-hf serves: {known}")
        return served

    def load(self, name: str) -> tuple[Served, float]:
        """Load ``name`` now (serving it first if it is a registry model); seconds the load took."""
        served = self._find(name) or self.add(name)
        return served, served.generator.load()

    def unload(self, name: str) -> tuple[Served, bool, float]:
        served = self.get(name)
        started = time.perf_counter()
        released = served.generator.unload()
        return served, released, time.perf_counter() - started

    def _find(self, name: str) -> Served | None:
        return next((served for served in self.models if name in served.names), None)
