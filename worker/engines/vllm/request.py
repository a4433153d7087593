"""Build one chat-completions request for a page: the prompt for the task, the resized image, the
sampling of the current retry rung.

Pure functions (no HTTP), so request building is tested without a server and reused by the
benchmark. The page is resized here with the model's own rule; the plan that did it is kept so
the model's boxes map back to page pixels.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops

from ocrq.errors import InputError, PageRenderError
from ocrq.schemas import PageTask, PromptMode
from ocrq.worker.engines.ladder import Rung
from ocrq.worker.engines.vllm.png import COLOUR_TYPES, encode_png
from ocrq.worker.models.registry import ModelSpec
from ocrq.worker.ocr_output.reading import Reading, read_grounding, read_layout, read_text
from ocrq.worker.ocr_output.resize import Box, ResizePlan, plan_resize

PNG_COMPRESS_LEVEL = 1
"""zlib level 1: on a rendered A4 page within a few % of level 6's size at a fraction of the time."""
JPEG_QUALITY = 90
LAYOUT_MODES = frozenset({PromptMode.LAYOUT_ALL, PromptMode.LAYOUT_ONLY})


@dataclass(frozen=True, slots=True)
class PromptChoice:
    """The prompt actually used: a mode the model lacks falls back to its text-only prompt."""

    mode: PromptMode
    template: str
    crop: Box | None = None
    """Region to cut out first, for grounding on models without a grounding prompt."""


@dataclass(frozen=True, slots=True)
class PreparedImage:
    data_url: str
    plan: ResizePlan
    encoded_bytes: int
    encode_ms: float
    """Greyscale check, pad or resize, and encoding: the client-side cost of a page."""


def choose_prompt(spec: ModelSpec, task: PageTask) -> PromptChoice:
    """The model's prompt for the task, degrading to text-only (and a crop for grounding)."""
    if task.mode is PromptMode.GROUNDING and task.bbox is None:
        raise InputError("grounding needs a bbox")
    own = spec.prompt_for(task.mode)
    if own is not None:
        return PromptChoice(task.mode, own)
    text_prompt = spec.prompt_for(PromptMode.TEXT_ONLY) or ""
    crop = task.bbox if task.mode is PromptMode.GROUNDING else None
    return PromptChoice(PromptMode.TEXT_ONLY, text_prompt, crop)


def read_reply(
    spec: ModelSpec,
    choice: PromptChoice,
    raw: str,
    finish_reason: str | None,
    plan: ResizePlan,
    drop_page_furniture: bool = False,
) -> Reading:
    """The one reading of a model's answer for every engine: dots.ocr layout JSON, DeepSeek-OCR's
    grounded Markdown, or free text; boxes come back in page pixels through ``plan``."""
    if spec.output_format == "dots_layout" and choice.mode in LAYOUT_MODES:
        return read_layout(raw, finish_reason, plan, drop_page_furniture)
    if spec.output_format == "deepseek_grounding":
        return read_grounding(raw, finish_reason, plan, drop_page_furniture)
    return read_text(raw, finish_reason)


def prepare_image(
    image: Image.Image, spec: ModelSpec, max_pixels: int, crop: Box | None = None
) -> PreparedImage:
    """Crop, resize with the model's rule within ``max_pixels``, encode as a data URL."""
    try:
        source = image.crop(inside_page(crop, image.size)) if crop else image
        plan = plan_resize(source.size, spec.resize, spec.image_factor, spec.min_pixels, max_pixels)
        plan = ResizePlan(plan.source, plan.target, crop[:2] if crop else (0, 0), plan.padded)
        started = time.perf_counter()
        data = encode_image(model_input(source, plan), spec.image_format)
    except (OSError, ValueError) as error:
        raise PageRenderError(f"page image cannot be prepared: {error}") from error
    encode_ms = (time.perf_counter() - started) * 1000
    mime = "png" if spec.image_format == "png" else "jpeg"
    url = f"data:image/{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return PreparedImage(url, plan, len(data), encode_ms)


def inside_page(box: Box, size: tuple[int, int]) -> Box:
    """A grounding box clipped to the page; one that misses the page is the request's input error."""
    x1, y1, x2, y2 = (max(0, v) for v in box)
    region = (min(x1, size[0]), min(y1, size[1]), min(x2, size[0]), min(y2, size[1]))
    if region[2] <= region[0] or region[3] <= region[1]:
        raise InputError(f"grounding bbox {box} does not overlap the {size[0]}x{size[1]} page")
    return region


def is_grey(image: Image.Image) -> bool:
    """True when every pixel has R == G == B (a black-and-white page rendered in RGB): ~13 ms on A4."""
    if image.mode == "L":
        return True
    if image.mode != "RGB":
        return False
    red, green, blue = image.split()
    return (
        ImageChops.difference(red, green).getbbox() is None
        and ImageChops.difference(green, blue).getbbox() is None
    )


def model_input(source: Image.Image, plan: ResizePlan) -> Image.Image:
    """The pixels the model sees: greyscale when the page is (a third of the PNG work), padded or resized."""
    image = source.convert("L") if source.mode != "L" and is_grey(source) else source
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if plan.padded:
        canvas = Image.new(image.mode, plan.target, 255 if image.mode == "L" else (255, 255, 255))
        canvas.paste(image, (0, 0))
        return canvas
    return image if plan.identity else image.resize(plan.target, Image.Resampling.BICUBIC)


def encode_image(image: Image.Image, image_format: str) -> bytes:
    """PNG (lossless; grey and RGB through :mod:`.png`) or JPEG; bench/vllm_encoding.py measures them."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    elif image.mode in COLOUR_TYPES:
        return encode_png(image)
    else:
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def prompt_text(spec: ModelSpec, choice: PromptChoice, task: PageTask, plan: ResizePlan) -> str:
    """The text part: the image placeholder where the model needs it, the grounding box in the model frame."""
    text = choice.template
    if choice.mode is PromptMode.GROUNDING and task.bbox is not None:
        text = text.replace("{bbox}", str(list(plan.to_model(task.bbox))))
    return spec.image_placeholder + text


def build_payload(served_name: str, spec: ModelSpec, text: str, image_url: str, rung: Rung) -> dict[str, Any]:
    """An OpenAI chat-completions body; the image first, as dots.ocr's own client sends it."""
    content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
    payload: dict[str, Any] = {
        "model": served_name,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": rung.max_tokens,
        "temperature": rung.temperature,
        "top_p": spec.top_p,
    }
    return payload | spec.request_extra
