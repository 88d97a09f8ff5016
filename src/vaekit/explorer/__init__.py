"""The latent-space explorer: `vaekit explore RUN` serves a page to move through a model's latent space."""

from .model_view import ModelView
from .server import serve

__all__ = ["ModelView", "serve"]
