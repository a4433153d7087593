"""The vLLM client's reading of vLLM's answers: error bodies in every shape, context-length messages."""

from __future__ import annotations

import json

import httpx
import pytest

from ocrq.worker.engines.vllm.client import api_error, context_overflow
from tests.fault_server import flat_error, nested_error


def test_error_bodies_in_every_shape_are_read() -> None:
    def read(status: int, content: bytes) -> str:
        return api_error(httpx.Response(status, content=content)).message

    assert read(400, json.dumps(nested_error(400, "nested")).encode()) == "nested"
    assert read(400, json.dumps(flat_error(400, "flat")).encode()) == "flat"
    assert read(401, b'{"error": "Unauthorized"}') == "Unauthorized"
    assert read(422, b'{"detail": "bad field"}') == "bad field"
    assert read(502, b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"


CONTEXT_MESSAGES = [
    ("Input length (1272) exceeds model's maximum context length (1024).", 1024, 1272, False),  # vLLM 0.32
    (
        "This model's maximum context length is 4096 tokens. However, your prompt contains 5000 input "
        "tokens, which exceeds this limit even without any output tokens.",
        4096, 5000, False,
    ),  # vLLM 0.33
    ("The decoder prompt (length 3900) is longer than the maximum model length of 2048.", 2048, 3900, False),
    (
        "max_tokens=5000 cannot be greater than max_model_len=2048. Please request fewer output tokens.",
        2048, None, True,
    ),
    (
        "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length "
        "is 8192 tokens and your request has 300 input tokens (8192 > 8192 - 300).",
        8192, 300, True,
    ),  # before 0.10
]  # fmt: skip


@pytest.mark.parametrize(("message", "limit", "prompt", "output_too_large"), CONTEXT_MESSAGES)
def test_context_messages_of_every_vllm_version(
    message: str, limit: int, prompt: int | None, output_too_large: bool
) -> None:
    overflow = context_overflow(message)
    assert overflow is not None
    assert (overflow.limit, overflow.prompt_tokens, overflow.output_too_large) == (
        limit,
        prompt,
        output_too_large,
    )
    assert context_overflow("Failed to load image: cannot identify image file") is None
