"""Bad settings said the way an operator fixes them: the ``OCRQ_`` variable and the value refused.

pydantic's own dump names the field (``render_dpi``) and a docs URL; the person at the terminal set
``OCRQ_RENDER_DPI``. Values of secret-looking variables are never echoed.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from ocrq.redaction import mask_text

ENV_PREFIX = "OCRQ_"
SECRET_WORDS = ("key", "secret", "auth", "password", "token")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def settings_problems(error: ValidationError) -> list[str]:
    """One line per refused variable: ``OCRQ_RENDER_DPI='abc': input should be a valid integer``."""
    return [_problem(detail) for detail in error.errors(include_url=False)]


def _problem(detail: ErrorDetails) -> str:
    reason = _reason(detail["msg"])
    if not detail["loc"]:  # a rule across variables (e.g. visibility timeout vs. page time limit)
        return mask_text(reason)
    field = str(detail["loc"][0])
    name = env_name(field)
    if any(word in field for word in SECRET_WORDS) or not isinstance(detail.get("input"), str | int | float):
        return f"{name}: {reason}"
    return mask_text(f"{name}={detail['input']!r}: {reason}")


def _reason(message: str) -> str:
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def settings_message(error: ValidationError) -> str:
    """The whole complaint as one line (several variables: separated by ``; ``)."""
    return "bad setting: " + "; ".join(settings_problems(error)) + " (environment or .env)"


def unparsable_message(error: SettingsError) -> str:
    """pydantic-settings' own refusal (a JSON setting that is not JSON), with the variable named."""
    found = re.search(r'field "(\w+)"', str(error))
    name = env_name(found.group(1)) if found else "an OCRQ_ variable"
    return f"bad setting: {name} is not valid JSON (e.g. {{\"key\": \"value\"}}) (environment or .env)"
