"""The transformers engine on a remote ``ocrq serve-hf``: the chain's second VLM, over HTTP.

``serve-hf`` speaks vLLM's API, so the remote engine *is* the vLLM engine (client, retries, context
handling, retry ladder, adaptive in-flight cap) aimed at ``OCRQ_TRANSFORMERS_URL`` with the
transformers model's registry entry, and recorded under the engine name ``transformers``. That
makes the chain vLLM → a remote Transformers server → Tesseract with ``OCRQ_ENGINES`` unchanged.
"""

from __future__ import annotations

from ocrq.errors import ConfigurationError
from ocrq.settings import Settings
from ocrq.worker.engines.vllm.client import ClientConfig, VllmClient
from ocrq.worker.engines.vllm.engine import EngineOptions, VllmEngine
from ocrq.worker.models.registry import Registry, bundled_registry


class RemoteTransformersEngine(VllmEngine):
    """A :class:`VllmEngine` whose pages are recorded as the transformers engine's."""

    name = "transformers"
    model_hint = "set OCRQ_TRANSFORMERS_MODEL to match, or start the server with `ocrq serve-hf --model KEY`"
    url_setting = "OCRQ_TRANSFORMERS_URL"


def remote_transformers_engine(
    settings: Settings, registry: Registry | None = None
) -> RemoteTransformersEngine:
    """The factory for ``OCRQ_TRANSFORMERS_URL``; a server that answers must serve the model."""
    spec = (registry or bundled_registry()).get(settings.transformers_model)
    if spec.transformers is None:
        raise ConfigurationError(f"model {spec.key} has no Transformers loading (backends: {spec.backends})")
    config = ClientConfig.from_settings(settings, settings.transformers_url, settings.transformers_api_key)
    options = EngineOptions(
        settings.transformers_ladder_retries,
        settings.vllm_downscale_retries,
        settings.vllm_drop_page_headers,
        settings.vllm_color,
    )
    engine = RemoteTransformersEngine(spec, VllmClient(config), None, options)
    engine.check_model()
    return engine
