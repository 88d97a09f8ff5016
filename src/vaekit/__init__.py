"""vaekit: variational autoencoders you can train, measure honestly, sample from and use."""

from .version import __version__

from .errors import InputError
from .evaluate import evaluate
from .io import save_pretrained
from .loading import load
from .models import (
    CVAE, VAE, VQVAE, Autoencoder, BaseVAE, BetaTCVAE, ConvFlowVAE, ConvVAE, FlowVAE, HierarchicalVAE, train_prior,
)
from .quantize import VectorQuantizer
from .train import Trainer, TrainConfig
from .objectives import KLWarmup, StepOutput, vae_loss

_APPLICATIONS = ("detect_anomaly", "AnomalyDetector", "augment", "denoise", "psnr")


def __getattr__(name):
    """The applications on first use (see vaekit.applications: they import scikit-learn)."""
    if name in _APPLICATIONS:
        from . import applications

        return getattr(applications, name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")


__all__ = [
    "__version__", "Autoencoder", "VAE", "ConvVAE", "CVAE", "BaseVAE", "FlowVAE", "ConvFlowVAE", "BetaTCVAE", "VQVAE", "HierarchicalVAE",
    "VectorQuantizer", "train_prior", "Trainer", "TrainConfig", "vae_loss", "StepOutput", "KLWarmup",
    "detect_anomaly", "AnomalyDetector", "augment", "denoise", "psnr", "evaluate", "load", "save_pretrained", "InputError",
]
