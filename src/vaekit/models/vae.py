"""The chapter's fully connected VAE: x -> 512 -> 256 -> (mu, logvar) and z -> 256 -> 512 -> x."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn as nn

from ..distributions import MIN_SIGMA
from ..nets import mlp
from ..capabilities import Capabilities
from .base import BaseVAE
from .core import FlatShape
from .registry import register


@dataclass
class VAEConfig:
    input_dim: int = 784  # values per example (a flattened image or a table row)
    latent_dim: int = 20  # dimensions of z
    hidden_dims: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them
    likelihood: str = "bernoulli"  # p(x|z): 'bernoulli', 'gaussian' or 'gaussian-learned'
    sigma: float = 1.0  # standard deviation of a fixed-variance Gaussian likelihood
    min_sigma: float = MIN_SIGMA  # the smallest standard deviation a 'gaussian-learned' decoder may predict
    image_shape: tuple[int, ...] | None = None  # (C, H, W) for pictures of flat examples, if images

    added_fields: ClassVar[dict] = {"min_sigma": MIN_SIGMA}  # what models saved before these fields used

    def __post_init__(self):
        self.hidden_dims = tuple(self.hidden_dims)
        self.image_shape = tuple(self.image_shape) if self.image_shape else None


@register(summary="the chapter's MLP", tiny={"hidden_dims": (32,)})
class VAE(FlatShape, BaseVAE):
    """VAE(input_dim, latent_dim): the chapter's MLP VAE, with a choice of likelihood."""

    model_type = "vae"
    config_class = VAEConfig
    capabilities = Capabilities(mlp_decoder=True)

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: VAEConfig | None = None, **kwargs):
        config = config or VAEConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config)
        enc_dims = [self.encoder_in_dim(), *config.hidden_dims]
        self.encoder = mlp(enc_dims)
        self.fc_mu = nn.Linear(enc_dims[-1], config.latent_dim)
        self.fc_logvar = nn.Linear(enc_dims[-1], config.latent_dim)
        dec_dims = [self.decoder_in_dim(), *config.hidden_dims[::-1], self.lik.params_per_value * config.input_dim]
        self.decoder = mlp(dec_dims, final_activation=False)

    def encoder_in_dim(self) -> int:
        return self.config.input_dim

    def decoder_in_dim(self) -> int:
        return self.config.latent_dim
