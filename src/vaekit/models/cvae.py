"""The chapter's conditional VAE: encoder and decoder both see the class label."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from .registry import register
from .vae import INIT_OPTION, VAE, VAEConfig


@dataclass
class CVAEConfig(VAEConfig):
    num_classes: int = 10  # labels are 0..num_classes-1 (or one-hot rows)
    hidden_dims: tuple[int, ...] = (256,)  # the chapter's CVAE has one hidden layer of 256


@register(summary="conditional on the class label", options=(INIT_OPTION,), tiny={"hidden_dims": (32,)})
class CVAE(VAE):
    """CVAE(input_dim, latent_dim, num_classes): q(z|x, y) and p(x|z, y), y one-hot or integer."""

    model_type = "cvae"
    config_class = CVAEConfig
    capabilities = VAE.capabilities.replace(conditional=True)

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, num_classes: int = 10,
                 config: CVAEConfig | None = None, **kwargs):
        config = config or CVAEConfig(input_dim=input_dim, latent_dim=latent_dim, num_classes=num_classes, **kwargs)
        super().__init__(config=config)

    def encoder_in_dim(self):
        return self.config.input_dim + self.config.num_classes

    def decoder_in_dim(self):
        return self.config.latent_dim + self.config.num_classes

    def encoder_input(self, x, y=None):
        return torch.cat([x, y], dim=1)

    def decoder_input(self, z, y=None):
        return torch.cat([z, y], dim=1)

    def _labels(self, y, like, lead=None):
        """y as float one-hot rows matching `like`'s batch, repeated over extra leading sample dims."""
        n = self.config.num_classes
        if y is None:
            raise InputError("This is a conditional model: pass the class labels y (integers or one-hot rows).")
        y = torch.as_tensor(y, device=like.device)
        if y.dim() == 0:
            y = y.reshape(1)
        if not torch.is_floating_point(y):
            if y.numel() and (y.min() < 0 or y.max() >= n):
                raise InputError(f"Labels must be integers in 0..{n - 1}, got values from {y.min().item()} to {y.max().item()}.")
            y = F.one_hot(y.long(), n)
        y = y.to(like.dtype).reshape(-1, n)  # (B, num_classes)
        batch = like.shape[0] if lead is None else lead[-1]
        if y.shape[0] == 1 and batch > 1:
            y = y.expand(batch, n)
        if y.shape[0] != batch:
            raise InputError(f"Got {y.shape[0]} labels for {batch} examples; pass one label per example.")
        if lead is not None and len(lead) > 1:
            y = y.expand(*lead, n).reshape(-1, n)  # labels repeated for each sample of z
        return y
