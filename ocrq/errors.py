"""One error tree for ocrq.

Every error has a stable machine ``code`` (stored in the database, written to
``batch.json``, returned by the API) and a ``retryable`` flag that tells the
queue whether trying again later could succeed. Third-party exceptions are
translated into these at the boundary where they are caught.
"""

from __future__ import annotations

from typing import ClassVar


class OcrqError(Exception):
    """Base of every error ocrq reports on purpose."""

    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:  # a class default, overridden where one case knows better
            self.retryable = retryable  # type: ignore[misc]

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# --- input: the document itself is the problem; retrying never helps -------


class InputError(OcrqError):
    """A document (or one page of it) cannot be OCRed as given."""

    code = "input_error"


class EmptyDocument(InputError):
    code = "empty"


class EncryptedDocument(InputError):
    code = "encrypted"


class UnreadableDocument(InputError):
    code = "unreadable"


class UnsupportedType(InputError):
    code = "unsupported_type"


class TooLarge(InputError):
    code = "too_large"


class SourceMissing(InputError):
    code = "not_found"


class NotAFile(SourceMissing):
    """A folder entry that is no regular file: a dangling or looping link, a FIFO, a device."""

    code = "not_a_file"


class PageRenderError(InputError):
    """One page failed to render; the rest of the document goes on."""

    code = "render_failed"


# --- result files: a format could not be written; the document's other files stand ----


class OutputError(OcrqError):
    """One result format of one document could not be written (its source gone, a library refusal)."""

    code = "output_failed"


class PdfaNotReached(OutputError):
    """The searchable PDF was written, but not as PDF/A: the source holds what PDF/A forbids."""

    code = "pdfa_failed"


# --- engines: the OCR backend is the problem ---------------------------------


class EngineError(OcrqError):
    code = "engine_error"


class EngineUnavailable(EngineError):
    """The engine cannot serve now (not installed, not loaded, server down)."""

    code = "engine_unavailable"
    retryable = True


class EngineFailed(EngineError):
    """The engine answered but could not produce a result for this page."""

    code = "engine_failed"


class PrimaryEngineDown(EngineError):
    """The primary engine is down within its grace period: the page waits instead of falling back."""

    code = "primary_engine_down"
    retryable = True


class AllEnginesFailed(EngineError):
    """Every engine in the chain failed for a page."""

    code = "all_engines_failed"
    retryable = True


# --- system: ocrq itself is misconfigured or broken -------------------------


class ConfigurationError(OcrqError):
    code = "configuration"


class NoEngineConfigured(ConfigurationError):
    code = "no_engine"


class BrokerUnavailable(OcrqError):
    """The broker (Redis) cannot be reached; work registered in the database is sent when it is back."""

    code = "broker_unavailable"
    retryable = True


class DatabaseUnavailable(OcrqError):
    """The database cannot be reached (down, cut, wrong address); nothing was changed by this call."""

    code = "database_unavailable"
    retryable = True


def _subclasses(cls: type[OcrqError]) -> list[type[OcrqError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def is_input_error_code(code: str | None) -> bool:
    """True for codes that blame the document, where another engine would fail the same way."""
    return any(cls.code == code for cls in _subclasses(InputError))


def error_from_code(code: str, message: str) -> OcrqError:
    """Rebuild an error from its stored code (unknown codes come back as the base class)."""
    for cls in _subclasses(OcrqError):
        if cls.code == code:
            return cls(message)
    return OcrqError(message)


# --- vLLM engine (appended with the vLLM engine) ------------------------------


class PageImageRejected(InputError):
    """The OCR server could not load the page image it was sent ("Failed to load image")."""

    code = "image_rejected"


class ModelNotServed(ConfigurationError):
    """The server answers but does not serve the configured model: retrying cannot help."""

    code = "model_not_served"


class EngineServerError(EngineError):
    """The server kept failing (5xx, timeouts, cut connections) after bounded retries."""

    code = "engine_server_error"
    retryable = True


class DegenerateOutput(EngineFailed):
    """The model looped or produced nothing usable on every rung of the retry ladder."""

    code = "degenerate_output"


class ContextTooLong(EngineFailed):
    """The page does not fit the model's context even after downscaling."""

    code = "context_too_long"


# --- REST API (appended with the REST API) ------------------------------------
# The request, not a document, is the problem. HTTP statuses are chosen in
# api/errors.py; the kernel only names the failure.


class RequestError(OcrqError):
    """The request cannot be served as sent; the client has to change it."""

    code = "invalid_request"


class Unauthorized(RequestError):
    code = "unauthorized"


class ResourceNotFound(RequestError):
    """No job, document or page with that id (``not_found`` is taken by missing source files)."""

    code = "resource_not_found"


class PathNotAllowed(RequestError):
    """A server-side path outside the configured roots, after resolving symlinks and ``..``."""

    code = "path_not_allowed"


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"


class JobNotFinished(RequestError):
    """Results were asked for before the job ended: retry after ``?wait=``, not a 404 (docling-serve#435)."""

    code = "job_not_finished"


class JobAlreadyFinished(RequestError):
    code = "job_finished"


class Overloaded(OcrqError):
    """The backlog is over its limit: try again later."""

    code = "overloaded"
    retryable = True


class QuotaExceeded(RequestError):
    """One key has more pages waiting than its quota allows; other keys are not affected."""

    code = "quota_exceeded"
    retryable = True


class CallbackNotAllowed(RequestError):
    """A webhook URL that is not https, or that resolves to an address ocrq must not call."""

    code = "callback_not_allowed"


# --- Transformers recipes and serve-hf (appended with issue 17) ----------------------------------


class IncompatibleVersions(EngineUnavailable):
    """An installed library version is one the model is known to break on (see the registry)."""

    code = "incompatible_versions"
    retryable = False


class RemoteCodeMissing(EngineUnavailable):
    """A remote-code model's snapshot lacks the ``.py`` files its configs name."""

    code = "remote_code_missing"
    retryable = False


class QuantizationUnavailable(EngineUnavailable):
    """8-/4-bit loading was asked for where it cannot run (no CUDA, no bitsandbytes) and refusing
    was chosen over full precision."""

    code = "quantization_unavailable"
    retryable = False
