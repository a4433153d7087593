"""The resume key leaves out no setting that changes a page's result.

Every ``Settings`` field is either a result setting (in the key, so a rerun with another value reads
the page again) or sits in a group of :data:`~ocrq.jobs.options.NOT_RESULT_SETTINGS` that says why
not. A new field in neither fails here, which is the point: its author has to decide.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ocrq.jobs.options import JOB_OVERRIDABLE, NOT_RESULT_SETTINGS, RESULT_SETTINGS
from ocrq.settings import Settings, build_settings


def test_every_setting_is_classified_once() -> None:
    classified = Counter(
        [*RESULT_SETTINGS, *(name for group in NOT_RESULT_SETTINGS.values() for name in group)]
    )
    assert sorted(name for name, times in classified.items() if times > 1) == []
    assert set(Settings.model_fields) - set(classified) == set(), "classify it in ocrq/jobs/options.py"
    assert set(classified) - set(Settings.model_fields) == set(), "a classified name is no setting"


def test_a_job_chooses_only_result_settings() -> None:
    assert set(JOB_OVERRIDABLE) <= set(RESULT_SETTINGS)


def test_the_recorded_settings_are_the_result_settings() -> None:
    assert set(build_settings().result_settings()) == set(RESULT_SETTINGS)


@pytest.mark.parametrize(
    ("name", "other"),
    [("vllm_drop_page_headers", True), ("vllm_color", True), ("render_dpi", 300), ("text_layer", "off")],
)
def test_a_result_setting_changes_the_key(name: str, other: object) -> None:
    host = build_settings()
    assert host.model_copy(update={name: other}).result_key() != host.result_key()


def test_a_host_setting_leaves_the_key_alone() -> None:
    host = build_settings()
    assert (
        host.model_copy(update={"vllm_max_in_flight": 3, "page_workers": 2}).result_key() == host.result_key()
    )


def test_the_api_applies_a_jobs_options_the_way_a_worker_reapplies_them() -> None:
    from ocrq.api.rest.schemas import JobOptions
    from ocrq.api.rest.submission import job_settings

    host = build_settings(engines=["vllm", "tesseract"])
    options = JobOptions(engines=["tesseract"], dpi=150, prompt_mode="text_only", text_layer="off")
    submitted = job_settings(host, options)
    assert (submitted.engines, submitted.render_dpi, submitted.text_layer) == (["tesseract"], 150, "off")
    worker = build_settings(engines=["vllm", "tesseract"]).for_job(submitted.result_settings())
    assert worker.result_key() == submitted.result_key()  # the worker reads what the client chose
    assert job_settings(host, JobOptions()).result_key() == host.result_key()  # no choice, no change
