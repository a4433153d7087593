"""``ocrq doctor``: one line per moving part, and whether the ones this configuration needs are up.

Required: the database, the broker when one is set, a vLLM server when
``OCRQ_VLLM_URL`` names one, a ``serve-hf`` server when ``OCRQ_TRANSFORMERS_URL``
does and the transformers engine is in the chain, and Tesseract's languages when
Tesseract is in the chain. Whether the in-process Transformers model could load,
and GPU memory, are information only (the chain skips what a host cannot run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ocrq.errors import OcrqError
from ocrq.redaction import mask_text, mask_url
from ocrq.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


CheckRun = Callable[[Settings], "Check | list[Check] | None"]


def run_checks(settings: Settings) -> list[Check]:
    """Every line masked: a URL's credentials may also come back inside a library's error message."""
    checks: list[CheckRun] = [
        check_database,
        check_broker,
        check_vllm,
        check_transformers,
        check_tesseract,
        check_gpu,
    ]
    found = [check for run in checks for check in _guarded(run, settings)]
    return [replace(check, detail=mask_text(check.detail)) for check in found]


def _guarded(run: CheckRun, settings: Settings) -> list[Check]:
    """A check that crashes is a failed check, not a crashed doctor."""
    try:
        found = run(settings)
    except Exception as error:
        name = run.__name__.removeprefix("check_")
        return [Check(name, False, f"{type(error).__name__}: {error}")]
    if isinstance(found, list):
        return found
    return [found] if found else []


def check_database(settings: Settings) -> Check:
    from ocrq.db.migrations import is_current
    from ocrq.db.session import make_engine

    engine = make_engine(settings.database_url)
    try:
        current = is_current(engine)
    finally:
        engine.dispose()
    sqlite = engine.dialect.name == "sqlite"
    behind = "new or behind: migrated on first use" if sqlite else "schema behind: run `ocrq db upgrade`"
    detail = f"{engine.url.render_as_string(hide_password=True)}: " + (
        "schema current" if current else behind
    )
    return Check("database", current or sqlite, detail)


def check_broker(settings: Settings) -> Check | None:
    if not settings.broker_url:
        return Check("broker", True, "none (embedded: jobs run in-process)", required=False)
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3)
    try:
        client.ping()
        depth = {q: client.llen(q) for q in (settings.gpu_queue, settings.cpu_queue)}
    finally:
        client.close()
    return Check("broker", True, f"{mask_url(settings.broker_url)}: up, queued {depth}")


def check_vllm(settings: Settings) -> list[Check]:
    """One line per configured server: OCRQ_VLLM_URL and each per-model URL."""
    from ocrq.worker.engines.vllm.balance import server_urls

    values = [settings.vllm_url, *settings.vllm_model_urls.values()]
    servers = dict.fromkeys(url for value in values for url in server_urls(value))
    return [_check_vllm_server(settings, url) for url in servers]


def _check_vllm_server(settings: Settings, url: str, name: str = "vllm", required: bool = True) -> Check:
    from ocrq.worker.engines.vllm.client import ClientConfig, VllmClient

    only_this = settings.model_copy(update={"vllm_url": url, "vllm_model_urls": {}})
    key = settings.transformers_api_key if name == "transformers" else None
    client = VllmClient(ClientConfig.from_settings(only_this, api_key=key))
    try:
        healthy, models = client.health(), client.served_models()
    finally:
        client.close()
    served = ", ".join(f"{name} (max_model_len {length})" for name, length in models.items()) or "none"
    state = "ok" if healthy else "down"
    detail = f"{mask_url(url)}: health {state}; models: {served}"
    return Check(name, healthy and bool(models), detail, required)


def check_transformers(settings: Settings) -> Check | None:
    """The ``serve-hf`` server when OCRQ_TRANSFORMERS_URL names one; else whether this host could load
    the model in-process (checked without loading: recipe, versions, snapshot)."""
    in_chain = "transformers" in settings.engines
    if settings.transformers_url:
        return _check_vllm_server(settings, settings.transformers_url, "transformers", in_chain)
    if not in_chain:
        return None
    from ocrq.worker.engines.hf.engine import load_plan

    try:
        plan = load_plan(settings)
    except OcrqError as error:
        return Check("transformers", False, f"{settings.transformers_model}: {error.message}", required=False)
    detail = f"{plan.spec.key} from {plan.path} ({plan.recipe.name}; loads on the first page)"
    return Check("transformers", True, detail, required=False)


def check_tesseract(settings: Settings) -> Check | None:
    from ocrq.worker.engines.tessdata import require_languages

    required = "tesseract" in settings.engines
    try:
        folder = require_languages(
            settings.tesseract_langs, settings.tessdata_dir, settings.tesseract_detect_orientation
        )
    except OcrqError as error:
        return Check("tesseract", False, error.message, required=required)
    return Check("tesseract", True, f"{settings.tesseract_langs} in {folder}", required=required)


def check_gpu(_settings: Settings) -> Check:
    try:
        import pynvml
    except ImportError:
        return Check(
            "gpu", False, "NVML not available (nvidia-ml-py not installed or no driver)", required=False
        )
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:  # nvidia-ml-py installed (the transformers extra), no driver
        return Check("gpu", False, f"NVML not available: {error}", required=False)
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    finally:
        pynvml.nvmlShutdown()
    return Check(
        "gpu", True, f"{memory.free / 2**30:.1f} GiB free of {memory.total / 2**30:.1f} GiB", required=False
    )


def healthy(checks: list[Check]) -> bool:
    return all(check.ok for check in checks if check.required)
