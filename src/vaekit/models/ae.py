"""The plain autoencoder of the chapter's motivation (28.1): x -> z -> x, no distribution on z.

It is trained on reconstruction alone, so nothing makes its codes fill any region in particular:
decoding codes drawn from N(0, I), as `sample` does, lands where the decoder was never trained.
That is the chapter's point ("a plain autoencoder cannot generate"), and `benchmarks/` measures it
beside the VAE. It has no posterior density, so no ELBO or log p(x); reconstruction metrics only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..capabilities import Capabilities
from ..errors import InputError
from ..nets import mlp
from ..objectives import StepOutput
from .base import BaseVAE
from .core import FlatShape
from .registry import register
from .vae import VAEConfig


@dataclass
class AutoencoderConfig(VAEConfig):
    """The MLP VAE's fields: input_dim, latent_dim, hidden_dims, likelihood (the reconstruction
    loss: 'bernoulli' is cross-entropy, 'gaussian' squared error), sigma, image_shape."""


@register(summary="plain autoencoder, the chapter's baseline that cannot generate", tiny={"hidden_dims": (32,)})
class Autoencoder(FlatShape, BaseVAE):
    """Autoencoder(input_dim, latent_dim): the VAE's MLP with a deterministic code and no KL."""

    model_type = "ae"
    config_class = AutoencoderConfig
    capabilities = Capabilities(posterior="point", likelihood=False)

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: AutoencoderConfig | None = None, **kwargs):
        config = config or AutoencoderConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config)
        self.encoder = mlp([config.input_dim, *config.hidden_dims])
        self.fc_code = nn.Linear(config.hidden_dims[-1] if config.hidden_dims else config.input_dim, config.latent_dim)
        dec_dims = [config.latent_dim, *config.hidden_dims[::-1], self.lik.params_per_value * config.input_dim]
        self.decoder = mlp(dec_dims, final_activation=False)


    def encode(self, x, y=None):
        """(z, None): the code of x, (B, latent_dim), and no variance (a point, not a distribution)."""
        x, single = self._batch(x)
        z = self.fc_code(self.encoder(x)).to(self.fc_code.weight.dtype)
        return (z[0], None) if single else (z, None)

    def forward(self, x, y=None):
        """The chapter's autoencoder: the reconstruction decode(encode(x))."""
        return self.decode(self.encode(x)[0])

    def loss(self, x, y=None, beta: float = 1.0, free_bits: float = 0.0, target=None) -> StepOutput:
        """-log p(x|z) at z = encode(x), batch mean: the reconstruction loss alone. There is no KL
        for `beta` or `free_bits` to act on; `target` scores a denoising autoencoder."""
        x = self.as_batch(x)
        target = x if target is None else self.as_batch(target)
        rec = self.likelihood(self.encode(x)[0]).log_prob(target)  # (B,)
        return StepOutput((-rec).mean(), {"reconstruction": -rec})

    def posterior(self, x, y=None):
        raise InputError("A plain autoencoder has a code, not a distribution q(z|x): there is no ELBO or "
                         "log p(x) to compute; use encode(x) and reconstruct(x), or train a VAE.")

    def draws(self, x, y, k: int, noise=None):
        self.posterior(x, y)
        yield from ()

    def extra_repr(self) -> str:
        return f"likelihood={self.lik.name}, latent_dim={self.latent_dim} (deterministic)"
