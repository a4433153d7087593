"""Is any worker consuming a queue? For ``--wait``, which must not wait in silence for nobody."""

from __future__ import annotations

from celery import Celery

INSPECT_TIMEOUT_S = 2.0


def queue_consumers(app: Celery, queue: str, timeout: float = INSPECT_TIMEOUT_S) -> int | None:
    """How many live workers consume ``queue`` (Celery's inspect: workers answer over the broker).

    None when the broker cannot be asked; 0 when it can and no worker answered for that queue.
    """
    try:
        answers = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # kombu or redis failing to ask: unknown, not "nobody"
        return None
    return sum(any(q.get("name") == queue for q in queues) for queues in answers.values())
