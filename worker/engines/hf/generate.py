"""Run ``generate`` on a batch of pages and cut the answers apart, with vLLM's vocabulary.

Each answer carries what the vLLM engine reads from a completion (text, ``finish_reason``, token
counts), so both engines feed the same :mod:`ocrq.worker.ocr_output` readers. A batch that runs the GPU
out of memory is split in halves and tried again; only a single page that does not fit fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from PIL import Image

from ocrq.errors import EngineFailed
from ocrq.worker.engines.hf.loading import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PageJob:
    image: Image.Image
    """Already resized with the model's rule (so its boxes map back exactly)."""
    prompt: str
    max_new_tokens: int


@dataclass(frozen=True, slots=True)
class RawAnswer:
    text: str
    finish_reason: str
    """``stop`` (the model ended) or ``length`` (cut at max_new_tokens), as vLLM reports it."""
    tokens_in: int
    tokens_out: int


class OutOfMemory(EngineFailed):
    """One page alone does not fit in GPU memory for generation."""


def generate_pages(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    """Answers in job order; pages a recipe cannot mix (different prompts) run as separate calls."""
    if not loaded.recipe.group_by_prompt:
        return _fitting(loaded, jobs)
    answers: dict[int, RawAnswer] = {}
    indexed = sorted(enumerate(jobs), key=lambda pair: pair[1].prompt)
    for _prompt, group in groupby(indexed, key=lambda pair: pair[1].prompt):
        members = list(group)
        for (index, _job), answer in zip(
            members, _fitting(loaded, [job for _i, job in members]), strict=True
        ):
            answers[index] = answer
    return [answers[index] for index in range(len(jobs))]


def _fitting(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    """One call for the batch; on a CUDA out-of-memory, halves (recursively) until each fits."""
    import torch

    try:
        return _generate(loaded, jobs)
    except torch.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        if len(jobs) == 1:
            raise OutOfMemory(f"one page does not fit in GPU memory for generation: {error}") from error
    half = len(jobs) // 2
    log.warning("generate ran out of GPU memory on %d pages; splitting the batch", len(jobs))
    return _fitting(loaded, jobs[:half]) + _fitting(loaded, jobs[half:])


def _generate(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    import torch

    processor, model = loaded.processor, loaded.model
    inputs = loaded.recipe.build_inputs(processor, [job.image for job in jobs], [job.prompt for job in jobs])
    inputs = inputs.to(loaded.device)
    limit = max(job.max_new_tokens for job in jobs)
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=limit, do_sample=False, **loaded.recipe.generate_kwargs(processor)
        )
    prompt_length = inputs["input_ids"].shape[1]
    new_tokens = output[:, prompt_length:].tolist()
    prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
    stops = stop_token_ids(model, processor)
    return [
        _answer(processor, row, int(n_in), limit, stops)
        for row, n_in in zip(new_tokens, prompt_tokens, strict=True)
    ]


def stop_token_ids(model: Any, processor: Any) -> set[int]:
    """Tokens that end an answer (EOS in the generation config and tokenizer) or pad it after the end."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    tokenizer = getattr(processor, "tokenizer", processor)
    for value in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        ids |= set(value) if isinstance(value, list | tuple) else ({value} if value is not None else set())
    return ids


def _answer(processor: Any, row: list[int], tokens_in: int, limit: int, stops: set[int]) -> RawAnswer:
    """Tokens up to the first stop token; a row that never stopped and filled the limit was cut."""
    end = next((i for i, token in enumerate(row) if token in stops), None)
    produced = row if end is None else row[:end]
    reason = "length" if end is None and len(row) >= limit else "stop"
    text = processor.batch_decode([produced], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
    return RawAnswer(text, reason, tokens_in, len(produced) + (0 if end is None else 1))
