"""Phi-3.5-vision (``Phi3VForCausalLM``, remote code): its chat format, one page per call.

The processor numbers images in the text (``<|image_1|>``) and takes one prompt string, so a batch
of pages cannot share a call: the recipe caps batches at one. Built from the model card's format
rather than the snapshot's chat template, so the prompt is known (and tested) without weights.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

PROMPT_FORMAT = "<|user|>\n<|image_1|>\n{prompt}<|end|>\n<|assistant|>\n"


def phi3v_prompt(prompt: str) -> str:
    return PROMPT_FORMAT.format(prompt=prompt)


def phi3v_inputs(processor: Any, images: list[Image.Image], prompts: list[str]) -> Any:
    if len(images) != 1:
        raise ValueError(f"Phi-3.5-vision takes one page per call, got {len(images)}")
    return processor(phi3v_prompt(prompts[0]), images, return_tensors="pt")


def phi3v_generate_kwargs(processor: Any) -> dict[str, Any]:
    """Its generation config ends on ``<|endoftext|>``; answers end on the tokenizer's ``<|end|>``."""
    return {"eos_token_id": processor.tokenizer.eos_token_id}
