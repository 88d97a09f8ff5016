"""Model families, each registered under its `model_type` for saving and loading."""

from .base import MODELS, BaseVAE
from .conv import ConvVAE, ConvVAEConfig
from .cvae import CVAE, CVAEConfig
from .vae import VAE, VAEConfig

__all__ = ["MODELS", "BaseVAE", "VAE", "VAEConfig", "ConvVAE", "ConvVAEConfig", "CVAE", "CVAEConfig"]
