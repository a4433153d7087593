"""What one page asks of a loaded model and what comes back, in vLLM's vocabulary.

Both ways of running a model (``generate`` on processor inputs, or a model's own ``chat``/``infer``/
``query`` method) take :class:`PageJob` and give :class:`RawAnswer`, so the in-process engine and
``serve-hf`` read every answer with the same :mod:`ocrq.worker.ocr_output` readers as the vLLM engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True, slots=True)
class PageJob:
    image: Image.Image
    """Already resized with the model's rule (so its boxes map back exactly)."""
    prompt: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0

    @property
    def sampling(self) -> tuple[float, float]:
        """Pages sharing one ``generate`` call must share this (it is one setting per call)."""
        return (self.temperature, self.top_p if self.temperature > 0 else 1.0)


@dataclass(frozen=True, slots=True)
class RawAnswer:
    text: str
    finish_reason: str
    """``stop`` (the model ended) or ``length`` (cut at max_new_tokens), as vLLM reports it."""
    tokens_in: int | None
    tokens_out: int | None
    """None where a model's own method does not say (and no tokenizer can count it)."""


def sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    """``generate`` arguments for one sampling: greedy at temperature 0, as vLLM treats it."""
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p}


def finish_reason(tokens_out: int | None, limit: int, stopped: bool | None = None) -> str:
    """``length`` when the answer filled the limit without a stop; methods that hide their stop
    token are judged by the count alone."""
    if stopped is True:
        return "stop"
    return "length" if tokens_out is not None and tokens_out >= limit else "stop"


def count_tokens(tokenizer: Any, text: str) -> int | None:
    """Tokens in ``text`` by the model's tokenizer; None when there is none to ask."""
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return None
    return len(encode(text, add_special_tokens=False))
