"""Imports every family file, so that each registers itself (see `registry`)."""

from . import ae, betatc, conv, cvae, flow, hvae, vae, vqvae  # noqa: F401
