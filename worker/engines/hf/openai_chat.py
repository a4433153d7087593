"""The OpenAI chat-completions shapes ``serve-hf`` speaks, read and written as vLLM does.

Clients (ocrq's own vLLM engine, the ``openai`` SDK, the seeds' scripts) send one user message with
an image as a data URL and a text part; answers carry ``finish_reason`` and ``usage`` like vLLM's,
and errors use vLLM's ``{"error": {"message", "type", "code"}}`` body with the wording ocrq's vLLM
client already reads ("Failed to load image", "does not exist"). Only data URLs are accepted: a
model server that fetched URLs it was handed would be an open proxy into its network.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ocrq.worker.engines.hf.answers import RawAnswer

DATA_URL_PREFIX = "data:"


class BadRequest(Exception):
    """The request cannot be served as sent (HTTP 400, vLLM's BadRequestError)."""


class ChatRequest(BaseModel):
    """The fields ocrq reads; the rest of OpenAI's request (``n``, ``stream``, ...) is refused or ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ModelRequest(BaseModel):
    model: str


def page_of(request: ChatRequest) -> tuple[str, str]:
    """The single image's URL and the prompt text of a chat request (text parts joined)."""
    if request.stream:
        raise BadRequest("streaming is not supported by ocrq serve-hf")
    images: list[str] = []
    texts: list[str] = []
    for message in request.messages:
        content = message.get("content")
        parts: list[dict[str, Any]] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        )
        for part in parts:
            if part.get("type") == "image_url":
                images.append(str((part.get("image_url") or {}).get("url", "")))
            elif part.get("type") == "text":
                texts.append(str(part.get("text", "")))
    if len(images) != 1:
        raise BadRequest(f"exactly one image per request is supported, got {len(images)}")
    return images[0], "".join(texts)


def decode_image(url: str, max_pixels: int) -> Image.Image:
    """A data-URL image, size-checked from its header before any pixel is decoded."""
    if not url.startswith(DATA_URL_PREFIX):
        raise BadRequest("Failed to load image: only data URLs are accepted (data:image/png;base64,...)")
    header, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise BadRequest(
                f"Failed to load image: {image.width}x{image.height} exceeds {max_pixels} pixels"
            )
        image.load()
    except (OSError, ValueError, binascii.Error, Image.DecompressionBombError) as error:
        raise BadRequest(f"Failed to load image: {type(error).__name__}: {error}") from error
    return image


def completion_body(model: str, answer: RawAnswer) -> dict[str, Any]:
    """vLLM's non-streaming chat completion; unknown token counts are reported as 0."""
    prompt, completion = answer.tokens_in or 0, answer.tokens_out or 0
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


def model_card(name: str, key: str, loaded: bool, quantization: int) -> dict[str, Any]:
    """A ``/v1/models`` entry; ``root`` is the registry key, the rest says what is resident."""
    return {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "ocrq",
        "root": key,
        "loaded": loaded,
        "quantization": f"{quantization}bit" if quantization else "none",
    }
