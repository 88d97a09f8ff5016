"""Corruptions of images in [0, 1], for denoising: Gaussian noise, salt-and-pepper, masking.

A corruption is named by a short spec such as "gaussian:0.5" (noise sigma), "salt-pepper:0.2"
(fraction of pixels set to 0 or 1) or "mask:0.3" (fraction of pixels set to 0).
"""

from __future__ import annotations

import torch

from .distributions import InputError

KINDS = ("gaussian", "salt-pepper", "mask")


def parse_corruption(spec: str) -> tuple[str, float]:
    """("gaussian", 0.5) from "gaussian:0.5"."""
    kind, _, level = spec.partition(":")
    try:
        value = float(level)
    except ValueError:
        value = -1.0
    if kind not in KINDS or value < 0 or (kind != "gaussian" and value > 1):
        raise InputError(f"Unknown corruption {spec!r}; write KIND:LEVEL with KIND one of {', '.join(KINDS)} "
                         "(e.g. gaussian:0.5, salt-pepper:0.2, mask:0.3).")
    return kind, value


def corrupt(x: torch.Tensor, spec: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of x (values stay in [0, 1])."""
    kind, level = parse_corruption(spec)
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + level * noise).clamp(0, 1)
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if kind == "mask":
        return x.masked_fill(hit, 0.0)
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)
