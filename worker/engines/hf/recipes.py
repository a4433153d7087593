"""How each registry architecture is loaded and prompted through Hugging Face Transformers.

The registry says *which* class loads a model (``[transformers] auto_class``); a recipe says what the
class alone does not: how a page and its prompt become model inputs, what ``generate`` needs beyond
``max_new_tokens``, and which config fixes a model needs before loading. Architectures whose models
only answer through their own methods (``model.chat``, ``model.infer``, ``model.query``) have no
recipe yet: choosing one is a configuration error, found when the chain is built.

Everything here receives the already-imported processor/config objects: this module imports
neither torch nor transformers, so the API and CPU workers can import it freely.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from PIL import Image

from ocrq.errors import ConfigurationError, EngineUnavailable
from ocrq.worker.models.registry import ModelSpec

GOT_STOP_STRING = "<|im_end|>"
GOT_FORMAT_PROMPT = "OCR with format"
UNCHECKED_REQUIREMENTS = frozenset({"vllm"})
"""Requirements that concern the vLLM server, not this process."""


class IncompatibleVersions(EngineUnavailable):
    """An installed library version is one the model is known to break on (see the registry)."""


InputsBuilder = Callable[[Any, list[Image.Image], list[str]], Any]


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    build_inputs: InputsBuilder
    generate_kwargs: Callable[[Any], dict[str, Any]] = lambda _processor: {}
    patch_config: Callable[[Any, str], None] = lambda _config, _attn: None
    before_processor: Callable[[], None] = lambda: None
    """Runs after the (remote) config code is imported and before ``AutoProcessor`` loads."""
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    group_by_prompt: bool = False
    """Pages with different prompts cannot share one ``generate`` call (the prompt is a processor flag)."""
    dot_free_dir: bool = False
    """The remote code is imported as a module named after the directory: no '.' allowed in it."""


def _messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def chat_inputs(processor: Any, images: list[Image.Image], prompts: list[str]) -> Any:
    """Qwen-style: the chat template places the image tokens; one call tokenizes the whole batch."""
    texts = [
        processor.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)
        for prompt in prompts
    ]
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


def got_inputs(processor: Any, images: list[Image.Image], prompts: list[str]) -> Any:
    """GOT-OCR2 builds its own prompt: plain OCR, or formatted when the registry prompt asks for it."""
    formatted = prompts[0].startswith(GOT_FORMAT_PROMPT)
    return processor(images, return_tensors="pt", format=formatted)


def got_generate_kwargs(processor: Any) -> dict[str, Any]:
    """GOT does not end on its EOS token alone: generation stops on the chat end marker string."""
    return {"stop_strings": GOT_STOP_STRING, "tokenizer": processor.tokenizer}


def dots_patch_config(config: Any, attention: str) -> None:
    """dots.ocr's vision encoder reads its own ``attn_implementation`` (default flash_attention_2),
    ignoring the loader's: without flash-attn it must be told ``sdpa`` in the config too."""
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        vision.attn_implementation = attention


def dots_processor_patch() -> None:
    """transformers >= 4.55 expects a video processor that ``DotsVLProcessor`` does not take; the
    widely used fix declares only the image processor and tokenizer (applied in memory, not on disk)."""
    for name, module in list(sys.modules.items()):
        processor = getattr(module, "DotsVLProcessor", None) if name.endswith("configuration_dots") else None
        if processor is not None and "video_processor" in getattr(processor, "attributes", []):
            processor.attributes = ["image_processor", "tokenizer"]


CHAT = Recipe("qwen-chat", chat_inputs)
DOTS = Recipe(
    "dots.ocr",
    chat_inputs,
    patch_config=dots_patch_config,
    before_processor=dots_processor_patch,
    processor_kwargs={"use_fast": True},
    dot_free_dir=True,
)
GOT = Recipe("got-ocr2", got_inputs, got_generate_kwargs, group_by_prompt=True)

RECIPES: dict[str, Recipe] = {
    "Qwen2VLForConditionalGeneration": CHAT,
    "Qwen2_5_VLForConditionalGeneration": CHAT,
    "Qwen3VLForConditionalGeneration": CHAT,
    "DotsOCRForCausalLM": DOTS,
    "GotOcr2ForConditionalGeneration": GOT,
}


def recipe_for(spec: ModelSpec) -> Recipe:
    """The recipe for a registry model, or a configuration error naming the ones that exist."""
    if spec.transformers is None:
        raise ConfigurationError(f"model {spec.key} has no Transformers loading (backends: {spec.backends})")
    recipe = RECIPES.get(spec.architecture)
    if recipe is None:
        supported = ", ".join(sorted(RECIPES))
        raise ConfigurationError(
            f"the Transformers engine cannot drive {spec.key} ({spec.architecture}) yet; "
            f"supported architectures: {supported}"
        )
    return recipe


def version_conflicts(spec: ModelSpec, installed: Callable[[str], str | None] | None = None) -> list[str]:
    """Registry requirements the installed libraries break, as readable lines (empty when fine)."""
    lookup = installed or installed_version
    conflicts = []
    for package, specifier in spec.requires.items():
        version = None if package in UNCHECKED_REQUIREMENTS else lookup(package)
        if version is not None and not _satisfies(version, specifier):
            conflicts.append(f"{package} {version} installed, {spec.key} needs {package}{specifier}")
    return conflicts


def check_versions(spec: ModelSpec) -> None:
    """Refuse a model its libraries are known to break, quoting the registry's reason."""
    conflicts = version_conflicts(spec)
    if conflicts:
        reasons = "; ".join(spec.constraints)
        raise IncompatibleVersions(f"{'; '.join(conflicts)} ({reasons})")


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return SpecifierSet(specifier).contains(Version(version), prereleases=True)
