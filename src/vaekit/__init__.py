"""vaekit: variational autoencoders you can train, measure honestly, sample from and use."""

__version__ = "0.1.0"

from .applications import detect_anomaly
from .distributions import InputError
from .io import load, save_pretrained
from .models import CVAE, VAE, BaseVAE, ConvVAE
from .objectives import KLWarmup, StepOutput, vae_loss

__all__ = [
    "__version__", "VAE", "ConvVAE", "CVAE", "BaseVAE", "vae_loss", "StepOutput", "KLWarmup",
    "detect_anomaly", "load", "save_pretrained", "InputError",
]
