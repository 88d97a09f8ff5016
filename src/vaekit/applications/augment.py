"""Data augmentation with a trained VAE: new labelled examples to train a classifier on.

Two sources of new examples:

* Posterior samples around real examples (any Gaussian-posterior model; the chapter's loop,
  batched). Each example is encoded to q(z|x) = N(mu, sigma^2), `n_per_example` codes
  z = mu + temperature * sigma * eps are drawn and decoded, and every new example keeps the label
  of the example it came from. A temperature below 1 stays closer to the source (safer labels),
  above 1 gives more variety.
* Class-conditional generation from a CVAE: `n_per_class` codes z ~ N(0, temperature^2 I) per
  class, decoded with that class's label.

What is decoded: by default the mean of p(x|z) (`decode`), which for images is a smooth version
of the example; `decoded="sample"` draws x ~ p(x|z) instead (binary pixels for a Bernoulli
decoder, pixel noise for a Gaussian one); `decoded="detail"` adds the change that the latent
perturbation makes, decode(z) - decode(mu), to the original example, so the new example moves
the way the VAE's latent space moves while keeping the source's own sharpness and strokes
(posterior samples only, clamped to [0, 1] for a Bernoulli decoder).

    x_new, y_new = augment(vae, x_labelled, y_labelled, n_per_example=5, temperature=1.0)
    save_npz("augmented.npz", x_new, y_new)   # `vaekit train --data augmented.npz` reads it
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import torch

from ..distributions import InputError
from ..io import atomic_write_bytes

__all__ = ["augment", "save_npz"]

DECODED = ("mean", "sample", "detail")


@contextmanager
def _inference(model, seed):
    """Eval mode, no gradients, and (with a seed) a private random stream; all restored after."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                                    enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield device
    finally:
        model.train(was_training)


def _check(model, n_per_example, n_per_class, temperature, decoded, batch_size):
    from ..models import BaseVAE

    if not isinstance(model, BaseVAE):
        raise InputError(f"augment needs a VAE with a Gaussian posterior (VAE, ConvVAE, CVAE, ...), "
                         f"not {type(model).__name__}.")
    if not isinstance(temperature, Real) or not 0 <= temperature < float("inf"):
        raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    if decoded not in DECODED:
        raise InputError(f"decoded must be one of {', '.join(DECODED)}, not {decoded!r}.")
    for name, value in (("n_per_example", n_per_example), ("n_per_class", n_per_class), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, Integral) or isinstance(value, bool) or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}.")


def _decode(model, z, y, decoded):
    """Examples from codes z (B, L): the likelihood mean, or a draw from p(x|z)."""
    if decoded == "sample":
        return model.likelihood(z, y).sample()
    return model.decode(z, y)


def augment(model, x=None, y=None, n_per_example: int = 5, n_per_class: int | None = None,
            temperature: float = 1.0, decoded: str = "mean", seed: int | None = None,
            batch_size: int = 1000):
    """New labelled examples from a trained VAE: (x_new, y_new), tensors on the CPU.

    With `x` (and its labels `y`, which a CVAE needs): `n_per_example` posterior samples around
    each example, in the chapter's order (example 0's samples first); `y_new` repeats each label
    `n_per_example` times (None when y is None); x_new has x's per-example layout, e.g.
    (N * n_per_example, 1, 28, 28) for images or (N * n_per_example, 784) for flat rows.

    With `n_per_class` (a CVAE, no x): that many generated examples of every class 0..C-1,
    class by class; y_new are those classes (int64), x_new has the model's image shape.

    temperature: scale of the latent noise (0 decodes the posterior or prior mean).
    decoded: "mean" (decode's likelihood mean), "sample" (a draw from p(x|z)) or "detail"
    (x + decode(z) - decode(mu): the latent change applied to the original; posterior samples only).
    seed: makes the result reproducible without touching the global random state.
    """
    _check(model, n_per_example, n_per_class, temperature, decoded, batch_size)
    if n_per_class is not None:
        if x is not None:
            raise InputError("Give either examples x (posterior samples around them) or n_per_class "
                             "(class-conditional generation), not both.")
        return _per_class(model, n_per_class, temperature, decoded, seed, batch_size)
    if x is None:
        raise InputError("Give the examples x to augment, or n_per_class to generate from a CVAE.")
    return _around(model, x, y, n_per_example, temperature, decoded, seed, batch_size)


