"""Working in latent space: sampling with a temperature, interpolation (linear or spherical),
latent arithmetic and one-dimension-at-a-time traversals.

Every function takes any registered model (conditional ones through `y`), runs it in eval mode
without gradients, and puts it back in the mode it was in. Real examples are encoded by their
posterior mean mu, not by a random draw, so the same inputs always give the same pictures.
For a conditional model `y` is one label (an integer or a one-hot row) used both to encode the
given examples and to decode the result.
"""

from __future__ import annotations

from numbers import Integral

import torch

from .distributions import DiagonalGaussian
from .errors import InputError
from .models.core import Model, inference

__all__ = [
    "lerp", "slerp", "interpolate_latents", "interpolate", "arithmetic", "traverse_latents",
    "traverse", "active_dims", "sample", "encode_mean",
]


# ---- pure latent-space maths ---------------------------------------------------------------

def _as_t(t, like: torch.Tensor) -> torch.Tensor:
    """t as a tensor on like's device/dtype with a trailing axis to broadcast over the latent dim."""
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).unsqueeze(-1)  # (..., 1)


def lerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """(1 - t) * z0 + t * z1. A scalar t gives z's shape; t of shape (T,) and z of (L,) give (T, L)."""
    t = _as_t(t, z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t, eps: float = 1e-4) -> torch.Tensor:
    """Spherical interpolation along the great circle from z0 to z1 (same shapes as `lerp`).

    Moves at constant angular speed and keeps the norm when |z0| = |z1|, so the path stays in the
    shell where Gaussian codes live instead of cutting through the low-norm middle. Where the two
    vectors are (anti)parallel the great circle is undefined or degenerate and it falls back to lerp.
    """
    t = _as_t(t, z0)
    n0 = z0 / z0.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # the angle between them, (..., 1); Kahan's form stays accurate near 0 and pi, where acos(dot) does not
    omega = 2 * torch.atan2((n0 - n1).norm(dim=-1, keepdim=True), (n0 + n1).norm(dim=-1, keepdim=True))
    sin_omega = torch.sin(omega)
    degenerate = sin_omega < eps
    sin_safe = torch.where(degenerate, torch.ones_like(sin_omega), sin_omega)
    arc = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / sin_safe
    line = (1 - t) * z0 + t * z1
    path = torch.where(degenerate, line, arc)
    return torch.where(t == 0, z0, torch.where(t == 1, z1, path))  # exact endpoints despite rounding


_METHODS = {"linear": lerp, "slerp": slerp}


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, steps: int = 10, method: str = "linear"):
    """`steps` codes from z0 to z1 inclusive, evenly spaced in t; shape (steps, *z0.shape)."""
    if not isinstance(steps, Integral) or steps < 2:
        raise InputError(f"steps must be an integer of at least 2 (the two endpoints), got {steps!r}.")
    if method not in _METHODS:
        raise InputError(f"Unknown interpolation method {method!r}; use one of {', '.join(map(repr, _METHODS))}.")
    if z0.shape != z1.shape:
        raise InputError(f"Cannot interpolate between codes of shapes {tuple(z0.shape)} and {tuple(z1.shape)}.")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
    t = t.reshape(steps, *([1] * (z0.dim() - 1)))  # (steps, 1, ...) so batched codes broadcast too
    return _METHODS[method](z0, z1, t)


# ---- encoding --------------------------------------------------------------------------------

def _check_model(model) -> None:
    """These operations need a continuous latent vector with a prior, as every BaseVAE has."""
    if not isinstance(model, Model) or model.capabilities.latent != "vector":
        raise InputError(
            f"{type(model).__name__} has no continuous latent vector with a prior, so latent-space operations "
            "do not apply; use its own sample/reconstruct methods."
        )


def encode_mean(model, x, y=None) -> torch.Tensor:
    """Posterior means mu of q(z|x) for a batch (or one example), shape (B, latent_dim)."""
    _check_model(model)
    with inference(model):
        mu, _ = model.encode(model.as_batch(x), y)
    return mu


def _encode_one(model, x, y, name: str) -> torch.Tensor:
    """The posterior mean of exactly one example, shape (latent_dim,)."""
    mu = encode_mean(model, x, y)
    if mu.shape[0] != 1:
        raise InputError(f"{name} must be one example, got a batch of {mu.shape[0]}; pass one row, e.g. {name}[0].")
    return mu[0]


def _decode(model, z, y) -> torch.Tensor:
    with inference(model):
        return model.decode(z, y)


# ---- the chapter's operations ----------------------------------------------------------------

def interpolate(model, x0, x1, steps: int = 10, method: str = "linear", y=None) -> torch.Tensor:
    """Decode the path between the codes of x0 and x1; shape (steps, *data_shape).

    Row 0 decodes mu(x0) and row steps-1 decodes mu(x1). method is "linear" or "slerp".
    """
    z0, z1 = _encode_one(model, x0, y, "x0"), _encode_one(model, x1, y, "x1")
    return _decode(model, interpolate_latents(z0, z1, steps, method), y)  # (steps, L) -> (steps, *data_shape)


