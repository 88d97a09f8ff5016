"""Pictures a person would rather look at than read: image grids, loss curves, latent maps, histograms.

Figures are built with matplotlib's object API and rendered by Agg, so this works headless and
never touches pyplot's global state or backend (a notebook's backend stays as it was). Every PNG
is rendered into memory and written atomically, so a crash never leaves half a picture behind.
"""

from __future__ import annotations

import io
import math
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .distributions import InputError
from .atomic import atomic_write_bytes

__all__ = ["to_images", "save_image_grid", "save_loss_curve", "save_latent_map", "save_histogram"]

DPI = 100


def _save(fig: Figure, path) -> Path:
    """Render `fig` to PNG bytes and write them to `path` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _tensor(x, what: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().cpu()
    if x.numel() == 0:
        raise InputError(f"The {what} are empty; pass at least one value.")
    x = x.float()
    if not torch.isfinite(x).all():
        raise InputError(f"The {what} contain NaN or infinite values; check the model or data that produced them.")
    return x


# ---- images ----------------------------------------------------------------------------------

def _chw(image_shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise InputError(f"image_shape must be (H, W) or (C, H, W) with C = 1 or 3, got {tuple(image_shape)}.")
    return shape


def _layout(shape: tuple[int, ...], image_shape=None) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Split an array shape into (leading batch/grid dims, (C, H, W) of one image).

    With image_shape, the trailing dims must be (C, H, W), (H, W) for one channel, or one flat dim
    of C*H*W values. Without it: 5 dims, or 4 with 1 or 3 in the third-last place, end in (C, H, W);
    a last dim that is a perfect square s*s is a flat (1, s, s) image, unless the array is
    (N, s*s, s*s), read as N square images; other 3-D and 4-D arrays end in a greyscale (H, W).
    A 1-D or 2-D array is always flat rows, so a single (H, W) picture is passed as (1, H, W).
    """
    if image_shape is not None:
        chw = _chw(image_shape)
        size = math.prod(chw)
        for tail in (chw, chw[1:] if chw[0] == 1 else None, (size,)):
            if tail and len(shape) >= len(tail) and tuple(shape[len(shape) - len(tail):]) == tail:
                return tuple(shape[: len(shape) - len(tail)]), chw
        raise InputError(
            f"Arrays of shape {tuple(shape)} do not end in images of shape {chw} (or {size} flat values); "
            "pass the right image_shape."
        )
    side = math.isqrt(shape[-1])
    if len(shape) >= 4 and (shape[-3] in (1, 3) or len(shape) > 4):
        return tuple(shape[:-3]), _chw(shape[-3:])
    if side * side == shape[-1] and not (len(shape) == 3 and shape[-1] == shape[-2]):
        return tuple(shape[:-1]), (1, side, side)
    if len(shape) in (3, 4):
        return tuple(shape[:-2]), (1, *shape[-2:])
    raise InputError(
        f"Cannot tell the image size of flat vectors of {shape[-1]} values (not a perfect square); "
        "pass image_shape=(C, H, W)."
    )


def to_images(x, image_shape=None) -> torch.Tensor:
    """Images as a float tensor (N, C, H, W) clamped to [0, 1], from flat or image-shaped arrays.

    Flat rows are reshaped with image_shape ((C, H, W) or (H, W)); without it a perfect-square
    length s*s becomes (1, s, s). Any leading dims are flattened into N (see `_layout` for the rules).
    """
    x = _tensor(x, "images")
    _, chw = _layout(tuple(x.shape), image_shape)
    return x.reshape(-1, *chw).clamp(0, 1)  # (N, C, H, W)


def _tile(images: torch.Tensor, rows: int, cols: int, pad: int) -> np.ndarray:
    """(N, C, H, W) images laid out row by row, `pad` white pixels apart; (grid H, grid W, C) array."""
    n, c, h, w = images.shape
    canvas = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=np.float32)
    for i, img in enumerate(images.numpy()):
        r, k = divmod(i, cols)
        canvas[r * (h + pad): r * (h + pad) + h, k * (w + pad): k * (w + pad) + w] = img.transpose(1, 2, 0)  # HWC
    return canvas


