"""Data augmentation with a trained VAE: new labelled examples to train a classifier on.

Three sources of new examples:

* Posterior samples around real examples (any Gaussian-posterior model; the chapter's loop,
  batched). Each example is encoded to q(z|x) = N(mu, sigma^2), `n_per_example` codes
  z = mu + temperature * sigma * eps are drawn and decoded, and every new example keeps the label
  of the example it came from. A temperature below 1 stays closer to the source (safer labels),
  above 1 gives more variety.
* Class-conditional generation from a CVAE: `n_per_class` codes z ~ N(0, temperature^2 I) per
  class, decoded with that class's label.
* Pseudo-labels for unlabelled examples (`unlabelled=`): with few labels, the unlabelled data the
  VAE was trained on help most. Labels spread from the labelled examples over a nearest-neighbour
  graph of posterior means (`pseudo_label`), and the unlabelled examples the spreading is surest
  about join the data set with the label it gave them.

What is decoded: by default the mean of p(x|z) (`decode`), which for images is a smooth version
of the example; `decoded="sample"` draws x ~ p(x|z) instead (binary pixels for a Bernoulli
decoder, pixel noise for a Gaussian one); `decoded="detail"` adds the change that the latent
perturbation makes, decode(z) - decode(mu), to the original example, so the new example moves
the way the VAE's latent space moves while keeping the source's own sharpness and strokes
(posterior samples only; clamped to [0, 1] for a Bernoulli decoder).

    x_new, y_new = augment(vae, x_labelled, y_labelled, n_per_example=5)
    x_new, y_new = augment(vae, x_labelled, y_labelled, n_per_example=0, unlabelled=x_unlabelled)
    save_npz("augmented.npz", x_new, y_new)   # `vaekit train --data augmented.npz` reads it
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch

from ..distributions import BernoulliLikelihood, InputError
from ..atomic import atomic_write_bytes

__all__ = ["augment", "pseudo_label", "PseudoLabels", "spread_labels", "save_npz"]

DECODED = ("mean", "sample", "detail")


@contextmanager
def _inference(model, seed=None):
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


def _count(name, value, zero_ok=False):
    if value is not None and (not isinstance(value, Integral) or isinstance(value, bool) or value < (0 if zero_ok else 1)):
        raise InputError(f"{name} must be a {'non-negative' if zero_ok else 'positive'} integer, got {value!r}.")


def _check_model(model, what="augment"):
    from ..models import BaseVAE

    if not isinstance(model, BaseVAE):
        raise InputError(f"{what} needs a VAE with a Gaussian posterior (VAE, ConvVAE, CVAE, ...), "
                         f"not {type(model).__name__}.")


def _floats(model, x) -> torch.Tensor:
    """x as a detached tensor in the model's floating dtype (NumPy float64 arrays included)."""
    x = torch.as_tensor(x) if not torch.is_tensor(x) else x.detach()
    return x.to(next(model.parameters()).dtype)


def _labels_for(y, n):
    y = torch.as_tensor(y).detach().cpu()
    if y.dim() == 0 or len(y) != n:
        raise InputError(f"Got {1 if y.dim() == 0 else len(y)} labels for {n} examples; pass one label per example.")
    return y


# ---- the one entry point --------------------------------------------------------------------
def augment(model, x=None, y=None, n_per_example: int = 5, n_per_class: int | None = None,
            temperature: float = 1.0, decoded: str = "mean", seed: int | None = None,
            unlabelled=None, n_pseudo_per_class: int = 1000, batch_size: int = 1000):
    """New labelled examples from a trained VAE: (x_new, y_new), tensors on the CPU.

    With `x` (and its labels `y`, which a CVAE needs): `n_per_example` posterior samples around
    each example, in the chapter's order (example 0's samples first); `y_new` repeats each label
    `n_per_example` times (None when y is None); x_new has x's per-example layout, e.g.
    (N * n_per_example, 1, 28, 28) for images or (N * n_per_example, 784) for flat rows.

    With `unlabelled` as well (examples without labels, e.g. the rest of the training set):
    up to `n_pseudo_per_class` of them per class with the labels `pseudo_label` infers come first,
    then the posterior samples (`n_per_example` may be 0 here to get only those).

    With `n_per_class` (a CVAE, no x): that many generated examples of every class 0..C-1,
    class by class; y_new are those classes (int64), x_new has the model's image shape.

    temperature: scale of the latent noise (0 decodes the posterior or prior mean).
    decoded: "mean" (decode's likelihood mean), "sample" (a draw from p(x|z)) or "detail"
    (x + decode(z) - decode(mu): the latent change applied to the original; posterior samples only).
    seed: makes the result reproducible without touching the global random state.
    """
    _check_model(model)
    if not isinstance(temperature, Real) or not 0 <= temperature < float("inf"):
        raise InputError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    if decoded not in DECODED:
        raise InputError(f"decoded must be one of {', '.join(DECODED)}, not {decoded!r}.")
    _count("n_per_example", n_per_example, zero_ok=unlabelled is not None)
    _count("n_per_class", n_per_class)
    _count("batch_size", batch_size)
    if n_per_class is not None:
        if x is not None or unlabelled is not None:
            raise InputError("Give either examples x (posterior samples around them) or n_per_class "
                             "(class-conditional generation), not both.")
        x_new, y_new = _per_class(model, n_per_class, temperature, decoded, seed, batch_size)
        return (x_new.clamp(0, 1) if model.image_shape is not None else x_new), y_new
    if x is None:
        raise InputError("Give the examples x to augment, or n_per_class to generate from a CVAE.")
    x_new, y_new = _around(model, x, y, n_per_example, temperature, decoded, seed, batch_size)
    source = _floats(model, x)
    if source.numel() and source.min() >= 0 and source.max() <= 1:  # pixels: keep new ones in the data's range,
        x_new = x_new.clamp(0, 1)  # so that the file trains like the original (a Gaussian mean can overshoot)
    if unlabelled is None:
        return x_new, y_new
    x_ps, y_ps, _, _ = pseudo_label(model, x, y, unlabelled, n_per_class=n_pseudo_per_class, batch_size=batch_size)
    x_ps = x_ps.reshape(len(x_ps), *x_new.shape[1:])
    return torch.cat([x_ps.to(x_new.dtype), x_new]), torch.cat([y_ps, y_new.to(y_ps.dtype)])


