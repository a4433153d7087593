"""Build a tiny, randomly initialised Qwen2-VL (about 0.4 M parameters) that real vLLM can serve on a CPU.

Run with the vLLM venv's Python (the project venv has no torch): ``.venv-vllm/bin/python
tests/tiny_model.py OUT_DIR``. Nothing comes from a hub: the BPE tokenizer is trained here on the
Python standard library's sources, with Qwen2's own normaliser, pre-tokeniser and decoder, and the
weights are random (seeded), so vLLM's output is deterministic gibberish. Reused by the Transformers
engine tests.

The text head_dim is 32 on purpose: vLLM's CPU attention supports only head sizes of 32 and up.
The image processor allows up to 1280 visual tokens (the registry's Qwen2-VL budget), so requests
sized for the real model fit, and vLLM's encoder profiling covers them.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

VOCAB_SIZE = 1000
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOKEN_ID = {token: VOCAB_SIZE + index for index, token in enumerate(SPECIAL_TOKENS)}
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 1280
TRAINING_FILES = 200
SEED = 0

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def training_texts() -> list[str]:
    """The first sources of the standard library, sorted: the same corpus (and tokenizer) every run."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:TRAINING_FILES]
    return [path.read_text(encoding="utf-8", errors="replace") for path in files]


def train_tokenizer() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE with exactly Qwen2's normaliser and pre-tokeniser, trained from scratch."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    template = Qwen2Tokenizer(vocab={"<|endoftext|>": 0}, merges=[])._tokenizer
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer, tokenizer.pre_tokenizer = template.normalizer, template.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(training_texts(), trainer)
    state = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return state["vocab"], merges


def build_processor(out: Path) -> None:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = train_tokenizer()
    vocab |= TOKEN_ID  # the specials get Qwen's order right after the learned vocabulary
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    wrong = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in SPECIAL_TOKENS
        if tokenizer.convert_tokens_to_ids(t) != TOKEN_ID[t]
    }
    if wrong:
        raise SystemExit(f"special token ids differ from the plan: {wrong}")
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    images = Qwen2VLImageProcessor(size=size, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    videos = Qwen2VLVideoProcessor()
    processor = Qwen2VLProcessor(images, tokenizer, videos, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_model(out: Path) -> int:
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(SEED)
    text = {
        "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]}, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "dtype": "float32", "bos_token_id": TOKEN_ID["<|endoftext|>"],
        "eos_token_id": TOKEN_ID["<|im_end|>"], "pad_token_id": TOKEN_ID["<|endoftext|>"],
    }  # fmt: skip
    vision = {
        "depth": 2, "embed_dim": 64, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3,
    }  # fmt: skip
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=TOKEN_ID["<|image_pad|>"],
        video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"],
        vision_end_token_id=TOKEN_ID["<|vision_end|>"],
        eos_token_id=TOKEN_ID["<|im_end|>"],
        pad_token_id=TOKEN_ID["<|endoftext|>"],
        tie_word_embeddings=False,
        dtype="float32",
    )
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=TOKEN_ID["<|im_end|>"], pad_token_id=TOKEN_ID["<|endoftext|>"], do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    return sum(parameter.numel() for parameter in model.parameters())


def build(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build_processor(out)
    parameters = build_model(out)
    print(f"tiny Qwen2-VL with {parameters:,} parameters in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: tiny_model.py OUT_DIR")
    build(Path(sys.argv[1]))