def save_image_grid(images, path, nrow: int | None = None, image_shape=None, title: str | None = None,
                    row_labels=None) -> Path:
    """Write images as one PNG grid and return its path.

    `images` is a batch (N, ...) laid out `nrow` images per row (default: a near-square grid), or
    a grid (R, K, ...) drawn as R rows of K images, e.g. the output of latent.traverse (for an
    interpolation strip of T images pass nrow=T or strip[None]). Each image
    is (C, H, W), (H, W) or flat (see `to_images`); 1 channel is drawn grey, 3 as RGB, values
    clamped to [0, 1], pixels kept crisp. `row_labels` (one string per row) are written on the left.
    """
    x = _tensor(images, "images")
    lead, chw = _layout(tuple(x.shape), image_shape)
    flat = x.reshape(-1, *chw).clamp(0, 1)  # (N, C, H, W)
    n = flat.shape[0]
    if len(lead) == 2:
        rows, cols = lead
    elif len(lead) <= 1:
        cols = math.ceil(math.sqrt(n)) if nrow is None else nrow
        if not isinstance(cols, Integral) or cols < 1:
            raise InputError(f"nrow must be a positive number of images per row, got {nrow!r}.")
        rows = math.ceil(n / cols)
    else:
        raise InputError(
            f"Expected a batch (N, ...) or a grid (rows, columns, ...) of images, got shape {tuple(x.shape)}."
        )
    if row_labels is not None and len(row_labels) != rows:
        raise InputError(f"Got {len(row_labels)} row labels for {rows} rows; pass one label per row.")

    c, h, w = chw
    pad = max(1, round(max(h, w) / 14))
    canvas = _tile(flat, rows, cols, pad)  # (gh, gw, C)
    gh, gw = canvas.shape[:2]
    scale = max(1, 512 // max(gh, gw))  # whole-pixel upscaling keeps small images crisp
    margin = 4
    left = margin + (8 * max(len(str(s)) for s in row_labels) + 8 if row_labels is not None else 0)
    top = margin + (24 if title else 0)
    fig_w, fig_h = left + gw * scale + margin, top + gh * scale + margin  # figure size in pixels
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    ax = fig.add_axes((left / fig_w, margin / fig_h, gw * scale / fig_w, gh * scale / fig_h))
    if c == 1:
        ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, y=1 - 4 / fig_h, va="top", fontsize=11)
    for r, label in enumerate(row_labels if row_labels is not None else []):
        ax.text(-0.5 - 4 / scale, r * (h + pad) + h / 2 - 0.5, str(label), ha="right", va="center", fontsize=9)
    return _save(fig, path)


# ---- curves and scatter plots ----------------------------------------------------------------

def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the epochs whose record has a number under `key`."""
    xs, ys = [], []
    for i, record in enumerate(history):
        value = record.get(key)
        if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(record.get("epoch", i + 1))
            ys.append(float(value))
    return xs, ys


def save_loss_curve(history, path, title: str | None = None) -> Path:
    """Plot a training history (a list of per-epoch dicts) and return the PNG's path.

    Every key ending in `_loss` (or named `loss`) goes on the left panel against `epoch` (the record's
    position when absent); keys containing `kl` get a second panel if there are any. Records that
    lack a key (e.g. validation every few epochs) simply leave gaps.
    """
    if isinstance(history, dict) or not history or not all(isinstance(r, dict) for r in history):
        raise InputError("history must be a non-empty list of per-epoch dicts, e.g. [{'epoch': 1, 'train_loss': 97.3}].")
    keys = list(dict.fromkeys(k for record in history for k in record))  # first-seen order
    series = {k: _series(history, k) for k in keys}
    series = {k: xy for k, xy in series.items() if xy[0]}  # keys with at least one number
    loss_keys = [k for k in series if k == "loss" or k.endswith("_loss")]
    kl_keys = [k for k in series if "kl" in k.lower() and k not in loss_keys]
    if not loss_keys and not kl_keys:
        raise InputError(f"history has no numeric '*_loss' or '*kl*' entries to plot (keys: {', '.join(keys)}).")
    panels = [(name, ks) for name, ks in (("loss", loss_keys), ("KL", kl_keys)) if ks]
    fig = Figure(figsize=(5.5 * len(panels), 4), dpi=DPI, layout="constrained")
    for ax, (name, ks) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for k in ks:
            xs, ys = series[k]
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (nats per example)")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_latent_map(z, labels, path, title: str | None = None) -> Path:
    """Scatter latent codes z (N, L) in 2-D, coloured by `labels` (N,) (None: one colour); return the path.

    Codes with L > 2 are projected on their first two principal components (scikit-learn PCA);
    L = 1 is drawn along a line. Up to 20 classes (integers or strings) get a legend, anything
    else (continuous values, many classes) a colour bar.
    """
    z = _tensor(z, "latent codes")
    z = z.reshape(z.shape[0], -1).numpy() if z.dim() > 1 else z.reshape(-1, 1).numpy()  # (N, L)
    n, latent_dim = z.shape
    if latent_dim > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2)
        points = pca.fit_transform(z)  # (N, 2)
        share = pca.explained_variance_ratio_ * 100
        axis_names = [f"PC{i + 1} ({share[i]:.0f}% of variance)" for i in range(2)]
    elif latent_dim == 2:
        points, axis_names = z, ["z[0]", "z[1]"]
    else:
        points, axis_names = np.concatenate([z, np.zeros_like(z)], 1), ["z[0]", ""]

    fig = Figure(figsize=(6, 5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    style = dict(s=8, alpha=0.7, linewidths=0)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], **style)
    else:
        labels = (labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)).reshape(-1)
        if labels.shape[0] != n:
            raise InputError(f"Got {labels.shape[0]} labels for {n} codes; pass one label per code.")
        classes, codes = np.unique(labels, return_inverse=True)
        numeric = np.issubdtype(labels.dtype, np.number)
        if len(classes) <= 20 and (not numeric or np.all(classes == np.round(classes))):
            cmap = "tab10" if len(classes) <= 10 else "tab20"
            for i, cls in enumerate(classes):
                keep = codes == i
                name = str(int(cls)) if numeric else str(cls)
                ax.scatter(points[keep, 0], points[keep, 1], color=_color(cmap, i), label=name, **style)
            ax.legend(markerscale=2, fontsize=8, loc="best", title="label")
        else:  # many classes or continuous values: a colour scale (categories by their sorted index)
            dots = ax.scatter(points[:, 0], points[:, 1], c=labels if numeric else codes, cmap="viridis", **style)
            fig.colorbar(dots, ax=ax, label="label")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if latent_dim == 1:
        ax.set_yticks([])
    ax.set_title(title or "latent codes")
    return _save(fig, path)


def _color(cmap: str, i: int):
    from matplotlib import colormaps

    return colormaps[cmap](i)


def save_histogram(values, path, threshold: float | None = None, title: str | None = None,
                   xlabel: str = "score", bins: int = 50) -> Path:
    """Histogram of `values` (e.g. anomaly scores) with an optional dashed threshold line; return the path.

    `values` is one array, or a dict {name: array} drawn as overlaid histograms on shared bins
    (e.g. {"normal": s0, "anomalous": s1}).
    """
    groups = values if isinstance(values, dict) else {None: values}
    if not groups:
        raise InputError("values is an empty dict; pass at least one array of scores.")
    arrays = {name: _tensor(v, "values").reshape(-1).numpy() for name, v in groups.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    fig = Figure(figsize=(6, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for name, v in arrays.items():
        ax.hist(v, bins=edges, alpha=0.6 if len(arrays) > 1 else 0.9, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold = {threshold:.4g}")
    if len(arrays) > 1 or threshold is not None:
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def save_codebook_usage(counts, path, title: str | None = None) -> Path:
    """Bar chart of how often each code is used, most used first (a VQ-VAE's codebook health)."""
    counts = np.sort(_tensor(counts, "counts").double().flatten().numpy())[::-1]
    total = counts.sum()
    share = counts / total if total > 0 else counts
    used = int((counts > 0).sum())
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(share)), share, width=1.0, color="#4c72b0")
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("share of positions")
    entropy = -(share[share > 0] * np.log(share[share > 0])).sum() if total > 0 else 0.0
    ax.set_title(title or f"codebook usage: {used} of {len(share)} codes used, perplexity {np.exp(entropy):.1f}")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


