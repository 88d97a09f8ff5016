"""Build a model sized for a data set, by the names the CLI uses (`--model vae|conv|cvae|...`)."""

from __future__ import annotations

import math

from .distributions import InputError
from .models import CVAE, VAE, VQVAE, BetaTCVAE, ConvFlowVAE, ConvVAE, FlowVAE, HierarchicalVAE


def _flat(shape):
    return math.prod(shape)


def _image_shape(shape, kind):
    if len(shape) != 3:
        raise InputError(f"--model {kind} needs images (C, H, W), but the data are table rows of {shape[0]} values; use --model vae.")
    return shape


def _mlp(cls):
    def build(shape, num_classes, latent_dim, likelihood, **kw):
        return cls(_flat(shape), latent_dim, likelihood=likelihood, image_shape=shape if len(shape) == 3 else None, **kw)

    return build


def _conv(cls, kind):
    def build(shape, num_classes, latent_dim, likelihood, **kw):
        c, h, w = _image_shape(shape, kind)
        return cls(latent_dim, in_channels=c, image_size=(h, w), likelihood=likelihood, **kw)

    return build


def build_vqvae(shape, num_classes, latent_dim, likelihood, **kw):
    c, h, w = _image_shape(shape, "vqvae")
    return VQVAE(in_channels=c, image_size=(h, w), likelihood=likelihood, **kw)


def build_hvae(shape, num_classes, latent_dim, likelihood, **kw):
    c, h, w = _image_shape(shape, "hvae")  # latent sizes follow the image: maps at 2 scales
    return HierarchicalVAE(in_channels=c, image_size=(h, w), likelihood=likelihood, **kw)


def build_cvae(shape, num_classes, latent_dim, likelihood, **kw):
    if not num_classes:
        raise InputError("--model cvae needs labelled data (a data set with classes, or y in the .npz file).")
    return CVAE(_flat(shape), latent_dim, num_classes, likelihood=likelihood,
                image_shape=shape if len(shape) == 3 else None, **kw)


BUILDERS = {
    "vae": _mlp(VAE),
    "conv": _conv(ConvVAE, "conv"),
    "cvae": build_cvae,
    "flow": _mlp(FlowVAE),
    "conv-flow": _conv(ConvFlowVAE, "conv-flow"),
    "betatc": _mlp(BetaTCVAE),
    "vqvae": build_vqvae,
    "hvae": build_hvae,
}


def build_model(kind: str, data_shape, num_classes=None, latent_dim: int = 20, likelihood: str = "bernoulli", **kw):
    """A fresh model of family `kind` for examples of `data_shape` ((C, H, W) or (D,))."""
    if kind not in BUILDERS:
        raise InputError(f"Unknown model {kind!r}; choose one of {', '.join(BUILDERS)}.")
    return BUILDERS[kind](tuple(data_shape), num_classes, latent_dim, likelihood, **kw)
