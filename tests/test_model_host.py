"""The Transformers engine's machinery without a model: lifecycle, batching, guard, reading.

A plain object stands in for the model (what is loaded does not matter to the host), so these run
without torch; the real model goes through the same host in ``test_transformers_engine.py``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from ocrq.errors import ConfigurationError, EngineUnavailable
from ocrq.schemas import PageTask
from ocrq.worker.engines.hf.engine import prepare_page
from ocrq.worker.engines.hf.gpu_memory import (
    GiB,
    GpuMemoryShort,
    MemoryGuard,
    nvml_index,
    stop_vllm_containers,
)
from ocrq.worker.engines.hf.model_host import MicroBatcher, ModelHost
from ocrq.worker.engines.vllm.request import choose_prompt, prepare_image, read_reply
from ocrq.worker.models.registry import bundled_registry
from ocrq.worker.ocr_output.reading import read_layout
from ocrq.worker.ocr_output.resize import ResizePlan


@dataclass
class Loads:
    loaded: list[object] = field(default_factory=list)
    released: list[object] = field(default_factory=list)

    def load(self) -> object:
        self.loaded.append(object())
        return self.loaded[-1]

    def release(self, model: object) -> None:
        self.released.append(model)


def wait_until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


def test_the_model_loads_once_and_is_released_when_idle() -> None:
    loads = Loads()
    host: ModelHost[object] = ModelHost(loads.load, loads.release, idle_seconds=0.2)
    assert not host.loaded and loads.loaded == []  # nothing until the first page
    first = host.run(lambda model: model)
    assert host.run(lambda model: model) is first and host.loads == 1
    assert wait_until(lambda: not host.loaded)
    assert loads.released == [first]
    assert host.run(lambda model: model) is not first and host.loads == 2
    host.unload()


def test_zero_idle_seconds_keeps_the_model() -> None:
    loads = Loads()
    host: ModelHost[object] = ModelHost(loads.load, loads.release, idle_seconds=0)
    host.run(lambda model: model)
    time.sleep(0.3)
    assert host.loaded and loads.released == []
    assert host.unload() and not host.unload()  # a second unload has nothing to do


def test_loading_a_second_model_releases_the_first() -> None:
    first_loads, second_loads = Loads(), Loads()
    first: ModelHost[object] = ModelHost(first_loads.load, first_loads.release, idle_seconds=0)
    second: ModelHost[object] = ModelHost(second_loads.load, second_loads.release, idle_seconds=0)
    first.run(lambda model: model)
    second.run(lambda model: model)
    assert not first.loaded and second.loaded and first_loads.released == first_loads.loaded
    second.unload()


def test_a_forked_child_does_not_inherit_the_loaded_model() -> None:
    loads = Loads()
    host: ModelHost[object] = ModelHost(loads.load, loads.release, idle_seconds=0)
    parents = host.run(lambda model: model)
    child = os.fork()
    if child == 0:  # the child: the parent's model must be gone, and a page loads its own
        ok = not host.loaded and host.run(lambda model: model) is not parents
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert host.loaded and host.run(lambda model: model) is parents  # the parent keeps its own
    host.unload()


def test_concurrent_items_run_as_one_batch_and_errors_reach_every_caller() -> None:
    sizes: list[int] = []

    def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if -1 in items:
            raise ValueError("bad batch")
        return [item * 2 for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_batch=3, window_seconds=5.0)
    results: dict[int, object] = {}

    def submit(item: int) -> None:
        try:
            results[item] = batcher.submit(item)
        except ValueError as error:
            results[item] = error

    threads = [threading.Thread(target=submit, args=(item,)) for item in (1, 2, 3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {1: 2, 2: 4, 3: 6} and sizes == [3]
    assert time.monotonic() - started < 4  # a full batch does not wait out the window
    threads = [threading.Thread(target=submit, args=(item,)) for item in (-1, 5, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(isinstance(results[item], ValueError) for item in (-1, 5, 7))


def test_the_guard_refuses_when_memory_is_short_and_lets_through_when_unknown() -> None:
    with pytest.raises(GpuMemoryShort, match=r"needs about 4\.0 GiB on GPU 0 but only 1\.0 GiB") as short:
        MemoryGuard(read_free=lambda _index: GiB).ensure_room(4 * GiB, 0, "dots.ocr")
    assert short.value.retryable and isinstance(short.value, EngineUnavailable)
    assert "OCRQ_TRANSFORMERS_STOP_VLLM" in short.value.message
    MemoryGuard(read_free=lambda _index: None).ensure_room(4 * GiB, 0, "dots.ocr")  # no NVML: no verdict
    MemoryGuard(read_free=lambda _index: 5 * GiB).ensure_room(4 * GiB, 0, "dots.ocr")


def test_the_guard_can_stop_vllm_and_wait_for_the_memory() -> None:
    free = [GiB]
    stopped: list[str] = []

    def stop() -> list[str]:
        stopped.append("ocrq-vllm-dots.ocr")
        return stopped

    def memory_comes_back(_seconds: float) -> None:
        free[0] = 10 * GiB

    guard = MemoryGuard(lambda _i: free[0], stop, settle_seconds=5, poll_seconds=0, sleep=memory_comes_back)
    guard.ensure_room(4 * GiB, 0, "dots.ocr")
    assert stopped == ["ocrq-vllm-dots.ocr"]


def test_without_docker_the_guard_still_refuses_clearly() -> None:
    def no_docker() -> list[str]:
        raise ConfigurationError("Docker engine not reachable")

    guard = MemoryGuard(lambda _i: GiB, no_docker, settle_seconds=0)
    with pytest.raises(GpuMemoryShort, match="stopping vLLM did not free enough"):
        guard.ensure_room(4 * GiB, 0, "dots.ocr")


class _Container:
    def __init__(self, name: str, tags: list[str], calls: list[str]) -> None:
        self.name, self.status, self.calls = name, "running", calls
        self.image = type("Image", (), {"tags": tags})()

    def reload(self) -> None:
        pass

    def stop(self, timeout: int) -> None:
        self.calls.append(f"stop {self.name}")

    def remove(self) -> None:
        self.calls.append(f"remove {self.name}")


class _DockerClient:
    """The docker SDK's surface that ``ocrq vllm down`` and the guard touch (no Docker engine here)."""

    def __init__(self, containers: list[_Container]) -> None:
        by_name = {container.name: container for container in containers}
        self.containers = type(
            "Containers", (), {"list": lambda _s: containers, "get": lambda _s, n: by_name[n]}
        )()


