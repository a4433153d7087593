"""Every registry model's Transformers recipe, tested where no weights are needed.

Remote-code models (dots.ocr, Phi-3.5-vision, moondream2, DeepSeek-OCR, InternVL2) cannot be run here:
their weights cannot be downloaded. What they need from ocrq can be checked without them: the
registry's permission, the snapshot's code files, version pins, the prompts handed to their own
methods (recorded by small stand-ins for ``model.infer``/``query``/processor calls), and the reading
of their answers. Architectures native to transformers run end to end on tiny random models in
``test_hf_architectures.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ocrq.api.cli.models import models_command
from ocrq.errors import ConfigurationError, EngineFailed, IncompatibleVersions, RemoteCodeMissing
from ocrq.schemas import PageTask, PromptMode
from ocrq.settings import Settings
from ocrq.worker.engines.hf import deepseek_ocr, internvl_chat, moondream, phi3v
from ocrq.worker.engines.hf.answers import PageJob
from ocrq.worker.engines.hf.engine import load_plan
from ocrq.worker.engines.hf.loading import LoadedModel
from ocrq.worker.engines.hf.recipes import RECIPES, recipe_for
from ocrq.worker.engines.hf.versions import can_share, check_versions, incompatible_pairs, installed_version
from ocrq.worker.engines.vllm.request import choose_prompt, read_reply
from ocrq.worker.models.registry import bundled_registry
from ocrq.worker.ocr_output.resize import ResizePlan

MISSING = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
needs_extra = pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed (the transformers extra)")
REMOTE = {"dots.ocr", "phi-3.5-vision", "deepseek-ocr", "internvl2-2b", "moondream2"}
TRANSFORMERS_VERSION = installed_version("transformers") or "0"


def test_every_transformers_model_has_a_recipe_and_says_how_far_it_was_run() -> None:
    for spec in bundled_registry().for_backend("transformers"):
        recipe = recipe_for(spec)
        assert spec.transformers is not None
        assert recipe.remote_code == (spec.key in REMOTE) == spec.transformers.trust_remote_code, spec.key
        expected = "no-weights" if spec.key in REMOTE else "tiny-random"
        assert spec.transformers.tested == expected, spec.key  # nothing here ran on real weights
    assert {spec.architecture for spec in bundled_registry().for_backend("transformers")} <= set(RECIPES)


def test_remote_code_runs_only_with_the_registrys_permission() -> None:
    spec = bundled_registry().get("moondream2")
    assert spec.transformers is not None
    barred = spec.model_copy(
        update={"transformers": spec.transformers.model_copy(update={"trust_remote_code": False})}
    )
    with pytest.raises(ConfigurationError, match=re.escape("set trust_remote_code = true")):
        recipe_for(barred)
    unknown = spec.model_copy(update={"key": "x", "architecture": "FancyOCRModel"})
    with pytest.raises(ConfigurationError, match=r"cannot drive x .*supported architectures: .*HfMoondream"):
        recipe_for(unknown)


@needs_extra
def test_a_model_the_installed_transformers_breaks_is_refused_with_the_way_out(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(IncompatibleVersions) as refused:
        load_plan(make_settings(transformers_model="phi-3.5-vision"))
    message = refused.value.message
    assert (
        f"transformers {TRANSFORMERS_VERSION} installed, phi-3.5-vision needs transformers<=4.48" in message
    )
    assert "ocrq serve-hf --model phi-3.5-vision" in message and not refused.value.retryable
    spec = bundled_registry().get("phi-3.5-vision")
    check_versions(spec, lambda package: "4.48.0" if package == "transformers" else None)  # the pin it wants


def test_models_that_cannot_share_one_transformers_are_named() -> None:
    pairs = incompatible_pairs(bundled_registry().models.values())
    assert ("qwen3-vl-2b", "phi-3.5-vision") in pairs and ("deepseek-ocr", "got-ocr-2.0") in pairs
    assert not any({"dots.ocr", "qwen3-vl-2b"} == set(pair) for pair in pairs)  # <5 and >=4.57 meet
    assert can_share("==4.46.3", "<=4.48") and not can_share(">4.48", "<4.48.0")
    assert not can_share("<=4.48", ">=4.49") and can_share(">4.48", "<4.49")  # 4.48.1 serves both


def test_ocrq_models_shows_recipes_host_verdicts_and_clashes() -> None:
    result = CliRunner().invoke(models_command, ["--wide"], env={"COLUMNS": "600"})  # recipe columns
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    assert "never run, remote code" in lines["deepseek-ocr"] and "tiny random model" in lines["qwen3-vl-2b"]
    assert f"refused: transformers {TRANSFORMERS_VERSION} here, needs <=4.48" in lines["phi-3.5-vision"]
    assert "8bit" in lines["qwen2-vl-7b"]
    assert "qwen3-vl-2b (transformers>=4.57.0) and phi-3.5-vision (transformers<=4.48) need different" in (
        result.output
    )


def remote_snapshot(folder: Path, auto_map: dict[str, Any], files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"auto_map": auto_map, "torch_dtype": "bfloat16"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    for name, source in files.items():
        (folder / name).write_text(source)
    return folder


@needs_extra
def test_a_snapshot_without_its_code_files_is_refused_naming_them(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    auto_map = {
        "AutoConfig": "configuration_dots.DotsOCRConfig",
        "AutoModelForCausalLM": "modeling_dots_ocr.DotsOCRForCausalLM",
    }
    weights_only = remote_snapshot(tmp_path / "DotsOCR", auto_map, {"configuration_dots.py": "X = 1\n"})

    def plan_for(folder: Path) -> object:
        return load_plan(make_settings(transformers_model="dots.ocr", transformers_model_dir=folder))

    with pytest.raises(
        RemoteCodeMissing, match=r"missing code files: modeling_dots_ocr\.py \(fetch the whole"
    ):
        plan_for(weights_only)
    (weights_only / "modeling_dots_ocr.py").write_text(
        "from .modeling_dots_vision import DotsVisionTransformer\n"
    )
    with pytest.raises(RemoteCodeMissing, match=r"missing code files: modeling_dots_vision\.py"):
        plan_for(weights_only)  # a relative import of the model's code is code it needs too
    (weights_only / "modeling_dots_vision.py").write_text("DotsVisionTransformer = object\n")
    assert plan_for(weights_only).recipe.name == "dots.ocr"  # type: ignore[attr-defined]

    dotted = remote_snapshot(
        tmp_path / "dots.ocr", auto_map, dict.fromkeys(("configuration_dots.py", "modeling_dots_ocr.py"), "")
    )
    with pytest.raises(ConfigurationError, match=re.escape("without '.'")):
        plan_for(dotted)
    foreign = remote_snapshot(tmp_path / "Foreign", {"AutoModel": "other/repo--modeling_x.X"}, {})
    with pytest.raises(
        RemoteCodeMissing,
        match=re.escape("code from another repo, not in this snapshot: other/repo--modeling_x.X"),
    ):
        plan_for(foreign)
    plain = remote_snapshot(tmp_path / "Plain", {}, {})
    with pytest.raises(RemoteCodeMissing, match="names no code"):
        plan_for(plain)


class Recorder:
    """Stands in for a remote model's own method (no weights here): records what it was handed."""

    def __init__(self, reply: Any) -> None:
        self.reply, self.calls = reply, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if "image_file" in kwargs:  # DeepSeek-OCR reads the page from a file: it must exist then
            kwargs["seen_size"] = Image.open(kwargs["image_file"]).size
        return self.reply


class WordTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[str]:
        return text.split()


def loaded_with(model: Any, processor: Any = None) -> LoadedModel:
    return LoadedModel(
        model, processor, RECIPES["Qwen2VLForConditionalGeneration"], "cpu", "float32", "eager", 0.0
    )


def test_phi_prompt_is_its_chat_format_one_page_per_call() -> None:
    assert phi3v.phi3v_prompt("Read.") == "<|user|>\n<|image_1|>\nRead.<|end|>\n<|assistant|>\n"
    processor = Recorder({"input_ids": "ids"})
    page = Image.new("RGB", (10, 10))
    assert phi3v.phi3v_inputs(processor, [page], ["Read."]) == {"input_ids": "ids"}
    assert processor.calls == [
        (("<|user|>\n<|image_1|>\nRead.<|end|>\n<|assistant|>\n", [page]), {"return_tensors": "pt"})
    ]
    with pytest.raises(ValueError, match="one page per call"):
        phi3v.phi3v_inputs(processor, [page, page], ["a", "b"])
    assert RECIPES["Phi3VForCausalLM"].max_batch == 1
    assert bundled_registry().get("phi-3.5-vision").processor_kwargs() == {"num_crops": 16}


def test_deepseek_gets_its_image_token_and_the_page_as_a_file() -> None:
    assert deepseek_ocr.deepseek_prompt("Free OCR.") == "<image>\nFree OCR."
    assert deepseek_ocr.deepseek_prompt("<image>\nFree OCR.") == "<image>\nFree OCR."
    infer = Recorder("# Title\n\nbody text here")
    model = type("DeepSeek", (), {"infer": staticmethod(infer)})()
    job = PageJob(Image.new("RGB", (640, 900)), "Free OCR.", 3)
    [answer] = deepseek_ocr.deepseek_answer(loaded_with(model, WordTokenizer()), [job])
    ((args, kwargs),) = infer.calls
    assert args[0].__class__ is WordTokenizer and kwargs["prompt"] == "<image>\nFree OCR."
    assert kwargs["seen_size"] == (640, 900) and kwargs["eval_mode"] and not kwargs["save_results"]
    assert (kwargs["base_size"], kwargs["image_size"], kwargs["crop_mode"]) == (1024, 640, True)
    assert (answer.text, answer.tokens_out, answer.finish_reason) == (
        "# Title\n\nbody text here",
        5,
        "length",
    )
    silent = type("Old", (), {"infer": staticmethod(Recorder(None))})()
    with pytest.raises(EngineFailed, match="eval_mode"):
        deepseek_ocr.deepseek_answer(loaded_with(silent, WordTokenizer()), [job])


