"""One vocabulary for numeric precision, used by training and by evaluation.

    'fp32'  float32 everywhere (the default of every reported number)
    'bf16'  the networks' matrix products under bfloat16 autocast; weights, densities and losses float32
    'fp16'  float16 autocast (CUDA only), for training
    'auto'  bf16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32
"""

from __future__ import annotations

import warnings

import torch

from .errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """`name` if it is one of `allowed`, else an InputError naming the choices."""
    if name not in allowed:
        raise InputError(f"Unknown precision {name!r}; choose one of {', '.join(allowed)}.")
    return name


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' as the concrete precision for `device`; 'fp16' off CUDA is an error."""
    check_precision(name)
    if name != "auto":
        if name == "fp16" and device.type != "cuda":
            raise InputError("precision 'fp16' needs a CUDA device; use 'bf16' on CPUs.")
        warn_if_slow(name, device)
        return name
    if fast_bf16(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 products natively (CUDA with bf16; CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return getattr(torch.backends.mkldnn, "is_available", lambda: False)() and \
        getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()


def warn_if_slow(precision: str, device: torch.device) -> None:
    """A warning when bf16 was asked for on a device that emulates it (about 8x slower than fp32
    on an AVX2 CPU for the hierarchical VAE's training step)."""
    if precision == "bf16" and device.type == "cpu" and not fast_bf16(device):
        warnings.warn("This CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so precision 'bf16' "
                      "runs several times slower than 'fp32' here; use 'fp32' or 'auto'.", stacklevel=3)


def autocast(device: torch.device, precision: str):
    """The autocast context of a concrete precision ('fp32': autocast disabled)."""
    dtype = DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not torch.float32)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """t in float32 if it is a half-precision (bf16/fp16) tensor: densities are summed over many
    values, and half-precision sums lose whole nats."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
