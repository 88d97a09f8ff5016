"""Training objectives: the chapter's `vae_loss`, the step output, KL warm-up and free bits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import InputError
from .distributions import gaussian_kl_per_dim  # noqa: F401  (re-exported: the KL lives with the Gaussians)


@dataclass
class StepOutput:
    """What one training step returns: the scalar `loss` the optimizer minimises, named
    per-example terms (each of shape (B,)) for logs: e.g. `reconstruction`, `kl`, `elbo`, and,
    where `loss` is a mean over the batch, the per-example values (B,) it is the mean of
    (`per_example`, what `TrainConfig.trim` trims)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    per_example: torch.Tensor | None = None

    def trimmed(self, share: float) -> "StepOutput":
        """The same step with the `share` of its examples of largest loss left out of `loss`."""
        if self.per_example is None:
            raise InputError("trim needs a model whose loss is a mean over examples; this one's is not.")
        keep = max(1, math.ceil((1 - share) * len(self.per_example)))
        return StepOutput(torch.topk(self.per_example, keep, largest=False).values.mean(), self.terms, self.per_example)


def vae_loss(x_recon, x, mu, logvar, beta: float = 1.0):
    """The chapter's loss: summed binary cross-entropy plus beta times the closed-form Gaussian KL.

    `x_recon` holds probabilities in [0, 1] (what `model(x)` returns for a Bernoulli decoder).
    `x` may be images or flat vectors of the same number of values.
    """
    x = x.reshape(x_recon.shape)
    recon_loss = F.binary_cross_entropy(x_recon, x, reduction="sum")
    kl_div = gaussian_kl_per_dim(mu, logvar).sum()
    return recon_loss + beta * kl_div


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-example KL where each latent dimension's batch-mean KL is floored at `free_bits` nats
    (Kingma et al. 2016), so the optimizer gains nothing from pushing a unit below it.

    kl_per_dim: (B, L). Returns (B,) whose mean equals sum_d max(free_bits, mean_b kl[b, d]).
    """
    if free_bits <= 0:
        return kl_per_dim.sum(-1)
    mean_per_dim = kl_per_dim.mean(0, keepdim=True)  # (1, L)
    floor = (free_bits - mean_per_dim).clamp(min=0)  # extra nats charged to units below the floor
    return (kl_per_dim + floor).sum(-1)


@dataclass
class KLWarmup:
    """beta(step) rising linearly from `start` to `beta` over `steps` optimizer steps (0: constant)."""

    beta: float = 1.0
    steps: int = 0
    start: float = 0.0

    def __call__(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return self.beta
        return self.start + (self.beta - self.start) * step / self.steps


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) sum_i exp(a_i) along `dim`, computed stably."""
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_i w_i from log-weights of shape (k, B); shape (B,). k=1 is the ELBO."""
    return log_mean_exp(log_w, 0)


def iwae_loss(model, x, y=None, k: int = 5) -> StepOutput:
    """Negative importance-weighted bound (Burda et al. 2016) with k samples, batch-averaged."""
    bound = iwae_bound(model.log_weights(x, y, k))
    return StepOutput(-bound.mean(), {"iwae": bound})
