"""Settings from Docker secrets files, and bad settings named by their variable without echoing secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ocrq.settings import build_settings
from ocrq.settings_errors import settings_message


def test_docker_secret_files_are_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ocrq_flower_basic_auth").write_text("ops:from-a-secret-file\n")
    (tmp_path / "ocrq_database_url").write_text("sqlite:///from-secret.db")
    monkeypatch.setenv("OCRQ_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("OCRQ_FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.setenv("OCRQ_DATABASE_URL", "sqlite:///from-env.db")
    settings = build_settings()
    assert settings.flower_basic_auth == "ops:from-a-secret-file"
    assert settings.database_url == "sqlite:///from-env.db"


def test_a_refused_secret_is_named_but_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRQ_API_WEBHOOK_ATTEMPTS", "999")
    monkeypatch.setenv("OCRQ_HF_QUANTIZATION", "3bit")
    with pytest.raises(ValidationError) as caught:
        build_settings()
    message = settings_message(caught.value)
    assert "OCRQ_API_WEBHOOK_ATTEMPTS='999'" in message and "OCRQ_HF_QUANTIZATION='3bit'" in message
    monkeypatch.delenv("OCRQ_API_WEBHOOK_ATTEMPTS")
    monkeypatch.delenv("OCRQ_HF_QUANTIZATION")
    monkeypatch.setenv("OCRQ_API_PUBLIC_URL", "https://ops:hunter2secret@ocr.example.org")
    monkeypatch.setenv("OCRQ_RENDER_DPI", "https://ops:hunter2secret@ocr.example.org")
    with pytest.raises(ValidationError) as caught:
        build_settings()
    message = settings_message(caught.value)
    assert "OCRQ_RENDER_DPI=" in message and "hunter2secret" not in message


def test_a_json_setting_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic_settings import SettingsError

    from ocrq.settings_errors import unparsable_message

    monkeypatch.setenv("OCRQ_VLLM_MODEL_URLS", "http://gpu2:8011")
    with pytest.raises(SettingsError) as caught:
        build_settings()
    assert "OCRQ_VLLM_MODEL_URLS is not valid JSON" in unparsable_message(caught.value)
