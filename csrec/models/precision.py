"""Which arithmetic the backbones, teachers and losses run in: float32 or bfloat16 mixed precision.

Mixed precision here means ``torch.autocast`` with bfloat16: matrix products (the output layer
above all, which dominates the small backbones) take bfloat16 inputs with float32 accumulation,
while the weights, the optimiser state, every softmax / log-softmax and every loss reduction stay
float32.  It pays only where the hardware multiplies bfloat16 natively (CPUs with AVX512-BF16 or
AMX, GPUs from Ampere on); elsewhere bfloat16 is emulated and slower, so ``"auto"`` resolves to
it only there.  That choice is a fixed property of the machine, so a run stays repeatable on it.
"""

from __future__ import annotations

import contextlib

import torch

# Accepted spellings; TrainConfig uses the short ones, MethodConfig.store_precision the long ones.
CANONICAL = {"bf16": "bf16", "bfloat16": "bf16", "fp32": "fp32", "float32": "fp32"}
PRECISIONS = ("auto", *CANONICAL)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (faster than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # private but stable helpers; without them, assume no native support
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: ``precision`` (any spelling of PRECISIONS) on ``device``."""
    if precision == "auto":
        return "bf16" if native_bfloat16(device) else "fp32"
    try:
        return CANONICAL[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}") from None


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32


def autocast(precision: str, device: torch.device):
    """The context a training step runs in: bfloat16 autocast, or nothing for float32."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device):
    """Leave any enclosing autocast (for code that chooses its own dtypes explicitly)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