MAX_FEATURES = 8  # features pictured for a table


def _feature_grid(features: int, height: float):
    """A figure with one panel per pictured feature (at most MAX_FEATURES, four per row); the
    panels, spare ones switched off."""
    k = min(MAX_FEATURES, features)
    cols = min(4, k)
    rows = -(-k // cols)
    fig = Figure(figsize=(3 * cols, height * rows), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes[k:]:
        ax.axis("off")
    return fig, axes[:k]


def save_feature_histograms(samples, path, data=None, names=None, title: str | None = None) -> Path:
    """Per-feature histograms of table rows (N, D), the first MAX_FEATURES features, with the data's
    (if given) overlaid on the same bins: how generated rows compare with real ones."""
    s = _tensor(samples, "samples").reshape(len(samples), -1).double().numpy()
    d = _tensor(data, "data").reshape(len(data), -1).double().numpy() if data is not None else None
    fig, axes = _feature_grid(s.shape[1], 2.4)
    for j, ax in enumerate(axes):
        both = s[:, j] if d is None else np.concatenate([s[:, j], d[:, j]])
        edges = np.histogram_bin_edges(both, bins=30)
        if d is not None:
            ax.hist(d[:, j], bins=edges, alpha=0.5, density=True, label="data")
        ax.hist(s[:, j], bins=edges, alpha=0.5, density=True, label="samples")
        ax.set_title(names[j] if names else f"feature {j}", fontsize=9)
        ax.tick_params(labelsize=7)
    if d is not None:
        axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_feature_scatter(data, recon, path, names=None, title: str | None = None) -> Path:
    """Reconstructed against true value for the first MAX_FEATURES features of table rows (N, D)."""
    d = _tensor(data, "data").reshape(len(data), -1).double().numpy()
    r = _tensor(recon, "reconstructions").reshape(len(recon), -1).double().numpy()
    fig, axes = _feature_grid(d.shape[1], 2.6)
    for j, ax in enumerate(axes):
        ax.scatter(d[:, j], r[:, j], s=6, alpha=0.6)
        lo, hi = min(d[:, j].min(), r[:, j].min()), max(d[:, j].max(), r[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
        ax.set_title(names[j] if names else f"feature {j}", fontsize=9)
        ax.set_xlabel("data", fontsize=7)
        ax.set_ylabel("reconstruction", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "reconstruction against data, per feature")
    return _save(fig, path)
