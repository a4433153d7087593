"""The heartbeat that keeps a live worker's page leases fresh.

A page's claim lasts ``OCRQ_PAGE_LEASE_SECONDS``; this thread renews the
leases of every page the process is working on three times per lease. When
the process dies (SIGKILL, OOM, power), the renewals stop and its pages are
free for another worker about one lease later instead of after the page time
limit.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from ocrq.jobs.store import JobStore

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    def __init__(self, store: JobStore, lease_seconds: float) -> None:
        self.store = store
        self.every = max(lease_seconds / 3, 0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="ocrq-lease-heartbeat", daemon=True)

    def start(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.store.renew_leases()
            except SQLAlchemyError as error:  # a database blip: the lease outlasts a few missed beats
                log.warning("could not renew page leases: %s", type(error).__name__)
