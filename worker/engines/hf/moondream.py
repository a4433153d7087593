"""moondream2 (``HfMoondream``, remote code), driven through the model's own ``query``.

moondream2 has no processor and no ``generate`` entry point: ``query(image, question, settings)``
encodes the image, builds its prompt and samples. It answers one page at a time and does not say
how it stopped, so a cut answer is recognised by its length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocrq.errors import EngineFailed
from ocrq.worker.engines.hf.answers import PageJob, RawAnswer, count_tokens, finish_reason

if TYPE_CHECKING:
    from ocrq.worker.engines.hf.loading import LoadedModel


def query_settings(job: PageJob) -> dict[str, Any]:
    """The sampling ``query`` understands (revision 2025-06-21 and later)."""
    return {"max_tokens": job.max_new_tokens, "temperature": job.temperature, "top_p": job.top_p}


def moondream_answer(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    return [_query(loaded, job) for job in jobs]


def answer_text(reply: Any) -> str:
    """``{"answer": ...}`` from current revisions; a bare string from older ones."""
    text = reply.get("answer") if isinstance(reply, dict) else reply
    if not isinstance(text, str):
        raise EngineFailed(f"moondream2 answered without text: {str(reply)[:200]}")
    return text


def _query(loaded: LoadedModel, job: PageJob) -> RawAnswer:
    text = answer_text(loaded.model.query(job.image, job.prompt, settings=query_settings(job)))
    tokens = count_tokens(getattr(loaded.model, "tokenizer", None), text)
    return RawAnswer(text, finish_reason(tokens, job.max_new_tokens), None, tokens)
