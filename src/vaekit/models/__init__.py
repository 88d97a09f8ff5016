"""Model families, each registered once (`registry.FAMILIES`) under its `model_type`."""

from .ae import Autoencoder, AutoencoderConfig
from .base import BaseVAE, Draw
from .betatc import BetaTCVAE, BetaTCVAEConfig
from .conv import ConvVAE, ConvVAEConfig
from .core import ImageShape, Model
from .cvae import CVAE, CVAEConfig
from .flow import ConvFlowVAE, ConvFlowVAEConfig, FlowVAE, FlowVAEConfig
from .hvae import HierarchicalVAE, HierarchicalVAEConfig
from .pixelcnn import PixelCNN
from .registry import FAMILIES, Family, Option, build_model, family
from .vae import VAE, VAEConfig
from .vqvae import VQVAE, VQVAEConfig, train_prior

__all__ = [
    "FAMILIES", "Family", "Option", "build_model", "family", "Model", "BaseVAE", "Draw", "ImageShape",
    "Autoencoder", "AutoencoderConfig", "VAE", "VAEConfig", "ConvVAE", "ConvVAEConfig", "CVAE", "CVAEConfig",
    "FlowVAE", "FlowVAEConfig", "ConvFlowVAE", "ConvFlowVAEConfig", "BetaTCVAE", "BetaTCVAEConfig",
    "VQVAE", "VQVAEConfig", "PixelCNN", "train_prior", "HierarchicalVAE", "HierarchicalVAEConfig",
]