def arithmetic(model, a, b, c, y=None) -> torch.Tensor:
    """decode(z_a - z_b + z_c), the chapter's "king - man + woman"; shape data_shape.

    Each of a, b, c is one example or a batch; a batch stands for the mean of its codes, so
    `arithmetic(model, smiling_faces, neutral_faces, face)` adds the average "smile" direction to a face.
    """
    za, zb, zc = (encode_mean(model, group, y).mean(0) for group in (a, b, c))  # each (L,)
    return _decode(model, za - zb + zc, y)


def _check_dims(model, dims) -> list[int]:
    latent_dim = model.latent_dim
    if dims is None:
        return list(range(min(latent_dim, 10)))
    if isinstance(dims, str):
        raise InputError(f"dims must be latent indices, not {dims!r}; to pick the used ones pass active_dims(...).")
    index = torch.as_tensor(dims).reshape(-1)  # an int, a list or a tensor of indices
    dims = index.tolist()
    integral = not (index.is_floating_point() or index.dtype == torch.bool)
    if not (integral and dims and all(0 <= d < latent_dim for d in dims)):
        raise InputError(f"dims must be a non-empty list of latent indices in 0..{latent_dim - 1}, got {dims}.")
    return dims


def traverse_latents(model, x=None, dims=None, values=None, y=None) -> torch.Tensor:
    """The codes of a traversal, shape (len(dims), len(values), latent_dim).

    Starts from mu(x) (or from the prior mean, zeros, when x is None) and sets z[d] = v for each
    dimension d in `dims` (default: the first min(latent_dim, 10); see `active_dims` for the
    informative ones) and each value v in `values` (default: torch.linspace(-3, 3, 9), prior stds).
    """
    _check_model(model)
    dims = _check_dims(model, dims)
    values = torch.linspace(-3, 3, 9) if values is None else torch.as_tensor(values)
    if values.dim() != 1 or values.numel() == 0:
        raise InputError(f"values must be a non-empty 1-D list of latent values, got shape {tuple(values.shape)}.")
    if x is None:
        with inference(model):
            start = model.prior().mean  # (L,)
    else:
        start = _encode_one(model, x, y, "x")
    values = values.to(start)
    grid = start.expand(len(dims), len(values), model.latent_dim).clone()  # (D, V, L)
    for row, d in enumerate(dims):
        grid[row, :, d] = values
    return grid


def traverse(model, x=None, dims=None, values=None, y=None) -> torch.Tensor:
    """Decoded traversal: shape (len(dims), len(values), *data_shape); row i varies dims[i] only.

    Arguments as in `traverse_latents`; the result drops straight into plots.save_image_grid.
    """
    grid = traverse_latents(model, x, dims, values, y)
    rows, cols, latent_dim = grid.shape
    out = _decode(model, grid.reshape(rows * cols, latent_dim), y)  # (D*V, *data_shape)
    return out.reshape(rows, cols, *out.shape[1:])  # (D, V, *data_shape)


def active_dims(model, data, k: int = 10, y=None, with_kl: bool = False):
    """The k latent dimensions with the largest average KL(q(z_d|x) || N(0, 1)) over `data`, largest first
    (with `with_kl`: also their KLs in nats, as (dims, kls)).

    Dimensions the model does not use have a KL near zero; traversing them shows nothing, so
    `traverse(model, x, dims=active_dims(model, data))` shows what the model has learned.
    """
    _check_model(model)
    if model.capabilities.posterior == "point":
        raise InputError(f"A {model.model_type!r} model has deterministic codes, so no KL to rank dimensions by; "
                         "give the dimensions to traverse yourself.")
    with inference(model):
        q = DiagonalGaussian(*model.encode(model.as_batch(data), y))  # (the base Gaussian of a flow)
    kl = q.kl_per_dim().mean(0)  # (L,)
    dims = kl.argsort(descending=True)[: max(1, k)].tolist()
    return (dims, [kl[d].item() for d in dims]) if with_kl else dims


def sample(model, n: int, y=None, temperature: float = 1.0) -> torch.Tensor:
    """n new examples decoded from the prior; shape (n, *data_shape).

    The model's own sampler with its arguments checked: z = m + temperature * (z_p - m) with
    z_p ~ p(z) and m the prior mean (temperature * eps for N(0, I); hierarchical models scale
    every group's prior): below 1 trades variety for typical-looking samples, 0 decodes the mean.
    For a conditional model y is one label for all n samples or n labels.
    """
    _check_model(model)
    if not isinstance(n, Integral) or n < 1:
        raise InputError(f"n must be a positive integer number of samples, got {n!r}.")
    if not 0 <= temperature < float("inf"):
        raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    with inference(model):
        return model.sample(n, y, temperature=temperature)
