"""Build a model sized for a data set, by the names the CLI uses (`--model vae|conv|cvae|...`)."""

from __future__ import annotations

import math

from .distributions import InputError
from .models import CVAE, VAE, ConvVAE


def _flat(shape):
    return math.prod(shape)


def _image_shape(shape, kind):
    if len(shape) != 3:
        raise InputError(f"--model {kind} needs images (C, H, W), but the data are table rows of {shape[0]} values; use --model vae.")
    return shape


def build_vae(shape, num_classes, latent_dim, likelihood, **kw):
    return VAE(_flat(shape), latent_dim, likelihood=likelihood, image_shape=shape if len(shape) == 3 else None, **kw)


def build_conv(shape, num_classes, latent_dim, likelihood, **kw):
    c, h, w = _image_shape(shape, "conv")
    return ConvVAE(latent_dim, in_channels=c, image_size=(h, w), likelihood=likelihood, **kw)


def build_cvae(shape, num_classes, latent_dim, likelihood, **kw):
    if not num_classes:
        raise InputError("--model cvae needs labelled data (a data set with classes, or y in the .npz file).")
    return CVAE(_flat(shape), latent_dim, num_classes, likelihood=likelihood,
                image_shape=shape if len(shape) == 3 else None, **kw)


BUILDERS = {"vae": build_vae, "conv": build_conv, "cvae": build_cvae}


def build_model(kind: str, data_shape, num_classes=None, latent_dim: int = 20, likelihood: str = "bernoulli", **kw):
    """A fresh model of family `kind` for examples of `data_shape` ((C, H, W) or (D,))."""
    if kind not in BUILDERS:
        raise InputError(f"Unknown model {kind!r}; choose one of {', '.join(BUILDERS)}.")
    return BUILDERS[kind](tuple(data_shape), num_classes, latent_dim, likelihood, **kw)
