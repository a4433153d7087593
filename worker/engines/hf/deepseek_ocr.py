"""DeepSeek-OCR (``DeepseekOCRForCausalLM``, remote code), driven through the model's own ``infer``.

``infer`` does its own tiling ("Gundam": a 1024-px global view plus 640-px crops), prompt template
and decoding, reads the page from a file, and fixes its sampling (greedy, 8192 new tokens): the
retry ladder's temperature steps cannot reach it, and the page's ``max_new_tokens`` only judges
whether the answer was cut. Its tensors are moved with ``.cuda()``, so it needs a GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ocrq.errors import EngineFailed
from ocrq.worker.engines.hf.answers import PageJob, RawAnswer, count_tokens, finish_reason

if TYPE_CHECKING:
    from ocrq.worker.engines.hf.loading import LoadedModel

IMAGE_TOKEN = "<image>"
INFER_MAX_NEW_TOKENS = 8192
"""Fixed inside ``infer``."""
GUNDAM = {"base_size": 1024, "image_size": 640, "crop_mode": True}
"""The resolution mode the model card recommends for documents."""


def deepseek_prompt(prompt: str) -> str:
    """The image token first, on its own line, as every DeepSeek-OCR prompt starts."""
    return prompt if prompt.startswith(IMAGE_TOKEN) else f"{IMAGE_TOKEN}\n{prompt}"


def deepseek_answer(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    return [_infer(loaded, job) for job in jobs]


def _infer(loaded: LoadedModel, job: PageJob) -> RawAnswer:
    with tempfile.TemporaryDirectory(prefix="ocrq-deepseek-") as folder:
        page = Path(folder) / "page.png"
        job.image.save(page)
        text = loaded.model.infer(
            loaded.processor, prompt=deepseek_prompt(job.prompt), image_file=str(page),
            output_path=folder, save_results=False, eval_mode=True, **GUNDAM,
        )  # fmt: skip
    if not isinstance(text, str):
        raise EngineFailed(
            "this DeepSeek-OCR snapshot's infer() returned no text (revisions without eval_mode print "
            "their answer instead): use a newer snapshot"
        )
    tokens = count_tokens(loaded.processor, text)
    return RawAnswer(text, finish_reason(tokens, min(job.max_new_tokens, INFER_MAX_NEW_TOKENS)), None, tokens)
