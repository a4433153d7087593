"""8-bit and 4-bit loading through bitsandbytes: asked for per model or per host, decided per load.

A model's registry entry may ask for it (a 7B on a 12 GB card), ``OCRQ_HF_QUANTIZATION`` overrides
it for one host. bitsandbytes quantises on CUDA only, so where there is no CUDA (or no
bitsandbytes) the wish cannot be honoured: ``OCRQ_HF_QUANTIZATION_FALLBACK`` says whether to load
in full precision after saying so in one line, or to refuse so the chain moves on. The decision is
a pure function of what the host has; the memory the guard checks follows from it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

from ocrq.errors import ConfigurationError, QuantizationUnavailable

Fallback = Literal["full", "refuse"]
BITS = {"none": 0, "8bit": 8, "4bit": 4}
LOADED_BYTES_PER_PARAM = {8: 1.0, 4: 0.5}
"""bitsandbytes' Linear8bitLt holds one byte per weight, NF4 half a byte (plus small scales)."""


@dataclass(frozen=True, slots=True)
class Quantization:
    bits: int
    """0: full precision; 8 or 4: bitsandbytes."""
    note: str | None = None
    """The one line said when the wish could not be honoured (logged, and shown by serve-hf)."""


def requested_bits(host_setting: str, registry_setting: str) -> int:
    """The host's ``OCRQ_HF_QUANTIZATION`` when set, else the model's registry entry."""
    name = host_setting or registry_setting
    if name not in BITS:
        raise ConfigurationError(f"quantization {name!r} is not one of {', '.join(BITS)}")
    return BITS[name]


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def decide(bits: int, cuda: bool, bitsandbytes: bool, fallback: Fallback, what: str) -> Quantization:
    """Quantise when asked and possible; otherwise one line and full precision, or a refusal."""
    if bits == 0:
        return Quantization(0)
    if cuda and bitsandbytes:
        return Quantization(bits)
    lacking = "no CUDA device" if not cuda else "no bitsandbytes (pip install 'ocrq[quantization]')"
    line = f"{what}: {bits}-bit loading needs bitsandbytes on CUDA, and this host has {lacking}"
    if fallback == "refuse":
        raise QuantizationUnavailable(f"{line}; refusing (OCRQ_HF_QUANTIZATION_FALLBACK=refuse)")
    return Quantization(0, f"{line}; loading in full precision instead")


def loaded_bytes_per_param(bits: int, full_precision_bytes: int) -> float:
    return LOADED_BYTES_PER_PARAM.get(bits, float(full_precision_bytes))


def bitsandbytes_config(bits: int, compute_dtype: str) -> Any:
    """The ``quantization_config`` for ``from_pretrained`` (imports transformers: only at load)."""
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=getattr(torch, compute_dtype)
    )
