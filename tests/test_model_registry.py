"""The model registry file: it loads, holds the seeds' models, and refuses malformed entries."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrq.api.cli.models import model_row, models_command
from ocrq.errors import ConfigurationError
from ocrq.schemas import PromptMode
from ocrq.worker.models.registry import REGISTRY_PATH, bundled_registry, load_registry, parse_registry

SEED_MODELS = {
    "dots.ocr": "rednote-hilab/dots.ocr",
    "qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2-vl-7b": "Qwen/Qwen2-VL-7B-Instruct",
    "phi-3.5-vision": "microsoft/Phi-3.5-vision-instruct",
    "deepseek-ocr": "deepseek-ai/DeepSeek-OCR",
    "internvl2-2b": "OpenGVLab/InternVL2-2B",
    "got-ocr-2.0": "stepfun-ai/GOT-OCR-2.0-hf",
    "moondream2": "vikhyatk/moondream2",
}
ADDED_MODELS = {  # native in transformers, for the in-process engine's tiny-model-tested recipes
    "qwen2.5-vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "internvl3-1b-hf": "OpenGVLab/InternVL3-1B-hf",
}


def raw_registry() -> dict[str, object]:
    return tomllib.loads(REGISTRY_PATH.read_text(encoding="utf-8"))


def test_every_seed_model_is_there_with_its_repo() -> None:
    registry = bundled_registry()
    assert {key: spec.hf_repo for key, spec in registry.models.items()} == SEED_MODELS | ADDED_MODELS


def test_dots_ocr_carries_what_the_seeds_and_reference_say() -> None:
    dots = bundled_registry().get("dots.ocr")
    assert dots.vllm is not None and dots.vllm.port == 8000
    assert dots.vllm.gpu_memory_utilization == 0.85 and dots.vllm.enforce_eager
    assert dots.image_placeholder == "<|img|><|imgpad|><|endofimg|>"
    assert set(dots.prompts) == set(PromptMode) and "{bbox}" in dots.prompts[PromptMode.GROUNDING]
    assert dots.requires["transformers"] == "<5" and dots.output_format == "dots_layout"
    assert dots.architecture == "DotsOCRForCausalLM" and dots.image_factor == 28
    # the server gets the same pixel budget we resize to, so its own resize is a no-op
    args = dots.vllm_args()
    assert args[args.index("--mm-processor-kwargs") + 1] == '{"min_pixels": 3136, "max_pixels": 4000000}'
    assert "--trust-remote-code" in args and "--enforce-eager" in args


def test_seed_ports_and_transformers_only_models() -> None:
    registry = bundled_registry()
    assert registry.get("qwen3-vl-2b").vllm.port == 8010  # type: ignore[union-attr]
    assert registry.get("qwen2-vl-2b").vllm.port == 8011  # type: ignore[union-attr]
    transformers_only = {spec.key for spec in registry.models.values() if spec.vllm is None}
    assert transformers_only == {"got-ocr-2.0", "moondream2", "internvl3-1b-hf"}
    assert {spec.key for spec in registry.for_backend("vllm")} == set(
        SEED_MODELS | ADDED_MODELS
    ) - transformers_only
    ports = [spec.vllm.port for spec in registry.for_backend("vllm") if spec.vllm]
    assert len(ports) == len(set(ports))
    with pytest.raises(ConfigurationError, match="not served by vLLM"):
        registry.get("moondream2").vllm_args()


def test_page_fits_each_vllm_models_context() -> None:
    """Image tokens at the pixel cap plus max_tokens must fit max_model_len, or every page overflows."""
    for spec in bundled_registry().for_backend("vllm"):
        assert spec.vllm is not None
        image_tokens = spec.max_pixels // spec.image_factor**2 if spec.resize == "smart" else 0
        assert image_tokens + spec.max_tokens < spec.vllm.max_model_len, spec.key


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"known: .*dots\.ocr"):
        bundled_registry().get("dots-ocr-typo")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"max_pixels": 10, "min_pixels": 100}, "min_pixels exceeds max_pixels"),
        ({"prompts": {"layout_all": "x"}}, "text_only prompt"),
        ({"backends": ["transformers"]}, "vllm"),
        ({"requires": {"vllm": "newest please"}}, "not version specifiers"),
        ({"prots": {}}, "prots"),
        ({"image_format": "gif"}, "image_format"),
    ],
)
def test_malformed_entries_are_configuration_errors(change: dict[str, object], complaint: str) -> None:
    document = raw_registry()
    document["models"]["dots.ocr"] |= change  # type: ignore[index]
    with pytest.raises(ConfigurationError, match=complaint):
        parse_registry(document)


def test_unreadable_registry_file(tmp_path: Path) -> None:
    broken = tmp_path / "registry.toml"
    broken.write_text("[models\n")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_registry(broken)


def test_models_command_prints_every_model() -> None:
    result = CliRunner().invoke(models_command, ["--constraints"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for key, repo in SEED_MODELS.items():
        assert key in result.output and repo in result.output
    assert "transformers<5" in result.output and "AutoProcessor.register" in result.output


def test_model_row_shows_serving_flags() -> None:
    row = model_row(bundled_registry().get("dots.ocr"))
    assert row[:5] == [
        "dots.ocr",
        "rednote-hilab/dots.ocr",
        "DotsOCRForCausalLM",
        "vllm+transformers",
        "8000",
    ]
    assert row[5] == "16384 @ 0.85, eager"
    assert model_row(bundled_registry().get("moondream2"))[4] == "-"