# ---- posterior samples around real examples -----------------------------------------------
def _decode(model, z, y, decoded):
    """Examples from codes z (B, L): the likelihood mean, or a draw from p(x|z)."""
    if decoded == "sample":
        return model.likelihood(z, y).sample()
    return model.decode(z, y)


def _around(model, x, y, n, temperature, decoded, seed, batch_size):
    x = _floats(model, x)
    xb = model.check_input(x)  # (N, *data_shape)
    layout = x.shape[1:] if x.dim() > 1 and len(x) == len(xb) else xb.shape[1:]  # the caller's per-example layout
    y = None if y is None else _labels_for(y, len(xb))
    cond = model.conditional
    if cond and y is None:
        raise InputError("This is a conditional model: pass the labels y of the examples to augment.")
    parts = []
    with _inference(model, seed) as device:
        for start in range(0, len(xb) if n else 0, batch_size):
            xc = xb[start:start + batch_size].to(device)  # (B, *data_shape)
            yc = y[start:start + batch_size].to(device) if cond else None
            mu, logvar = model.encode(xc, yc)  # (B, L)
            eps = torch.randn((len(xc), n, mu.shape[-1]), device=device, dtype=mu.dtype)  # (B, n, L)
            z = mu[:, None] + temperature * torch.exp(0.5 * logvar)[:, None] * eps  # (B, n, L)
            z = z.reshape(-1, mu.shape[-1])  # (B * n, L), example-major
            new = _decode(model, z, yc.repeat_interleave(n, 0) if cond else None, decoded)  # (B * n, *data_shape)
            if decoded == "detail":
                delta = new.reshape(len(xc), n, *new.shape[1:]) - model.decode(mu, yc)[:, None]  # (B, n, ...)
                new = (xc[:, None] + delta).reshape(new.shape)
                if isinstance(model.lik, BernoulliLikelihood):
                    new = new.clamp(0, 1)
            parts.append(new.cpu())
    x_new = torch.cat(parts) if parts else xb.new_zeros((0, *xb.shape[1:])).cpu()
    x_new = x_new.reshape(len(xb) * n, *layout)
    y_new = None if y is None else y.repeat_interleave(n, 0)
    return x_new, y_new


# ---- class-conditional generation -------------------------------------------------------
def _per_class(model, n, temperature, decoded, seed, batch_size):
    if not model.conditional:
        raise InputError(f"n_per_class needs a conditional model (CVAE); {type(model).__name__} generates "
                         "without labels, so augment real examples x instead.")
    if decoded == "detail":
        raise InputError('decoded="detail" needs real examples x; use "mean" or "sample" with n_per_class.')
    labels = torch.arange(model.config.num_classes).repeat_interleave(n)  # (C * n,)
    parts = []
    with _inference(model, seed) as device:
        for start in range(0, len(labels), batch_size):
            yc = labels[start:start + batch_size].to(device)
            z = model.sample_prior(len(yc), temperature, yc)  # prior draws, the noise scaled by T
            parts.append(_decode(model, z, yc, decoded).cpu())
    shape = getattr(model, "image_shape", None) or model.data_shape
    return torch.cat(parts).reshape(len(labels), *shape), labels


# ---- pseudo-labels for unlabelled examples -------------------------------------------------
def _knn_graph(z: torch.Tensor, k: int, chunk: int = 512) -> torch.Tensor:
    """Symmetric k-nearest-neighbour adjacency of the rows of z: sparse (N, N), weights 1 or 2."""
    n = len(z)
    cols = []
    for start in range(0, n, chunk):
        d = torch.cdist(z[start:start + chunk], z)  # (chunk, N)
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = float("inf")  # not its own neighbour
        cols.append(d.topk(k, largest=False).indices)  # (chunk, k)
    cols = torch.cat(cols).flatten()  # (N * k,)
    rows = torch.arange(n, device=z.device).repeat_interleave(k)  # (N * k,)
    w = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(len(rows), device=z.device), (n, n),
                                check_invariants=False)
    return (w + w.t()).coalesce()


