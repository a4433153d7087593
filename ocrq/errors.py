"""One error tree for ocrq.

Every error has a stable machine ``code`` (stored in the database, written to
``batch.json``, returned by the API) and a ``retryable`` flag that tells the
queue whether trying again later could succeed. Third-party exceptions are
translated into these at the boundary where they are caught. Every class lives
here, so a new one is added to its family below and to this tree:

* OcrqError ``internal``: the base; also whatever was not foreseen
  * InputError ``input_error``: the document is the problem; another engine or a retry fails the same way
    - EmptyDocument ``empty``
    - EncryptedDocument ``encrypted``
    - UnreadableDocument ``unreadable``
    - UnsupportedType ``unsupported_type``
    - TooLarge ``too_large``
    - SourceMissing ``not_found``
      - NotAFile ``not_a_file``
    - PageRenderError ``render_failed``
    - PageImageRejected ``image_rejected``
  * OutputError ``output_failed``: one result file of a document; its other files stand
    - PdfaNotReached ``pdfa_failed``
  * EngineError ``engine_error``: the OCR backend is the problem
    - EngineUnavailable ``engine_unavailable`` (retryable): cannot serve now
      - IncompatibleVersions ``incompatible_versions`` (not retryable)
      - RemoteCodeMissing ``remote_code_missing`` (not retryable)
      - QuantizationUnavailable ``quantization_unavailable`` (not retryable)
      - GpuMemoryShort (retryable)
      - ModelNotCached (retryable)
    - EngineFailed ``engine_failed``: answered, but no result for this page
      - DegenerateOutput ``degenerate_output``
      - ContextTooLong ``context_too_long``
        - ContextOverflow: carries the server's numbers, to shrink the page just enough
      - OutOfMemory
    - EngineServerError ``engine_server_error`` (retryable)
    - PrimaryEngineDown ``primary_engine_down`` (retryable)
    - AllEnginesFailed ``all_engines_failed`` (retryable)
  * ConfigurationError ``configuration``: ocrq is set up wrongly; an operator must act
    - NoEngineConfigured ``no_engine``
    - ModelNotServed ``model_not_served``
  * RequestError ``invalid_request``: an API request the client has to change
    - Unauthorized ``unauthorized``
      - NotSignedIn
    - ResourceNotFound ``resource_not_found``
    - PathNotAllowed ``path_not_allowed``
    - UnsupportedMediaType ``unsupported_media_type``
    - JobNotFinished ``job_not_finished``
    - JobAlreadyFinished ``job_finished``
    - QuotaExceeded ``quota_exceeded`` (retryable)
    - CallbackNotAllowed ``callback_not_allowed``
    - CsrfRejected ``csrf_rejected``
  * services ocrq needs are down or full (retryable, no common base):
    - BrokerUnavailable ``broker_unavailable``
    - DatabaseUnavailable ``database_unavailable``
    - Overloaded ``overloaded``

A class without a code of its own shares its parent's (stored and shown as the parent).
HTTP statuses are chosen in ``api/rest/errors.py``; the kernel only names the failure.
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


# --- input: the document itself is the problem; retrying never helps ------------------------------


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


class PageImageRejected(InputError):
    """The OCR server could not load the page image it was sent ("Failed to load image")."""

    code = "image_rejected"


# --- result files: a format could not be written; the document's other files stand ----------------


class OutputError(OcrqError):
    """One result format of one document could not be written (its source gone, a library refusal)."""

    code = "output_failed"


class PdfaNotReached(OutputError):
    """The searchable PDF was written, but not as PDF/A: the source holds what PDF/A forbids."""

    code = "pdfa_failed"


# --- engines: the OCR backend is the problem ------------------------------------------------------


class EngineError(OcrqError):
    code = "engine_error"


class EngineUnavailable(EngineError):
    """The engine cannot serve now (not installed, not loaded, server down)."""

    code = "engine_unavailable"
    retryable = True


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


class GpuMemoryShort(EngineUnavailable):
    """Not enough free GPU memory to load the model now (vLLM probably holds the card)."""


class ModelNotCached(EngineUnavailable):
    """The model is not (completely) in the local cache; ocrq never downloads at run time."""


class EngineFailed(EngineError):
    """The engine answered but could not produce a result for this page."""

    code = "engine_failed"


class DegenerateOutput(EngineFailed):
    """The model looped or produced nothing usable on every rung of the retry ladder."""

    code = "degenerate_output"


class ContextTooLong(EngineFailed):
    """The page does not fit the model's context even after downscaling."""

    code = "context_too_long"


class ContextOverflow(ContextTooLong):
    """The request exceeds the context; carries vLLM's numbers so the engine can shrink just enough."""

    def __init__(
        self, message: str, limit: int | None, prompt_tokens: int | None, output_too_large: bool
    ) -> None:
        super().__init__(message)
        self.limit, self.prompt_tokens, self.output_too_large = limit, prompt_tokens, output_too_large


class OutOfMemory(EngineFailed):
    """One page alone does not fit in GPU memory for generation."""


class EngineServerError(EngineError):
    """The server kept failing (5xx, timeouts, cut connections) after bounded retries."""

    code = "engine_server_error"
    retryable = True


class PrimaryEngineDown(EngineError):
    """The primary engine is down within its grace period: the page waits instead of falling back."""

    code = "primary_engine_down"
    retryable = True


class AllEnginesFailed(EngineError):
    """Every engine in the chain failed for a page."""

    code = "all_engines_failed"
    retryable = True


# --- configuration: ocrq is set up wrongly; an operator has to act --------------------------------


class ConfigurationError(OcrqError):
    code = "configuration"


class NoEngineConfigured(ConfigurationError):
    code = "no_engine"


class ModelNotServed(ConfigurationError):
    """The server answers but does not serve the configured model: retrying cannot help."""

    code = "model_not_served"


# --- requests: an API call the client has to change -----------------------------------------------


class RequestError(OcrqError):
    """The request cannot be served as sent; the client has to change it."""

    code = "invalid_request"


class Unauthorized(RequestError):
    code = "unauthorized"


class NotSignedIn(Unauthorized):
    """No session, or one that expired or whose key was revoked: the page sends the user to sign in."""


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


class QuotaExceeded(RequestError):
    """One key has more pages waiting than its quota allows; other keys are not affected."""

    code = "quota_exceeded"
    retryable = True


class CallbackNotAllowed(RequestError):
    """A webhook URL that is not https, or that resolves to an address ocrq must not call."""

    code = "callback_not_allowed"


class CsrfRejected(RequestError):
    """A web form sent from another site, or without the session's current token (a stale page)."""

    code = "csrf_rejected"


# --- services: what ocrq needs is down or full; later may work ------------------------------------


class BrokerUnavailable(OcrqError):
    """The broker (Redis) cannot be reached; work registered in the database is sent when it is back."""

    code = "broker_unavailable"
    retryable = True


class DatabaseUnavailable(OcrqError):
    """The database cannot be reached (down, cut, wrong address); nothing was changed by this call."""

    code = "database_unavailable"
    retryable = True


class Overloaded(OcrqError):
    """The backlog is over its limit: try again later."""

    code = "overloaded"
    retryable = True


# --- looking errors up by their stored code -------------------------------------------------------


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
