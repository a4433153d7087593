"""The tiny Qwen2-VL for the Transformers tests, and a real ``ocrq serve-hf`` process around it.

The model is the one real vLLM serves (``tiny_model.py``, built by the vLLM venv's transformers 5),
made readable by the project's transformers 4. The server is started as users start it, by the
``ocrq`` console script, on a free loopback port, and stopped with SIGTERM (SIGKILL if it lingers).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.vllm_server import build_tiny_model, free_port, missing_vllm_reason

TINY = "qwen2-vl-2b"
"""The registry entry whose architecture the tiny model has."""
TINY_SERVED_NAME = "Qwen/Qwen2-VL-2B-Instruct"
READY_TIMEOUT_S = 240.0


def readable_by_transformers_4(model_dir: Path) -> None:
    """tiny_model.py saves with transformers 5 (``rope_parameters``); 4.x reads ``rope_scaling``."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    rope = config["text_config"]["rope_parameters"]
    config["text_config"]["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    config["text_config"]["rope_theta"] = rope["rope_theta"]
    path.write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_vllm_reason()
    if reason:
        pytest.skip(f"the tiny model is built with the vLLM venv's transformers 5: {reason}")
    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl")
    readable_by_transformers_4(model_dir)
    return model_dir


@dataclass(frozen=True, slots=True)
class HfServer:
    url: str
    log: Path
    api_key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def serve_hf_command(model_dir: Path, port: int, *flags: str) -> list[str]:
    ocrq = Path(sys.executable).with_name("ocrq")
    return [str(ocrq), "serve-hf", "--model", f"{TINY}={model_dir}", "--port", str(port), *flags]


@contextmanager
def running_serve_hf(
    model_dir: Path, work: Path, *flags: str, api_key: str | None = None
) -> Iterator[HfServer]:
    """``ocrq serve-hf`` on the tiny model until the block ends; ready once ``/health`` answers."""
    port, log = free_port(), work / "serve-hf.log"
    env = os.environ | {"OCRQ_TRANSFORMERS_DEVICE": "cpu", "OCRQ_HF_SERVE_API_KEY": api_key or ""}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            serve_hf_command(model_dir, port, *flags), env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=work,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process, log)
            yield HfServer(url, log, api_key)
        finally:
            stop(process)


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"serve-hf exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"serve-hf not healthy after {READY_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(20)