def spread_labels(z_labelled, y, z_unlabelled, n_neighbours: int = 10, alpha: float = 0.2,
                  iterations: int = 30) -> torch.Tensor:
    """Label spreading (Zhou et al. 2004) from labelled to unlabelled points: class shares (U, C).

    The points are joined to their `n_neighbours` nearest neighbours (Euclidean, symmetrised);
    with S = D^-1/2 W D^-1/2 and Y the one-hot labels (zero rows for the unlabelled), the scores
    F <- alpha S F + (1 - alpha) Y are iterated `iterations` times and normalised to shares
    per row. A row no label reached is all zeros. Works on any features: posterior means, pixels.
    """
    z_labelled, z_unlabelled = torch.as_tensor(z_labelled).float(), torch.as_tensor(z_unlabelled).float()
    y = torch.as_tensor(y).long().to(z_labelled.device)
    if len(z_labelled) + len(z_unlabelled) <= n_neighbours:
        raise InputError(f"Label spreading over {n_neighbours} neighbours needs more than {n_neighbours} examples in all.")
    z = torch.cat([z_labelled, z_unlabelled.to(z_labelled.device)]).reshape(len(z_labelled) + len(z_unlabelled), -1)
    w = _knn_graph(z, n_neighbours)
    d = torch.sparse.sum(w, 1).to_dense().rsqrt()[:, None]  # D^-1/2 as a column
    seeds = torch.zeros((len(z), int(y.max()) + 1), device=z.device)
    seeds[torch.arange(len(y)), y] = 1.0  # labelled rows one-hot, the rest zero
    f = seeds
    for _ in range(iterations):
        f = alpha * d * torch.sparse.mm(w, d * f) + (1 - alpha) * seeds
    f = f[len(y):].cpu()  # (U, C)
    return f / f.sum(1, keepdim=True).clamp_min(1e-30)


class PseudoLabels(NamedTuple):
    x: torch.Tensor  # the chosen unlabelled examples, (M, ...)
    y: torch.Tensor  # their inferred labels, int64 (M,)
    share: torch.Tensor  # the share of the label spreading that the inferred class got, (M,)
    index: torch.Tensor  # their positions in the unlabelled examples, int64 (M,)


def _means(model, x, device, batch_size):
    """Posterior means mu(x), (N, L), in batches."""
    return torch.cat([model.encode(x[i:i + batch_size].to(device))[0] for i in range(0, len(x), batch_size)])


def pseudo_label(model, x, y, unlabelled, n_per_class: int = 1000, n_neighbours: int = 10, alpha: float = 0.2,
                 iterations: int = 30, batch_size: int = 1000):
    """Labels for the unlabelled examples the model is surest about: PseudoLabels(x, y, share, index).

    A semi-supervised step for the few-labels regime: the labelled `x`, `y` and the `unlabelled`
    examples are encoded to their posterior means, and labels spread over the graph of each
    mean's `n_neighbours` nearest means (`spread_labels`), so a label travels along the clusters
    the VAE found in the unlabelled data. Of the unlabelled examples whose largest share is class
    c, the `n_per_class` with the largest share are returned, class by class: the real examples `x`
    in `unlabelled`'s layout, their inferred labels `y` (int64), those shares in (0, 1] and the
    examples' positions `index` in `unlabelled`.
    The model should be unconditional and trained on the unlabelled data too.
    """
    _check_model(model, "pseudo_label")
    if model.conditional:
        raise InputError("pseudo_label needs an unconditional VAE: a CVAE cannot encode examples without their labels.")
    for name, value in (("n_per_class", n_per_class), ("n_neighbours", n_neighbours), ("iterations", iterations),
                        ("batch_size", batch_size)):
        _count(name, value)
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}.")
    if y is None:
        raise InputError("Pseudo-labelling needs the labels y of the labelled examples.")
    u = _floats(model, unlabelled)
    xl, ub = model.check_input(_floats(model, x)), model.check_input(u)
    y = _labels_for(y, len(xl))
    if y.dim() != 1 or torch.is_floating_point(y) or y.min() < 0:
        raise InputError("Pseudo-labelling needs labels as class numbers 0, 1, 2, ... (one per example).")
    with _inference(model) as device:
        share = spread_labels(_means(model, xl, device, batch_size), y, _means(model, ub, device, batch_size),
                              n_neighbours, alpha, iterations)
    conf, pred = share.max(1)
    reached = share.sum(1) > 0  # examples no label reached stay out
    chosen = []
    for c in range(share.shape[1]):
        cand = torch.nonzero((pred == c) & reached).flatten()
        chosen.append(cand[conf[cand].argsort(descending=True, stable=True)[:n_per_class]])
    chosen = torch.cat(chosen)
    return PseudoLabels(u.cpu()[chosen], pred[chosen], conf[chosen], chosen)


# ---- writing a data set ---------------------------------------------------------------------
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
