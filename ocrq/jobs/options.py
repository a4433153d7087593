"""Which settings change a page's result: the resume key, and which of them a job may choose.

A page done before is reused (on a rerun, a resume, the inbox) only when its document's content and
its job's result settings are the same: :func:`result_settings` is what a job records, and its hash is
the result key. Forgetting a setting here makes a rerun reuse pages made another way, so every
``Settings`` field is classified below, either as a result setting or in one of the groups that say
why it is not; a test fails for a field in neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocrq.schemas import PromptMode

if TYPE_CHECKING:
    from ocrq.settings import Settings

RESULT_SETTINGS = (
    "engines",
    "render_dpi",
    "max_page_pixels",
    "text_layer",
    "tesseract_langs",
    "tesseract_detect_orientation",
    "vllm_model",
    "vllm_served_model_name",
    "prompt_mode",
    "transformers_model",
    "vllm_color",
    "vllm_drop_page_headers",
)
"""What a page is read with and how its text is made: the resume key."""

JOB_OVERRIDABLE = (
    "engines",
    "text_layer",
    "render_dpi",
    "vllm_model",
    "vllm_served_model_name",
    "prompt_mode",
    "transformers_model",
)
"""Result settings a job may choose for itself (API options); workers on other hosts honour them."""

NOT_RESULT_SETTINGS: dict[str, frozenset[str]] = {
    # How this host runs a model. They can change a page's text at the margin, but they are the
    # operator's, not the job's: keyed, no result would be reusable from one host to the next.
    "host_model_tuning": frozenset(
        {
            "chain_factory",
            "tessdata_dir",
            "transformers_device",
            "transformers_8bit",
            "hf_quantization",
            "hf_quantization_fallback",
            "transformers_max_new_tokens",
            "vllm_ladder_retries",
            "vllm_downscale_retries",
            "transformers_ladder_retries",
        }
    ),
    # Where an engine runs and how it is fed: the same model answers the same.
    "engine_plumbing": frozenset(
        {
            "vllm_bind_host",
            "vllm_model_urls",
            "vllm_url",
            "vllm_api_key",
            "vllm_max_in_flight",
            "vllm_adapt_every_s",
            "vllm_target_waiting",
            "vllm_connect_timeout",
            "vllm_read_timeout",
            "vllm_retries",
            "vllm_backoff_s",
            "vllm_backoff_max_s",
            "transformers_model_dir",
            "transformers_idle_unload_seconds",
            "transformers_batch_size",
            "transformers_stop_vllm",
            "transformers_url",
            "transformers_api_key",
        }
    ),
    # When to retry or fall back. The engine that read a page is stored on it; a degraded page is
    # counted and redone by ``ocrq redo --degraded``, not by a rerun.
    "failure_handling": frozenset(
        {
            "breaker_failures",
            "breaker_reset_seconds",
            "breaker_first_probe_seconds",
            "fallback_after_seconds",
            "page_retries",
            "page_retry_backoff_seconds",
        }
    ),
    # What is refused, never how an accepted page reads.
    "input_limits": frozenset({"max_source_pixels", "max_file_bytes", "max_pages_per_document"}),
    # Which files are written from the stored pages (``ocrq results`` writes them again).
    "result_files": frozenset({"output_dir", "output_markdown", "output_json", "outputs", "output_pdfa"}),
    # Processes, queues, storage and logs.
    "running": frozenset(
        {
            "database_url",
            "broker_url",
            "page_workers",
            "prepare_processes",
            "prepare_dir",
            "log_level",
            "log_format",
            "gpu_queue",
            "cpu_queue",
            "page_time_limit",
            "page_lease_seconds",
            "visibility_timeout",
            "reconcile_interval",
            "reconcile_grace",
            "flower_basic_auth",
            "flower_url",
            "inbox_dir",
            "inbox_schedule",
            "inbox_stable_seconds",
            "inbox_move",
        }
    ),
    # The REST API and the web page: who may submit what, and how they hear back.
    "api": frozenset(
        {
            "api_path_roots",
            "api_upload_dir",
            "api_upload_retention_hours",
            "api_max_upload_bytes",
            "api_max_files_per_job",
            "api_max_pages_per_job",
            "api_backlog_limit",
            "api_retry_after_s",
            "api_long_poll_max_s",
            "api_webhook_secret",
            "api_webhook_attempts",
            "api_webhook_backoff_s",
            "api_webhook_timeout_s",
            "api_webhook_poll_s",
            "api_key_max_queued_pages",
            "api_public_url",
            "api_behind_tls",
            "webhook_allow_http",
            "webhook_allow_hosts",
            "webhook_allow_private",
            "web_session_secret",
            "web_session_hours",
        }
    ),
}


def result_settings(settings: Settings) -> dict[str, object]:
    """The settings that change OCR output, as stored on each job (JSON values; never secrets)."""
    values: dict[str, object] = {name: getattr(settings, name) for name in RESULT_SETTINGS}
    values["prompt_mode"] = PromptMode(settings.prompt_mode).value
    return values
