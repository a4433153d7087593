"""Run a batch of pages through a loaded model and cut the answers apart, with vLLM's vocabulary.

Each answer carries what the vLLM engine reads from a completion (text, ``finish_reason``, token
counts), so both engines feed the same :mod:`ocrq.worker.ocr_output` readers. Pages that cannot share one
call (another sampling, or another prompt where the prompt is a processor flag) run as separate
calls. A batch that runs the GPU out of memory is split in halves and tried again; only a single
page that does not fit fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from ocrq.errors import OutOfMemory
from ocrq.worker.engines.hf.answers import PageJob, RawAnswer, sampling_kwargs
from ocrq.worker.engines.hf.loading import LoadedModel

log = logging.getLogger(__name__)


def generate_pages(loaded: LoadedModel, jobs: list[PageJob]) -> list[RawAnswer]:
    """Answers in job order, one model call per group of pages that can share it."""
    recipe = loaded.recipe
    run: Callable[[list[PageJob]], list[RawAnswer]]
    if recipe.answer is not None:
        answer = recipe.answer
        run = lambda group: answer(loaded, group)  # noqa: E731
    else:
        run = lambda group: _fitting(loaded, group)  # noqa: E731
    return in_groups(jobs, lambda job: _group_key(job, recipe.group_by_prompt), run)


def _group_key(job: PageJob, by_prompt: bool) -> Hashable:
    return (job.sampling, job.prompt if by_prompt else "")


def in_groups(
    jobs: list[PageJob], key: Callable[[PageJob], Hashable], run: Callable[[list[PageJob]], list[RawAnswer]]
) -> list[RawAnswer]:
    """``run`` once per group of equal keys; the answers come back in the jobs' order."""
    groups: dict[Hashable, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(key(job), []).append(index)
    answers: dict[int, RawAnswer] = {}
    for members in groups.values():
        for index, answer in zip(members, run([jobs[i] for i in members]), strict=True):
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
    """One ``generate`` for pages of one sampling; each row is cut at its own page's limit."""
    import torch

    processor, model, recipe = loaded.processor, loaded.model, loaded.recipe
    inputs = recipe.build_inputs(processor, [job.image for job in jobs], [job.prompt for job in jobs])
    inputs.pop("token_type_ids", None)  # text-tokenizer output no VLM's generate() takes (InternVL's has it)
    inputs = inputs.to(loaded.device)
    limit = max(job.max_new_tokens for job in jobs)
    sampling = sampling_kwargs(*jobs[0].sampling)
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=limit, **sampling, **recipe.generate_kwargs(processor)
        )
    prompt_length = inputs["input_ids"].shape[1]
    new_tokens = output[:, prompt_length:].tolist()
    prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
    stops = stop_token_ids(model, processor)
    return [
        _answer(processor, row, int(n_in), job.max_new_tokens, stops)
        for row, n_in, job in zip(new_tokens, prompt_tokens, jobs, strict=True)
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
    """Tokens up to the first stop token within this page's own limit; no stop within it means cut
    (a batch runs to its largest limit, a page with a smaller one reads only its share)."""
    head = row[:limit]
    end = next((i for i, token in enumerate(head) if token in stops), None)
    produced = head if end is None else head[:end]
    reason = "length" if end is None and len(head) >= limit else "stop"
    text = processor.batch_decode([produced], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
    return RawAnswer(text, reason, tokens_in, len(produced) + (0 if end is None else 1))
