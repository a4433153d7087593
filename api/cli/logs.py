"""The CLI's logging: ``-v`` shows what engines and workers do (and tracebacks of known failures);
``OCRQ_LOG_LEVEL`` and ``OCRQ_LOG_FORMAT`` (console or json) win over the defaults."""

from __future__ import annotations

import logging
import os

from ocrq.logs import configure_logging as configure_root
from ocrq.logs import is_configured, log_level


def configure_logging_once(verbose: bool) -> None:
    """For ``submit-batch`` run on its own (``ocrq -v submit-batch`` has set things up already)."""
    if verbose or not is_configured():
        configure_logging(verbose)


def configure_logging(verbose: bool) -> None:
    level = log_level("info" if verbose else "warning")
    if verbose and not os.environ.get("OCRQ_LOG_LEVEL"):
        level = logging.INFO
    configure_root(level)
