"""What the explorer page asks of a model, as plain JSON-ready answers (no HTTP here).

Every method checks its inputs and raises InputError with a sentence; the server turns that into a
400 answer. Pictures travel as flat lists of values in [0, 1] with their (C, H, W) shape.
"""

from __future__ import annotations

import math

import torch

from ..distributions import DiagonalGaussian
from ..errors import InputError
from ..models.core import inference

MAX_POINTS = 1000  # held-out examples on the map
MAX_STEPS = 32


class ModelView:
    """A trained model and some held-out data, answering the explorer's questions."""

    def __init__(self, model, x: torch.Tensor, y: torch.Tensor | None = None, name: str = ""):
        self.model, self.name = model.eval(), name
        self.x = model.as_batch(x[:MAX_POINTS])
        self.y = y[:MAX_POINTS] if y is not None else None
        self.vector = model.capabilities.latent == "vector"
        shape = getattr(model, "image_shape", None)
        if shape is None and len(model.data_shape) == 3:
            shape = model.data_shape
        if shape is None:
            raise InputError("The explorer shows images; this model's examples are table rows.")
        self.shape = tuple(shape)
        if self.vector:
            self._encode_data()

    # ---- set-up ------------------------------------------------------------------------------
    def _encode_data(self) -> None:
        model = self.model
        with inference(model):
            mu, logvar = model.encode(self.x, self._labels(self.y))
        self.mu = mu  # (N, L)
        if logvar is not None:
            kl = DiagonalGaussian(mu, logvar).kl_per_dim().mean(0)  # (L,)
        else:  # a plain autoencoder: rank by the spread of the codes
            kl = mu.var(0)
        self.order = kl.argsort(descending=True).tolist()
        self.kl = kl.tolist()
        center, spread = mu.mean(0), mu.std(0).clamp_min(1e-3)
        self.low, self.high = (center - 3 * spread).tolist(), (center + 3 * spread).tolist()
        centered = mu - center  # (N, L)
        _, _, v = torch.linalg.svd(centered, full_matrices=False)
        self.coords = (centered @ v[:2].T).tolist() if mu.shape[1] >= 2 else torch.cat(
            [centered, torch.zeros_like(centered)], 1).tolist()  # (N, 2)

    def _labels(self, y):
        return y if self.model.conditional else None

    def _pixels(self, images: torch.Tensor) -> list:
        """Images (B, ...) as lists of C*H*W values in [0, 1]."""
        flat = images.reshape(len(images), -1).float()
        return flat.clamp(0, 1).tolist()

    # ---- answers -------------------------------------------------------------------------------
    def info(self) -> dict:
        model = self.model
        out = {"name": self.name, "model": model.model_type, "shape": list(self.shape), "latent": "vector" if self.vector
               else "codes", "conditional": model.conditional,
               "num_classes": getattr(model.config, "num_classes", None), "n": len(self.x)}
        if self.vector:
            out.update(latent_dim=model.latent_dim, order=self.order, kl=self.kl, low=self.low, high=self.high,
                       mean=self.mu.mean(0).tolist())
        return out

    def points(self) -> dict:
        if not self.vector:
            raise InputError("This model has a discrete code grid; there is no latent map to draw.")
        labels = self.y.tolist() if self.y is not None else None
        return {"points": self.coords, "labels": labels}

    def example(self, index) -> dict:
        i = _index(index, len(self.x))
        x = self.x[i:i + 1]
        with inference(self.model):
            recon = self.model.reconstruct(x, self._labels(self.y[i:i + 1] if self.y is not None else None))
        out = {"x": self._pixels(x)[0], "recon": self._pixels(recon)[0]}
        if self.vector:
            out["z"] = self.mu[i].tolist()
            out["label"] = int(self.y[i]) if self.y is not None else None
        return out

    def decode(self, z, label=None) -> dict:
        z = self._code(z)
        with inference(self.model):
            image = self.model.decode(z[None], self._label(label, 1))
        return {"pixels": self._pixels(image)[0]}

    def sample(self, n, temperature=1.0, label=None) -> dict:
        n = _whole(n, "n", 1, 64)
        t = _number(temperature, "temperature", 0, 3)
        with inference(self.model):
            images = self.model.sample(n, self._label(label, n), temperature=t)
        return {"images": self._pixels(images)}

    def interpolate(self, i, j, steps=10, method="linear") -> dict:
        from ..latent import interpolate

        if not self.vector:
            raise InputError("Interpolation needs a continuous latent vector.")
        a, b = _index(i, len(self.x)), _index(j, len(self.x))
        steps = _whole(steps, "steps", 2, MAX_STEPS)
        if method not in ("linear", "slerp"):
            raise InputError("method must be 'linear' or 'slerp'.")
        y = self.y[a] if self.model.conditional and self.y is not None else None
        frames = interpolate(self.model, self.x[a], self.x[b], steps=steps, method=method, y=y)
        return {"frames": self._pixels(frames)}

    def arithmetic(self, a, b, c, label=None) -> dict:
        """decode(mean code of class a - mean of class b + mean of class c)."""
        if not self.vector or self.y is None:
            raise InputError("Latent arithmetic between class means needs a latent vector and labelled data.")
        means = []
        for cls in (a, b, c):
            cls = _whole(cls, "class", 0, int(self.y.max()))
            chosen = self.mu[self.y == cls]
            if not len(chosen):
                raise InputError(f"No examples of class {cls} in the explorer's data.")
            means.append(chosen.mean(0))
        return self.decode((means[0] - means[1] + means[2]).tolist(), label)

    def encode_pixels(self, pixels) -> dict:
        """A drawn or uploaded image (C*H*W values in [0, 1]) -> its code and reconstruction."""
        size = math.prod(self.shape)
        if not isinstance(pixels, list) or len(pixels) != size:
            raise InputError(f"pixels must be a list of {size} values (C*H*W = {'x'.join(map(str, self.shape))}).")
        x = torch.tensor([_number(v, "pixel", 0, 1) for v in pixels]).reshape(1, *self.shape)
        with inference(self.model):
            y = self._label(None, 1) if self.model.conditional else None
            recon = self.model.reconstruct(x, y)
            out = {"recon": self._pixels(recon)[0]}
            if self.vector:
                out["z"] = self.model.encode(x, y)[0][0].tolist()
        return out

    # ---- checks ----------------------------------------------------------------------------------
    def _code(self, z) -> torch.Tensor:
        if not self.vector:
            raise InputError("This model has a discrete code grid; sliders do not apply.")
        dim = self.model.latent_dim
        if not isinstance(z, list) or len(z) != dim:
            raise InputError(f"z must be a list of {dim} numbers.")
        return torch.tensor([_number(v, "z", -1e3, 1e3) for v in z], dtype=torch.float32)

    def _label(self, label, n):
        if not self.model.conditional:
            return None
        classes = self.model.config.num_classes
        label = 0 if label is None else _whole(label, "label", 0, classes - 1)
        return torch.full((n,), label)


def _number(v, name: str, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
        raise InputError(f"{name} must be a number from {low:g} to {high:g}, got {v!r}.")
    return float(v)


def _whole(v, name: str, low: int, high: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high}, got {v!r}.")
    return v


def _index(v, n: int) -> int:
    return _whole(v, "index", 0, n - 1)