def test_only_vllm_containers_are_stopped() -> None:
    calls: list[str] = []
    client = _DockerClient(
        [
            _Container("ocrq-vllm-dots.ocr", ["vllm/vllm-openai:v0.11.0"], calls),
            _Container("hand-started", ["vllm/vllm-openai:latest"], calls),
            _Container("ocrq-postgres-1", ["postgres:16"], calls),
        ]
    )
    assert stop_vllm_containers(client) == ["ocrq-vllm-dots.ocr", "hand-started"]
    assert not any("postgres" in call for call in calls)


def test_nvml_counts_physical_gpus() -> None:
    assert nvml_index(0, "2,3") == 2 and nvml_index(1, "2,3") == 3
    assert nvml_index(0, "") == 0 and nvml_index(0, "GPU-5f1c") == 0  # UUIDs: CUDA order is all we know


def test_answers_are_read_by_the_same_dots_parser_as_vllm() -> None:
    spec = bundled_registry().get("dots.ocr")
    choice = choose_prompt(spec, PageTask())
    raw = '[{"bbox": [10, 20, 110, 70], "category": "Title", "text": "# Invoice 42"}, {"bbox": [10, 80'
    plan = ResizePlan((2000, 1000), (1000, 500))
    reading = read_reply(spec, choice, raw, "length", plan)
    assert reading.cells == read_layout(raw, "length", plan).cells  # one implementation, not a copy
    assert reading.cells[0].bbox == (20, 40, 220, 140) and "Invoice 42" in reading.markdown
    assert reading.truncated and reading.repaired  # the cut-off second cell was dropped


def test_pages_are_prepared_exactly_as_for_vllm() -> None:
    spec = bundled_registry().get("dots.ocr")
    page = Image.new("RGB", (1654, 2338), "white")
    prepared = prepare_page(page, spec)
    assert prepared.plan == prepare_image(page, spec, spec.max_pixels).plan
    assert prepared.image.size == prepared.plan.target and prepared.image.mode == "RGB"
