"""The chapter's convolutional VAE, for images of any size and channel count."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..nets import ConvDecoder, ConvEncoder
from .base import BaseVAE
from .core import ImageShape
from .registry import register


@dataclass
class ConvVAEConfig:
    latent_dim: int = 20  # dimensions of z
    in_channels: int = 1  # image channels
    image_size: tuple[int, int] = (28, 28)  # (H, W); an int means square
    channels: tuple[int, ...] = (32, 64)  # channels of the stride-2 convolutions
    fc_dim: int = 256  # width of the layer between the convolutions and (mu, logvar)
    likelihood: str = "bernoulli"  # p(x|z): 'bernoulli', 'gaussian' or 'gaussian-learned'
    sigma: float = 1.0  # standard deviation of a fixed-variance Gaussian likelihood

    def __post_init__(self):
        size = self.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.channels = tuple(self.channels)


@register(summary="convolutional", data="image", tiny={"channels": (8, 16), "fc_dim": 32})
class ConvVAE(ImageShape, BaseVAE):
    """ConvVAE(latent_dim=20): Conv(32)-Conv(64)-FC(256) encoder and its transposed mirror."""

    model_type = "conv"
    config_class = ConvVAEConfig

    def __init__(self, latent_dim: int = 20, config: ConvVAEConfig | None = None, **kwargs):
        config = config or ConvVAEConfig(latent_dim=latent_dim, **kwargs)
        super().__init__(config)
        self.encoder = ConvEncoder(config.in_channels, config.image_size, config.channels, config.fc_dim)
        self.fc_mu = nn.Linear(config.fc_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.fc_dim, config.latent_dim)
        out_channels = self.lik.params_per_value * config.in_channels
        self.decoder = ConvDecoder(config.latent_dim, out_channels, config.image_size, config.channels)