def test_moondream_is_queried_with_the_rungs_sampling() -> None:
    query = Recorder({"answer": "INVOICE 42 total"})
    model = type("Moondream", (), {"query": staticmethod(query), "tokenizer": WordTokenizer()})()
    job = PageJob(Image.new("RGB", (50, 50)), "Transcribe the text", 64, 0.3, 0.9)
    [answer] = moondream.moondream_answer(loaded_with(model), [job])
    assert query.calls == [
        (
            (job.image, "Transcribe the text"),
            {"settings": {"max_tokens": 64, "temperature": 0.3, "top_p": 0.9}},
        )
    ]
    assert (answer.text, answer.tokens_out, answer.finish_reason, answer.tokens_in) == (
        "INVOICE 42 total",
        3,
        "stop",
        None,
    )
    assert moondream.answer_text("plain") == "plain"
    with pytest.raises(EngineFailed, match="without text"):
        moondream.answer_text({"caption": 1})


def test_internvl2_tiles_pages_like_its_model_card() -> None:
    assert internvl_chat.tile_grid((448, 448)) == (1, 1)
    assert internvl_chat.tile_grid((1654, 2338)) == (2, 3)  # A4 portrait
    assert internvl_chat.tile_grid((2000, 500)) == (4, 1)
    assert internvl_chat.tile_grid((4000, 100)) == (12, 1)  # never more than 12 tiles
    tiles = internvl_chat.page_tiles(Image.new("RGB", (1654, 2338), "white"))
    assert len(tiles) == 7 and {t.size for t in tiles} == {(448, 448)}  # 2x3 + a thumbnail
    assert len(internvl_chat.page_tiles(Image.new("L", (448, 448)))) == 1  # one tile: no thumbnail
    pixels = internvl_chat.normalised(tiles[:2])
    assert pixels.shape == (2, 3, 448, 448) and pixels.dtype == np.float32
    white = (1 - np.array(internvl_chat.IMAGENET_MEAN)) / np.array(internvl_chat.IMAGENET_STD)
    assert np.allclose(pixels[0, :, 0, 0], white, atol=1e-5)
    assert internvl_chat.internvl_prompt("Read all the text.") == "<image>\nRead all the text."


GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 100]]<|/det|>\n# Invoice 42\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 120, 500, 200], [100, 200, 600, 260]]<|/det|>\nTotal due: 12 EUR\n"
    "<|ref|>image<|/ref|><|det|>[[600, 600, 900, 900]]<|/det|>\n"
    "<|ref|>text<|/ref|><|det|>[[1, 2<|/det|>\nbroken box"
)


