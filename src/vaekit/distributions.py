"""Likelihoods p(x|z), the diagonal Gaussian posterior q(z|x) and the N(0, I) prior, as torch.distributions.

A likelihood turns the decoder's raw output (logits or parameters) into a distribution over x.
Its choice *is* the reconstruction loss: Bernoulli gives binary cross-entropy from logits,
a Gaussian gives squared error (fixed variance) or a full Gaussian log-density (learned variance).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, register_kl

from .errors import InputError
from .precision import full_precision

MIN_SIGMA = math.exp(-6.0)  # a learned Gaussian's smallest standard deviation unless told


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each latent dimension, same shape as mu."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


class DiagonalGaussian(Independent):
    """q(z|x) = N(mu, diag(exp(logvar))) with the last dimension as the event.

    `rsample` is the reparameterisation z = mu + exp(logvar / 2) * eps, eps ~ N(0, I);
    `mu` and `logvar` are kept as given (the encoder's outputs).
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar
        # no argument validation: it would synchronise with the device at every training step
        super().__init__(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1, validate_args=False)

    def rsample_with_log_prob(self, sample_shape=torch.Size(), noise=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z)) for reparameterised samples z of shape sample_shape + (B, L); with `noise`
        (standard-normal draws broadcastable to (..., B, L)) z = mu + sigma * noise instead."""
        z = self.rsample(sample_shape) if noise is None else self.mu + self.stddev * noise
        return z, self.log_prob(z)

    def kl_per_dim(self) -> torch.Tensor:
        """KL to N(0, I) of each latent dimension in closed form, (B, L)."""
        return gaussian_kl_per_dim(self.mu, self.logvar)


class StandardNormal(Independent):
    """p(z) = N(0, I) over the last dimension of `shape`, on the device and dtype of `like`."""

    def __init__(self, shape: tuple[int, ...], like: torch.Tensor):
        zeros = like.new_zeros(shape)
        super().__init__(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)


@register_kl(DiagonalGaussian, StandardNormal)
def _kl_diagonal_standard(q: DiagonalGaussian, p: StandardNormal) -> torch.Tensor:
    """KL(q || N(0, I)) in closed form, (B,): the one place the Gaussian KL is written."""
    return q.kl_per_dim().sum(-1)


def diagonal_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> DiagonalGaussian:
    """N(mu, diag(exp(logvar))) with the last dimension as the event."""
    return DiagonalGaussian(mu, logvar)


def standard_normal(shape: tuple[int, ...], like: torch.Tensor) -> StandardNormal:
    """N(0, I) over the last dimension of `shape`, on the device and dtype of `like`."""
    return StandardNormal(shape, like)


class Likelihood(nn.Module):
    """Maps decoder output of shape (B, params_per_value * D...) to a distribution over x."""

    name: str = ""
    params_per_value: int = 1  # decoder channels needed per data value
    factorised: bool = True  # False: each value also depends on the values before it (autoregressive):
    #                          no per-value density, and `mean` draws, so no graph can trace it

    def forward(self, params: torch.Tensor, event_dims: int) -> Distribution:
        raise NotImplementedError

    def __call__(self, params: torch.Tensor, event_dims: int) -> Distribution:
        """The distribution, in float32 even when the decoder ran under bf16/fp16 autocast."""
        return super().__call__(full_precision(params), event_dims)

    def mean(self, params: torch.Tensor, event_dims: int) -> torch.Tensor:
        """The distribution's mean in data space: what `decode` returns."""
        raise NotImplementedError

    def constant_params(self, mean: torch.Tensor) -> torch.Tensor:
        """Flat decoder output (params_per_value * D,) whose distribution has mean `mean` (D,)."""
        return mean

    def check(self, x: torch.Tensor) -> None:
        """Raise InputError if x is outside this likelihood's support."""
        if not torch.isfinite(x).all():
            raise InputError("The input contains NaN or infinite values; clean or impute them first.")


class BernoulliLikelihood(Likelihood):
    """Pixels in [0, 1] scored by binary cross-entropy with logits (grey values allowed)."""

    name = "bernoulli"

    def forward(self, params, event_dims):
        # validate_args=False: grey-level targets in [0, 1] are scored by the same cross-entropy.
        return Independent(Bernoulli(logits=params, validate_args=False), event_dims)

    def mean(self, params, event_dims):
        return torch.sigmoid(params)

    def constant_params(self, mean):
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))  # pixels that are always 0 get logit(1e-3), not -inf

    def check(self, x):
        super().check(x)
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise InputError(
                f"Values must lie in [0, 1] for a Bernoulli likelihood, but range from {x.min().item():.3g} "
                f"to {x.max().item():.3g}; rescale the data or use a Gaussian likelihood (--likelihood gaussian)."
            )


class GaussianLikelihood(Likelihood):
    """N(mean, sigma^2) per value with a fixed sigma (sigma=1 is squared error up to constants)."""

    name = "gaussian"

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.log_sigma = math.log(sigma)

    def forward(self, params, event_dims):
        scale = torch.full_like(params, math.exp(self.log_sigma))
        return Independent(Normal(params, scale, validate_args=False), event_dims)

    def mean(self, params, event_dims):
        return params


class LearnedGaussianLikelihood(Likelihood):
    """N(mean, sigma^2) with a per-value sigma predicted by the decoder (two channels per value)."""

    name = "gaussian-learned"
    params_per_value = 2

    def __init__(self, min_sigma: float = MIN_SIGMA):
        super().__init__()
        self.min_log_sigma = math.log(min_sigma)  # keeps the density bounded on near-constant values

    def _split(self, params, event_dims):
        loc, log_sigma = params.chunk(2, dim=-event_dims)  # [means | log-sigmas] along the first event dim
        return loc, log_sigma.clamp(min=self.min_log_sigma)

    def forward(self, params, event_dims):
        loc, log_sigma = self._split(params, event_dims)
        return Independent(Normal(loc, log_sigma.exp(), validate_args=False), event_dims)

    def mean(self, params, event_dims):
        return self._split(params, event_dims)[0]

    def constant_params(self, mean):
        return torch.cat([mean, torch.zeros_like(mean)])  # [means | log-sigmas of 0]: sigma 1


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian-learned": LearnedGaussianLikelihood,
}


def make_likelihood(name: str, sigma: float = 1.0, min_sigma: float = MIN_SIGMA) -> Likelihood:
    """Build a likelihood by name: 'bernoulli', 'gaussian' (fixed `sigma`) or 'gaussian-learned'
    (sigma predicted by the decoder, at least `min_sigma`)."""
    if name not in LIKELIHOODS:
        raise InputError(f"Unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}.")
    if name == "gaussian":
        return GaussianLikelihood(sigma)
    return LearnedGaussianLikelihood(min_sigma) if name == "gaussian-learned" else LIKELIHOODS[name]()
