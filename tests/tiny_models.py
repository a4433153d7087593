"""Tiny random-weight models of the architectures transformers itself implements, built in the test.

``tiny_model.py`` builds the Qwen2-VL that real vLLM serves (with the vLLM venv's transformers);
these are built with the project venv's own transformers, for the in-process engine's recipes:
Qwen2.5-VL, Qwen3-VL, GOT-OCR2 and the converted InternVL (``-hf``). Each is a few hundred
thousand parameters with the real processor classes, so loading, prompting (chat templates, image
tokens, pixel limits), batching and decoding run exactly as for the real checkpoints; only the
weights are random. The BPE tokenizer is trained once on the standard library's sources (shared by
all four) and gets each model's special tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.tiny_model import CHAT_TEMPLATE, TRAINING_FILES, training_texts

VOCAB = 1000
SEED = 0
QWEN_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
GOT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>")
INTERNVL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
)
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = {
    "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096,
    "rope_theta": 10000.0, "tie_word_embeddings": False,
}  # fmt: skip
QWEN_PIXELS = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 1280}


def trained_bpe() -> Any:
    """Byte-level BPE on the stdlib sources (deterministic: sorted files, fixed vocabulary size)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(training_texts()[:TRAINING_FILES], trainer)
    return tokenizer


def tokenizer_with(bpe: Any, specials: tuple[str, ...], **extra: Any) -> Any:
    """A fast tokenizer over a copy of ``bpe`` whose specials follow the vocabulary (ids 1000...)."""
    from tokenizers import Tokenizer
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(bpe.to_str()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        **extra,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    return tokenizer


def ids(tokenizer: Any, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(token) for token in tokens]


def _save(out: Path, processor: Any, model: Any, eos: int, pad: int) -> Path:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False)
    model.eval().save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def qwen_tokens(bpe: Any) -> tuple[Any, dict[str, int]]:
    """The Qwen tokenizer and the config's token ids (image, video, vision start/end, eos, pad)."""
    tokenizer = tokenizer_with(bpe, QWEN_SPECIALS)
    names = {
        "eos_token_id": "<|im_end|>", "pad_token_id": "<|endoftext|>", "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>", "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }  # fmt: skip
    return tokenizer, {key: tokenizer.convert_tokens_to_ids(token) for key, token in names.items()}


def build_qwen2_5_vl(bpe: Any, out: Path) -> Path:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )  # fmt: skip

    tokenizer, tokens = qwen_tokens(bpe)
    vision = {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 64,
        "window_size": 56, "fullatt_block_indexes": [1],
    }  # fmt: skip
    text = TEXT | {"rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]}}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens, **text)
    processor = Qwen2_5_VLProcessor(
        Qwen2VLImageProcessor(**QWEN_PIXELS), tokenizer, Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE
    )
    return _save(
        out,
        processor,
        Qwen2_5_VLForConditionalGeneration(config),
        tokens["eos_token_id"],
        tokens["pad_token_id"],
    )


def build_qwen3_vl(bpe: Any, out: Path) -> Path:
    from transformers import (
        Qwen2VLImageProcessorFast,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )  # fmt: skip

    tokenizer, tokens = qwen_tokens(bpe)
    vision = {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 64,
        "patch_size": 16, "num_position_embeddings": 576, "deepstack_visual_indexes": [1],
    }  # fmt: skip
    text = TEXT | {
        "head_dim": 32,
        "rope_scaling": {"rope_type": "default", "mrope_section": [4, 6, 6], "mrope_interleaved": True},
    }
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
    pixels = {"min_pixels": 32 * 32 * 4, "max_pixels": 32 * 32 * 1280}
    images = Qwen2VLImageProcessorFast(patch_size=16, merge_size=2, **pixels)
    videos = Qwen3VLVideoProcessor(patch_size=16, merge_size=2)
    processor = Qwen3VLProcessor(images, tokenizer, videos, chat_template=CHAT_TEMPLATE)
    return _save(
        out,
        processor,
        Qwen3VLForConditionalGeneration(config),
        tokens["eos_token_id"],
        tokens["pad_token_id"],
    )


def build_got_ocr2(bpe: Any, out: Path) -> Path:
    from transformers import (
        GotOcr2Config,
        GotOcr2ForConditionalGeneration,
        GotOcr2ImageProcessor,
        GotOcr2Processor,
    )

    tokenizer = tokenizer_with(bpe, GOT_SPECIALS)
    eos, pad, image = ids(tokenizer, "<|im_end|>", "<|endoftext|>", "<imgpad>")
    vision = {
        "hidden_size": 32, "output_channels": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 1024, "patch_size": 16, "window_size": 8, "global_attn_indexes": [1], "mlp_dim": 64,
    }  # fmt: skip
    config = GotOcr2Config(
        vision_config=vision, text_config=TEXT | {"model_type": "qwen2"}, image_token_index=image
    )
    processor = GotOcr2Processor(GotOcr2ImageProcessor(size={"height": 1024, "width": 1024}), tokenizer)
    return _save(out, processor, GotOcr2ForConditionalGeneration(config), eos, pad)


def build_internvl(bpe: Any, out: Path) -> Path:
    from transformers import (
        GotOcr2ImageProcessorFast,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )  # fmt: skip

    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = tokenizer_with(bpe, INTERNVL_SPECIALS, extra_special_tokens=named)
    eos, pad, image = ids(tokenizer, "<|im_end|>", "<|endoftext|>", "<IMG_CONTEXT>")
    vision = {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "image_size": [56, 56], "patch_size": [14, 14],
    }  # fmt: skip
    config = InternVLConfig(
        vision_config=vision,
        text_config=TEXT | {"model_type": "qwen2"},
        image_token_id=image,
        image_seq_length=4,
    )
    images = GotOcr2ImageProcessorFast(size={"height": 56, "width": 56}, crop_to_patches=True, max_patches=12)
    processor = InternVLProcessor(
        images, tokenizer, InternVLVideoProcessor(), image_seq_length=4, chat_template=INTERNVL_TEMPLATE
    )
    return _save(out, processor, InternVLForConditionalGeneration(config), eos, pad)


BUILDERS: dict[str, Callable[[Any, Path], Path]] = {
    "qwen2.5-vl-3b": build_qwen2_5_vl,
    "qwen3-vl-2b": build_qwen3_vl,
    "got-ocr-2.0": build_got_ocr2,
    "internvl3-1b-hf": build_internvl,
}
"""Registry key → builder of a tiny model with that entry's architecture."""


def build(key: str, bpe: Any, out: Path) -> Path:
    import torch

    torch.manual_seed(SEED)
    out.mkdir(parents=True, exist_ok=True)
    return BUILDERS[key](bpe, out)
