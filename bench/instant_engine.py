"""A test double of the engine seam that answers at once: measures ocrq's own overhead.

It is not in the shipped engine list; benchmarks inject it through ``chain_factory``.
"""

from __future__ import annotations

from PIL import Image

from ocrq.schemas import LayoutCell, PageResult, PageTask
from ocrq.settings import Settings
from ocrq.worker.engines.chain import EngineChain


class InstantEngine:
    name = "instant"
    model = "none"
    image_mode = "L"
    max_in_flight = 4

    def recognize(self, image: Image.Image, task: PageTask) -> PageResult:
        width, height = image.size
        cell = LayoutCell((0, 0, width, height), "Text", "instant")
        return PageResult("instant", "instant", self.name, self.model, [cell])

    def close(self) -> None:
        pass


def instant_chain(_settings: Settings) -> EngineChain:
    return EngineChain([InstantEngine()])
