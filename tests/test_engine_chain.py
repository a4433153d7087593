"""The engine chain: fallback order, attempts, input errors, and each engine's circuit breaker."""

from __future__ import annotations

from PIL import Image

from ocrq.errors import EngineFailed, PageRenderError
from ocrq.schemas import PageTask
from ocrq.worker.engines.breaker import BreakerState, CircuitBreaker
from ocrq.worker.engines.chain import EngineChain, FallbackGrace, chain_failure
from tests.engine_doubles import ScriptedEngine

PAGE = Image.new("L", (40, 20), 255)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_engine_falls_back_and_both_attempts_are_recorded() -> None:
    chain = EngineChain([ScriptedEngine("first", failures=1), ScriptedEngine("second")])
    result, attempts = chain.recognize(PAGE, PageTask())
    assert result is not None and result.engine == "second"
    assert [(a.engine, a.outcome, a.error_code) for a in attempts] == [
        ("first", "error", "engine_unavailable"),
        ("second", "ok", None),
    ]


def test_an_input_error_stops_the_chain() -> None:
    second = ScriptedEngine("second")
    chain = EngineChain([ScriptedEngine("first", 1, PageRenderError("bad page")), second])
    result, attempts = chain.recognize(PAGE, PageTask())
    assert result is None and len(attempts) == 1 and second.calls == 0
    assert chain_failure(attempts).code == "render_failed"


def test_the_breaker_opens_after_consecutive_failures_then_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=clock)
    down, backup = ScriptedEngine("down", failures=4), ScriptedEngine("backup")
    chain = EngineChain([down, backup], [breaker, CircuitBreaker()])
    for _ in range(3):
        chain.recognize(PAGE, PageTask())
    assert breaker.state is BreakerState.OPEN
    _, attempts = chain.recognize(PAGE, PageTask())
    assert [a.engine for a in attempts] == ["backup"] and down.calls == 3  # skipped, no attempt
    clock.now = 31
    _, attempts = chain.recognize(PAGE, PageTask())  # half-open: one probe, still failing
    assert [a.engine for a in attempts] == ["down", "backup"] and breaker.state is BreakerState.OPEN
    clock.now = 62
    result, attempts = chain.recognize(PAGE, PageTask())  # the probe succeeds
    assert result.engine == "down" and breaker.state is BreakerState.CLOSED


def test_only_one_probe_goes_through_a_half_open_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10
    assert breaker.allow() is True
    assert breaker.allow() is False  # a second page while the probe is out
    breaker.record_success()
    assert breaker.allow() is True


def test_page_specific_failures_do_not_open_the_circuit() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    chain = EngineChain([ScriptedEngine("picky", 5, EngineFailed("model produced nothing"))], [breaker])
    for _ in range(4):
        chain.recognize(PAGE, PageTask())
    assert breaker.state is BreakerState.CLOSED


def test_the_chain_failure_is_retryable_only_when_an_engine_may_recover() -> None:
    _, down = EngineChain([ScriptedEngine("down", 1)]).recognize(PAGE, PageTask())
    _, picky = EngineChain([ScriptedEngine("picky", 1, EngineFailed("nothing"))]).recognize(PAGE, PageTask())
    assert chain_failure(down).retryable is True
    assert chain_failure(picky).retryable is False
    assert chain_failure([]).retryable is True  # every circuit open: try later


def test_the_first_probe_comes_soon_and_the_wait_doubles_while_the_engine_stays_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock, first_probe_s=2)
    breaker.record_failure()  # opens at 0: the first probe may come at 2
    assert not breaker.allow()
    clock.now = 2
    assert breaker.allow()
    breaker.record_failure()  # still down at 2: the next wait is 4
    clock.now = 5.9
    assert not breaker.allow()
    clock.now = 6
    assert breaker.allow()
    breaker.record_failure()  # at 6: 8
    clock.now = 14
    assert breaker.allow()
    breaker.record_failure()  # at 14: capped at reset_after_s
    clock.now = 23.9
    assert not breaker.allow()
    clock.now = 24
    assert breaker.allow()
    breaker.record_success()
    breaker.record_failure()  # a new outage starts from the first probe again
    clock.now = 26
    assert breaker.allow()


def test_pages_are_held_for_a_down_primary_until_its_grace_ends() -> None:
    clock = Clock()
    down, backup = ScriptedEngine("down", failures=3), ScriptedEngine("backup")
    chain = EngineChain([down, backup], [CircuitBreaker(99), CircuitBreaker()], FallbackGrace(10, clock))
    held = chain.read(PAGE, PageTask(), may_hold=True)
    assert held.held and held.result is None and backup.calls == 0
    assert [a.engine for a in held.attempts] == ["down"]  # the failed try is on record
    assert "OCRQ_FALLBACK_AFTER_SECONDS" in chain.held_error().message and chain.held_error().retryable
    clock.now = 10  # the grace is over: the backup reads the page (degraded)
    fallen = chain.read(PAGE, PageTask(), may_hold=True)
    assert not fallen.held and fallen.result.engine == "backup"
    assert chain.read(PAGE, PageTask(), may_hold=False).result.engine == "backup"  # cannot wait: no hold
    clock.now = 11
    back = chain.read(PAGE, PageTask(), may_hold=True)  # the primary answers again: its clock resets
    assert back.result.engine == "down" and chain.grace.down_for() is None


def test_a_page_the_primary_cannot_read_is_not_held() -> None:
    picky = ScriptedEngine("picky", failures=1, error=EngineFailed("the model looped"))
    chain = EngineChain([picky, ScriptedEngine("backup")], grace=FallbackGrace(60))
    outcome = chain.read(PAGE, PageTask(), may_hold=True)
    assert outcome.result.engine == "backup" and not outcome.held  # not an outage: nothing to wait for
