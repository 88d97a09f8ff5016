"""Model families, each registered under its `model_type` for saving and loading."""

from .base import MODELS, BaseVAE
from .betatc import BetaTCVAE, BetaTCVAEConfig
from .conv import ConvVAE, ConvVAEConfig
from .cvae import CVAE, CVAEConfig
from .flow import ConvFlowVAE, ConvFlowVAEConfig, FlowVAE, FlowVAEConfig
from .hvae import HierarchicalVAE, HierarchicalVAEConfig
from .pixelcnn import PixelCNN
from .vae import VAE, VAEConfig
from .vqvae import VQVAE, VQVAEConfig, train_prior

__all__ = [
    "MODELS", "BaseVAE", "VAE", "VAEConfig", "ConvVAE", "ConvVAEConfig", "CVAE", "CVAEConfig",
    "FlowVAE", "FlowVAEConfig", "ConvFlowVAE", "ConvFlowVAEConfig", "BetaTCVAE", "BetaTCVAEConfig",
    "VQVAE", "VQVAEConfig", "PixelCNN", "train_prior", "HierarchicalVAE", "HierarchicalVAEConfig",
]
