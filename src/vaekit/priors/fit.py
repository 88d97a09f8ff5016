"""Fitting a prior to a trained model's codes: the posterior means of its training data."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from ..errors import InputError
from ..models.core import inference
from .diffusion import LatentDiffusion, LatentDiffusionConfig
from .gmm import GaussianMixturePrior
from .store import check_kind

DIFFUSION_STEPS = 24000  # optimizer steps of the diffusion prior by default, whatever the data size
DIFFUSION_BATCH = 256
DIFFUSION_EMA = 0.9995  # the prior samples with a moving average of its weights over about 2000 steps
#  (MNIST codes of mnist-mlp, classifier FID by 50 DDIM steps, eps prediction: 0.72 at 12,000 steps without
#   the average, 0.65 with it, 0.51 at 24,000 steps with it; v prediction at 24,000: 0.42; benchmarks/RESULTS.md)


def model_codes(model, data, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(codes (N, latent_dim), labels or None): the posterior mean of each example of `data`
    (for a hierarchical VAE, of its top group), float32 on the CPU."""
    if model.capabilities.latent != "vector":
        raise InputError(f"A {model.model_type} model has discrete codes and samples through its own prior "
                         "(the VQ-VAE's PixelCNN); fitted priors are for continuous latents.")
    x = model.check_input(data.x)
    y = data.y if model.conditional else None
    if model.conditional and y is None:
        raise InputError("A conditional model's prior is fitted on labelled data; these data have no labels.")
    parts = []
    with inference(model):
        device = next(model.parameters()).device
        for i in range(0, len(x), batch_size):
            yb = y[i:i + batch_size].to(device) if y is not None else None
            parts.append(model.encode(x[i:i + batch_size].to(device), yb)[0].float().cpu())
    return torch.cat(parts), (y.long() if y is not None else None)


def fit_prior(model, data, kind: str = "gmm", components: int | None = None, steps: int = DIFFUSION_STEPS,
              seed: int = 0, precision: str = "auto", say=None, progress: bool = False):
    """Fit a prior of `kind` ('gmm' or 'diffusion') to the codes of `data` (a Dataset in the
    model's space), attach it to the model (`use_prior`) and return it.

    gmm: a full-covariance Gaussian mixture, `components` chosen by the BIC when None.
    diffusion: a LatentDiffusion trained by the Trainer for about `steps` optimizer steps
    (conditional on the class for a conditional model)."""
    check_kind(kind)
    if components is not None and (not isinstance(components, int) or components < 1):
        raise InputError(f"components must be a whole number of 1 or more (or None: chosen by BIC), not {components!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a whole number of 1 or more, not {steps!r}.")
    codes, y = model_codes(model, data)
    torch.manual_seed(seed)
    if kind == "gmm":
        prior = GaussianMixturePrior.fit(codes, components=components, seed=seed)
    else:
        config = LatentDiffusionConfig(latent_dim=codes.shape[1],
                                       num_classes=model.config.num_classes if y is not None else None)
        prior = train_diffusion(codes, y, config, steps, seed=seed, precision=precision, say=say, progress=progress)
    model.use_prior(prior)
    return prior


def train_diffusion(codes: torch.Tensor, y, config: LatentDiffusionConfig, steps: int = DIFFUSION_STEPS,
                    seed: int = 0, precision: str = "auto", say=None, progress: bool = False) -> LatentDiffusion:
    """A LatentDiffusion fitted to codes (N, L) (and labels y) by the Trainer, for about `steps`
    optimizer steps with a cosine learning-rate decay, keeping the moving average of its weights;
    on the CPU, in eval mode."""
    from ..train import TrainConfig, Trainer

    torch.manual_seed(seed)
    prior = LatentDiffusion(config)
    prior.standardize(codes)
    batch = min(DIFFUSION_BATCH, len(codes))
    epochs = max(1, math.ceil(steps / math.ceil(len(codes) / batch)))
    train = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, lr_schedule="cosine", seed=seed, ema=DIFFUSION_EMA,
                        progress=progress, precision=precision, device="auto")
    Trainer(prior, train, say=say, local=True).fit((codes, y))
    return prior.cpu().eval()


@contextmanager
def without_fitted_prior(model):
    """Inside, the model samples from its own p(z) (N(0, I)); its fitted prior is put back after."""
    fitted = model.fitted_prior
    model.use_prior(None)
    try:
        yield model
    finally:
        model.use_prior(fitted)