def _around(model, x, y, n, temperature, decoded, seed, batch_size):
    x = torch.as_tensor(x) if not torch.is_tensor(x) else x
    xb = model.check_input(x.detach())  # (N, *data_shape)
    layout = x.shape[1:] if x.dim() > 1 and len(x) == len(xb) else xb.shape[1:]  # the caller's per-example layout
    if y is not None:
        y = torch.as_tensor(y).detach().cpu()
        if y.dim() == 0 or len(y) != len(xb):
            raise InputError(f"Got {1 if y.dim() == 0 else len(y)} labels for {len(xb)} examples; pass one label per example.")
    cond = getattr(model, "conditional", False)
    if cond and y is None:
        raise InputError("This is a conditional model: pass the labels y of the examples to augment.")
    parts = []
    with _inference(model, seed) as device:
        for start in range(0, len(xb), batch_size):
            xc = xb[start:start + batch_size].to(device)  # (B, *data_shape)
            yc = y[start:start + batch_size].to(device) if cond else None
            mu, logvar = model.encode(xc, yc)  # (B, L)
            eps = torch.randn((len(xc), n, mu.shape[-1]), device=device, dtype=mu.dtype)  # (B, n, L)
            z = mu[:, None] + temperature * torch.exp(0.5 * logvar)[:, None] * eps  # (B, n, L)
            z = z.reshape(-1, mu.shape[-1])  # (B * n, L), example-major
            yz = yc.repeat_interleave(n, 0) if cond else None
            new = _decode(model, z, yz, decoded)  # (B * n, *data_shape)
            if decoded == "detail":
                delta = new.reshape(len(xc), n, *new.shape[1:]) - model.decode(mu, yc)[:, None]  # (B, n, ...)
                new = (xc[:, None] + delta).reshape(new.shape)
                if model.lik.name == "bernoulli":
                    new = new.clamp(0, 1)
            parts.append(new.cpu())
    x_new = torch.cat(parts).reshape(len(xb) * n, *layout)
    y_new = None if y is None else y.repeat_interleave(n, 0)
    return x_new, y_new


def _per_class(model, n, temperature, decoded, seed, batch_size):
    if not getattr(model, "conditional", False):
        raise InputError(f"n_per_class needs a conditional model (CVAE); {type(model).__name__} generates "
                         "without labels, so augment real examples x instead.")
    if decoded == "detail":
        raise InputError('decoded="detail" needs real examples x; use "mean" or "sample" with n_per_class.')
    num_classes = model.config.num_classes
    labels = torch.arange(num_classes).repeat_interleave(n)  # (C * n,)
    parts = []
    with _inference(model, seed) as device:
        for start in range(0, len(labels), batch_size):
            yc = labels[start:start + batch_size].to(device)
            z = temperature * torch.randn((len(yc), model.latent_dim), device=device)  # N(0, T^2 I) prior draws
            parts.append(_decode(model, z, yc, decoded).cpu())
    shape = getattr(model, "image_shape", None) or model.data_shape
    return torch.cat(parts).reshape(len(labels), *shape), labels


def save_npz(path, x, y=None):
    """Write x (float32) and labels y (int64) to a .npz file atomically; `load_dataset(path)` reads it back."""
    arrays = {"x": np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float32)}
    if y is not None:
        y = torch.as_tensor(y).detach().cpu()
        arrays["y"] = np.asarray(y.argmax(-1) if y.dim() == 2 else y, dtype=np.int64)  # one-hot rows -> classes
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path
