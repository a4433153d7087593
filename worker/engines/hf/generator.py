"""One model, loaded on demand and shared by concurrent pages: the part the in-process engine and
``serve-hf`` have in common.

:class:`Generator` joins the :class:`~ocrq.worker.engines.hf.model_host.ModelHost` (lazy load, idle
release, one resident model per process) and the :class:`~ocrq.worker.engines.hf.model_host.MicroBatcher`
(concurrent pages into one call), and counts what it did, so the server can publish vLLM-shaped
load figures and tests can see that two requests shared one ``generate``.
"""

from __future__ import annotations

import threading
import time

from ocrq.worker.engines.hf.answers import PageJob, RawAnswer
from ocrq.worker.engines.hf.generate import generate_pages
from ocrq.worker.engines.hf.gpu_memory import MemoryGuard
from ocrq.worker.engines.hf.loading import LoadedModel, LoadPlan, load_model, release
from ocrq.worker.engines.hf.model_host import MicroBatcher, ModelHost

BATCH_WINDOW_SECONDS = 0.02
"""How long the first page of a batch waits for companions: pages of one document arrive together."""


class Generator:
    """Thread-safe: ``submit`` from any number of threads; batches run one at a time."""

    def __init__(
        self,
        plan: LoadPlan,
        guard: MemoryGuard | None = None,
        batch_size: int = 4,
        idle_seconds: float = 600.0,
        window_seconds: float = BATCH_WINDOW_SECONDS,
    ) -> None:
        self.plan = plan
        self.guard = guard or MemoryGuard()
        self.host: ModelHost[LoadedModel] = ModelHost(
            lambda: load_model(plan, self.guard), release, idle_seconds
        )
        self.batch_size = max(1, min(batch_size, plan.recipe.max_batch))
        self.batcher: MicroBatcher[PageJob, RawAnswer] = MicroBatcher(
            self._run_batch, self.batch_size, window_seconds
        )
        self.batches = 0
        self.pages = 0
        self._count = threading.Lock()

    def submit(self, job: PageJob) -> RawAnswer:
        """The page's answer, from whichever batch it joined (its error if that batch failed)."""
        return self.batcher.submit(job)

    def load(self) -> float:
        """Load now (``/models/load``, a server's start); seconds it took, 0 when already loaded."""
        started = time.perf_counter()
        was_loaded = self.host.loaded
        self.host.run(lambda _model: None)
        return 0.0 if was_loaded else time.perf_counter() - started

    def unload(self) -> bool:
        return self.host.unload()

    @property
    def loaded_model(self) -> LoadedModel | None:
        """The resident model, for reports (device, precision, quantisation); None when not loaded."""
        return self.host.resident

    @property
    def running(self) -> int:
        return self.batcher.running

    @property
    def waiting(self) -> int:
        return self.batcher.waiting

    def _run_batch(self, jobs: list[PageJob]) -> list[RawAnswer]:
        with self._count:
            self.batches += 1
            self.pages += len(jobs)
        return self.host.run(lambda loaded: generate_pages(loaded, jobs))
