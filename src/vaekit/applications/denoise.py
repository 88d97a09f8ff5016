"""Denoising with a trained VAE, and the PSNR that measures it.

The chapter's recipe: encode the corrupted image, decode the posterior mean (no sampling), so the
result is the closest image the model knows how to draw. A plain VAE trained on clean images does
this already; a denoising VAE (`TrainConfig(corrupt="gaussian:0.5")`: corrupted inputs, clean
targets) learns to do it for that corruption.

    noisy = corrupt(clean, "gaussian:0.5")
    cleaned = denoise(vae, noisy)
    psnr(clean, noisy), psnr(clean, cleaned)   # dB; higher is better
"""

from __future__ import annotations

import math

import torch

from ..distributions import InputError

__all__ = ["denoise", "psnr"]


def denoise(model, x, y=None, batch_size: int = 1000) -> torch.Tensor:
    """decode(posterior mean of x) for every example, in batches, on the CPU, in x's layout.

    `x` is the corrupted data (a tensor or array, flat rows or images); `y` the labels a
    conditional model needs. The model's own `reconstruct` is used, so a hierarchical VAE goes
    through all its latent groups. Gradients are off and the model's train/eval mode is restored.
    """
    if not hasattr(model, "reconstruct"):
        raise InputError(f"{type(model).__name__} cannot reconstruct; give a vaekit model.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    x = torch.as_tensor(x) if not torch.is_tensor(x) else x.detach()
    xb = model.as_batch(x.to(next(model.parameters()).dtype))  # (N, *data_shape)
    if not torch.isfinite(xb).all():
        raise InputError("The input contains NaN or infinite values; clean or impute them first.")
    layout = x.shape[1:] if x.dim() > 1 and len(x) == len(xb) else xb.shape[1:]
    cond = model.conditional
    if cond and y is None:
        raise InputError("This is a conditional model: pass the labels y of the examples to denoise.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, len(xb), batch_size):
                xc = xb[start:start + batch_size].to(device)
                yc = torch.as_tensor(y)[start:start + batch_size].to(device) if cond else None
                parts.append(model.reconstruct(xc, yc).cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts).reshape(len(xb), *layout)


def psnr(clean, estimate, reduction: str = "mean", data_range: float = 1.0, max_db: float = 100.0):
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE), for images in [0, data_range].

    The MSE is taken per image (over all its pixels). reduction="mean" (default) averages the
    per-image PSNRs, the convention of denoising papers; "none" returns them, shape (N,);
    "global" is the PSNR of the MSE over the whole set (never above the "mean" value, by Jensen).
    A perfect image would be infinitely good; its PSNR is capped at `max_db`.
    Returns a float (a tensor for "none"). The estimate is not clipped: clip it first if it may
    leave the data range.
    """
    if reduction not in ("mean", "none", "global"):
        raise InputError(f"reduction must be 'mean', 'none' or 'global', not {reduction!r}.")
    a = torch.as_tensor(clean).detach().double().cpu()
    b = torch.as_tensor(estimate).detach().double().cpu()
    if a.numel() != b.numel() or a.numel() == 0:
        raise InputError(f"clean and estimate must hold the same number of values, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}.")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise InputError("The images contain NaN or infinite values; PSNR is undefined.")
    n = a.shape[0] if a.dim() > 1 else 1
    if b.dim() > 1 and b.shape[0] != n:
        raise InputError(f"clean has {n} images but estimate has {b.shape[0]}; pass matching batches.")
    err = (a.reshape(n, -1) - b.reshape(n, -1)).pow(2).mean(1)  # (N,) per-image MSE
    floor = data_range ** 2 * 10 ** (-max_db / 10)
    if reduction == "global":
        return 10 * math.log10(data_range ** 2 / max(err.mean().item(), floor))
    db = 10 * torch.log10(data_range ** 2 / err.clamp_min(floor))  # (N,)
    return db.float() if reduction == "none" else db.mean().item()
