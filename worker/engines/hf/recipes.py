"""How each registry architecture is loaded, prompted, run and read through Hugging Face Transformers.

The registry says *which* class loads a model (``[transformers] auto_class``) and what its pages may
be (pixel rules, prompts, sampling); a recipe says what the class alone does not: what loads beside
the weights (processor, tokenizer or nothing), how a page and its prompt become model inputs, what
``generate`` needs beyond the sampling, or which of the model's own methods answers instead, how
many pages one call may take, and which config fixes a model needs before loading.

Architectures whose code ships in the snapshot (``remote_code``) load only when the registry says
``trust_remote_code = true`` for that model, and only when the snapshot holds the code files.

Everything here receives already-imported objects: this module imports neither torch nor
transformers, so the API and CPU workers can import it freely.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from ocrq.errors import ConfigurationError
from ocrq.worker.engines.hf import deepseek_ocr, internvl_chat, moondream, phi3v
from ocrq.worker.models.registry import ModelSpec

if TYPE_CHECKING:
    from ocrq.worker.engines.hf.answers import PageJob, RawAnswer
    from ocrq.worker.engines.hf.loading import LoadedModel

GOT_STOP_STRING = "<|im_end|>"
GOT_FORMAT_PROMPT = "OCR with format"

InputsBuilder = Callable[[Any, list[Image.Image], list[str]], Any]
Answerer = Callable[["LoadedModel", list["PageJob"]], list["RawAnswer"]]


def _no_inputs(_processor: Any, _images: list[Image.Image], _prompts: list[str]) -> Any:
    raise AssertionError("this recipe answers through the model's own method, not generate()")


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    build_inputs: InputsBuilder = _no_inputs
    answer: Answerer | None = None
    """The model's own method answers (``chat``/``infer``/``query``) instead of ``generate``."""
    generate_kwargs: Callable[[Any], dict[str, Any]] = lambda _processor: {}
    patch_config: Callable[[Any, str], None] = lambda _config, _attn: None
    before_processor: Callable[[], None] = lambda: None
    """Runs after the (remote) config code is imported and before the processor loads."""
    companion: Literal["processor", "tokenizer", "none"] = "processor"
    """What loads beside the weights: ``AutoProcessor``, ``AutoTokenizer``, or nothing."""
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    pixel_limits: bool = False
    """The processor takes the registry's min/max_pixels, so it never resizes our resized page again."""
    max_batch: int = 64
    group_by_prompt: bool = False
    """Pages with different prompts cannot share one call (the prompt is a processor flag)."""
    remote_code: bool = False
    """The architecture lives in the snapshot's ``.py`` files (``trust_remote_code``)."""
    dot_free_dir: bool = False
    """The remote code is imported as a module named after the directory: no '.' allowed in it."""
    attention: str = "sdpa"
    """Attention without flash-attn; remote code that knows nothing else gets ``eager``."""
    needs_cuda: bool = False


def _messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def chat_prompts(processor: Any, prompts: list[str]) -> list[str]:
    """The model's own chat template places the image tokens (Qwen-VL, InternVL-hf, dots.ocr)."""
    return [
        processor.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)
        for prompt in prompts
    ]


def chat_inputs(processor: Any, images: list[Image.Image], prompts: list[str]) -> Any:
    """One processor call tokenizes the whole batch, padded on the left."""
    return processor(text=chat_prompts(processor, prompts), images=images, padding=True, return_tensors="pt")


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


CHAT = Recipe("chat-template", chat_inputs, pixel_limits=True)
DOTS = Recipe(
    "dots.ocr",
    chat_inputs,
    patch_config=dots_patch_config,
    before_processor=dots_processor_patch,
    processor_kwargs={"use_fast": True},
    pixel_limits=True,
    remote_code=True,
    dot_free_dir=True,
)
GOT = Recipe(
    "got-ocr2", got_inputs, generate_kwargs=got_generate_kwargs, group_by_prompt=True, attention="eager"
)  # transformers has no SDPA path for GOT-OCR2 (found by the tiny-model test)
PHI3V = Recipe(
    "phi-3.5-vision",
    phi3v.phi3v_inputs,
    generate_kwargs=phi3v.phi3v_generate_kwargs,
    max_batch=1,
    remote_code=True,
    attention="eager",
)
DEEPSEEK = Recipe(
    "deepseek-ocr",
    answer=deepseek_ocr.deepseek_answer,
    companion="tokenizer",
    max_batch=1,
    remote_code=True,
    attention="eager",
    needs_cuda=True,
)
MOONDREAM = Recipe(
    "moondream2", answer=moondream.moondream_answer, companion="none", max_batch=1, remote_code=True
)
INTERNVL_CHAT = Recipe(
    "internvl2-chat",
    answer=internvl_chat.internvl_answer,
    companion="tokenizer",
    processor_kwargs={"use_fast": False},
    remote_code=True,
    attention="eager",
)

RECIPES: dict[str, Recipe] = {
    "Qwen2VLForConditionalGeneration": CHAT,
    "Qwen2_5_VLForConditionalGeneration": CHAT,
    "Qwen3VLForConditionalGeneration": CHAT,
    "InternVLForConditionalGeneration": CHAT,
    "GotOcr2ForConditionalGeneration": GOT,
    "DotsOCRForCausalLM": DOTS,
    "Phi3VForCausalLM": PHI3V,
    "DeepseekOCRForCausalLM": DEEPSEEK,
    "HfMoondream": MOONDREAM,
    "InternVLChatModel": INTERNVL_CHAT,
}


def recipe_for(spec: ModelSpec) -> Recipe:
    """The recipe for a registry model, or a configuration error saying what is missing."""
    if spec.transformers is None:
        raise ConfigurationError(f"model {spec.key} has no Transformers loading (backends: {spec.backends})")
    recipe = RECIPES.get(spec.architecture)
    if recipe is None:
        supported = ", ".join(sorted(RECIPES))
        raise ConfigurationError(
            f"the Transformers engine cannot drive {spec.key} ({spec.architecture}) yet; "
            f"supported architectures: {supported}"
        )
    if recipe.remote_code and not spec.transformers.trust_remote_code:
        raise ConfigurationError(
            f"{spec.key} ({spec.architecture}) runs Python code from its snapshot: set "
            "trust_remote_code = true in its [transformers] registry table to allow that"
        )
    return recipe
