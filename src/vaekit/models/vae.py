"""The chapter's fully connected VAE: x -> 512 -> 256 -> (mu, logvar) and z -> 256 -> 512 -> x."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..distributions import MIN_SIGMA
from ..errors import InputError
from ..nets import INITS, linear, mlp
from ..capabilities import Capabilities
from .base import BaseVAE
from .core import FlatShape
from .registry import Option, register

INIT_OPTION = Option(
    "--init", "init", str, "starting weights: torch (PyTorch's default, the default) or he (normal weights "
    "scaled for the ReLUs, zero biases and, in vaekit train, the output bias at the training data's mean; "
    "about 1.4 nats better after 5 MNIST epochs)", choices=INITS)


@dataclass
class VAEConfig:
    input_dim: int = 784  # values per example (a flattened image or a table row)
    latent_dim: int = 20  # dimensions of z
    hidden_dims: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them
    likelihood: str = "bernoulli"  # p(x|z): 'bernoulli', 'gaussian' or 'gaussian-learned'
    sigma: float = 1.0  # standard deviation of a fixed-variance Gaussian likelihood
    min_sigma: float = MIN_SIGMA  # the smallest standard deviation a 'gaussian-learned' decoder may predict
    image_shape: tuple[int, ...] | None = None  # (C, H, W) for pictures of flat examples, if images
    init: str = "torch"  # starting weights: "torch" (PyTorch's default) or "he" (nets.init_linear, data-mean output bias)

    added_fields: ClassVar[dict] = {"min_sigma": MIN_SIGMA, "init": "torch"}  # what models saved before these fields used

    def __post_init__(self):
        if self.init not in INITS:
            raise InputError(f"Unknown init {self.init!r}; choose one of {', '.join(INITS)}.")
        self.hidden_dims = tuple(self.hidden_dims)
        self.image_shape = tuple(self.image_shape) if self.image_shape else None


@register(summary="the chapter's MLP", options=(INIT_OPTION,), tiny={"hidden_dims": (32,)})
class VAE(FlatShape, BaseVAE):
    """VAE(input_dim, latent_dim): the chapter's MLP VAE, with a choice of likelihood."""

    model_type = "vae"
    config_class = VAEConfig
    capabilities = Capabilities(mlp_decoder=True)

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: VAEConfig | None = None, **kwargs):
        config = config or VAEConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config)
        enc_dims = [self.encoder_in_dim(), *config.hidden_dims]
        self.encoder = mlp(enc_dims, init=config.init)
        self.fc_mu = linear(enc_dims[-1], config.latent_dim, init=config.init)
        self.fc_logvar = linear(enc_dims[-1], config.latent_dim, init=config.init)
        dec_dims = [self.decoder_in_dim(), *config.hidden_dims[::-1], self.lik.params_per_value * config.input_dim]
        self.decoder = mlp(dec_dims, final_activation=False, init=config.init)

    def output_bias(self):
        return self.decoder[-1].bias if self.config.init == "he" else None

    def encoder_in_dim(self) -> int:
        return self.config.input_dim

    def decoder_in_dim(self) -> int:
        return self.config.latent_dim