def test_deepseek_grounded_markdown_becomes_page_pixel_cells() -> None:
    spec = bundled_registry().get("deepseek-ocr")
    plan = ResizePlan((2000, 1000), (1000, 500))  # the model saw the page at half size
    layout = choose_prompt(spec, PageTask(mode=PromptMode.LAYOUT_ALL))
    assert layout.template == "<|grounding|>Convert the document to markdown."
    reading = read_reply(spec, layout, GROUNDED, "stop", plan)
    assert [(c.category, c.text) for c in reading.cells] == [
        ("Title", "# Invoice 42"),
        ("Text", "Total due: 12 EUR"),
        ("Picture", None),
    ]
    title = reading.cells[0].bbox  # 0..999 of the 1000x500 input, then x2 back to the page
    assert title == (
        round(100 / 999 * 1000) * 2,
        round(50 / 999 * 500) * 2,
        round(900 / 999 * 1000) * 2,
        round(100 / 999 * 500) * 2,
    )
    assert reading.cells[1].bbox[3] == round(260 / 999 * 500) * 2  # two boxes: their union
    assert (
        "# Invoice 42" in reading.markdown
        and "<|" not in reading.markdown
        and "broken box" not in reading.text
    )
    assert reading.repaired and not reading.clean  # the garbled tag is noted, so the ladder may retry
    free = read_reply(
        spec, choose_prompt(spec, PageTask(mode=PromptMode.TEXT_ONLY)), "Just text.", "stop", plan
    )
    assert free.text == "Just text." and free.cells == [] and free.clean


@needs_extra
def test_doctor_says_whether_this_host_could_load_the_model(make_settings: Callable[..., Settings]) -> None:
    from ocrq.worker.doctor import check_transformers

    refused = check_transformers(make_settings(engines=["transformers"], transformers_model="phi-3.5-vision"))
    assert refused is not None and not refused.ok and not refused.required  # the chain skips it, no outage
    assert (
        refused.detail.startswith("phi-3.5-vision: transformers")
        and "needs transformers<=4.48" in refused.detail
    )
    assert check_transformers(make_settings(engines=["tesseract"])) is None


def test_quantisation_is_decided_by_what_the_host_has() -> None:
    from ocrq.errors import QuantizationUnavailable
    from ocrq.worker.engines.hf.quantization import Quantization, decide, requested_bits

    assert (
        requested_bits("", "8bit") == 8
        and requested_bits("4bit", "8bit") == 4
        and requested_bits("none", "8bit") == 0
    )
    assert decide(8, cuda=True, bitsandbytes=True, fallback="refuse", what="m") == Quantization(8)
    assert decide(0, cuda=False, bitsandbytes=False, fallback="refuse", what="m") == Quantization(0)
    cpu = decide(4, cuda=False, bitsandbytes=True, fallback="full", what="qwen2-vl-7b")
    assert cpu.bits == 0 and cpu.note == (
        "qwen2-vl-7b: 4-bit loading needs bitsandbytes on CUDA, and this host has no CUDA device; "
        "loading in full precision instead"
    )
    without = decide(8, cuda=True, bitsandbytes=False, fallback="full", what="m")
    assert without.bits == 0 and "no bitsandbytes (pip install 'ocrq[quantization]')" in (without.note or "")
    with pytest.raises(QuantizationUnavailable, match="refusing"):
        decide(8, cuda=False, bitsandbytes=False, fallback="refuse", what="m")
    with pytest.raises(ConfigurationError, match="'3bit' is not one of"):
        requested_bits("3bit", "none")


def test_the_memory_guard_sees_the_quantised_size(tmp_path: Path) -> None:
    """A 7B model (14 GiB of bf16 weights) on a 12 GiB GPU, NVML read through the guard's injectable
    reader: refused in bf16, admitted in 8 bits (~9.4 GiB with headroom) and 4 bits (~5.2 GiB)."""
    from ocrq.worker.engines.hf.gpu_memory import GiB, GpuMemoryShort, MemoryGuard
    from ocrq.worker.engines.hf.loading import LoadPlan, need_bytes

    snapshot = tmp_path / "Qwen2-VL-7B"
    snapshot.mkdir()
    (snapshot / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    with (snapshot / "model.safetensors").open("wb") as weights:
        weights.truncate(14 * GiB)  # sparse: the size is what counts
    spec = bundled_registry().get("qwen2-vl-7b")
    plan = LoadPlan(spec, snapshot, recipe_for(spec), "cuda:0", 8)
    need = {bits: need_bytes(plan, "bfloat16", bits) for bits in (0, 8, 4)}
    assert [round(need[b] / GiB, 1) for b in (0, 8, 4)] == [17.8, 9.4, 5.2]
    asked: list[int] = []
    guard = MemoryGuard(read_free=lambda index: asked.append(index) or 12 * GiB)
    with pytest.raises(
        GpuMemoryShort, match=r"qwen2-vl-7b needs about 17\.8 GiB on GPU 0 but only 12\.0 GiB"
    ):
        guard.ensure_room(need[0], 0, spec.key)
    guard.ensure_room(need[8], 0, spec.key)
    guard.ensure_room(need[4], 0, spec.key)
    assert asked == [0, 0, 0]
