"""The shared VAE: prior, posterior and likelihood as distributions; ELBO, IWAE weights, sampling.

A model family only builds its networks (`encoder`, `fc_mu`, `fc_logvar`, `decoder`) and says
what shape its data has; everything probabilistic lives here once.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
from torch.distributions import Distribution, kl_divergence

from ..distributions import InputError, diagonal_gaussian, make_likelihood, standard_normal
from ..objectives import StepOutput, free_bits_kl, gaussian_kl_per_dim

MODELS: dict[str, type["BaseVAE"]] = {}


def register(cls):
    """Class decorator: make a model family loadable by its `model_type`."""
    MODELS[cls.model_type] = cls
    return cls


class ImageShape:
    """`data_shape` and `image_shape` of a model for images: (in_channels, *image_size) of its config."""

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.config.in_channels, *self.config.image_size)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.data_shape


class BaseVAE(nn.Module):
    """A VAE with a diagonal Gaussian posterior, a N(0, I) prior and a chosen likelihood."""

    model_type = ""
    config_class: type = None
    conditional = False  # True when encode/decode take a label y

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.lik = make_likelihood(config.likelihood, getattr(config, "sigma", 1.0))

    # ---- what a family defines -------------------------------------------------------------
    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one example as the networks take it, e.g. (784,) or (1, 28, 28)."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encoder_input(self, x, y=None):
        return x

    def decoder_input(self, z, y=None):
        return z

    def decoder_params(self, z, y=None) -> torch.Tensor:
        """Raw decoder output (logits or parameters) for latents z of shape (B, L)."""
        return self.decoder(self.decoder_input(z, y))

    # ---- the chapter's API -----------------------------------------------------------------
    def encode(self, x, y=None):
        """(mu, logvar) of q(z|x), each (B, latent_dim). A single unbatched example gives (latent_dim,)."""
        x, single = self._batch(x)
        h = self.encoder(self.encoder_input(x, self._labels(y, x)))
        dtype = self.fc_mu.weight.dtype  # the weights' precision (fp32) even under bf16 autocast
        mu, logvar = self.fc_mu(h).to(dtype), self.fc_logvar(h).to(dtype)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def reparameterize(self, mu, logvar):
        """z = mu + sigma * eps with eps ~ N(0, I), differentiable in mu and logvar."""
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z, y=None):
        """Mean of p(x|z) in data space (probabilities for a Bernoulli likelihood)."""
        single = z.dim() == 1
        z = z.unsqueeze(0) if single else z
        out = self.lik.mean(self.decoder_params(z, self._labels(y, z)), len(self.data_shape))
        return out[0] if single else out

    def forward(self, x, y=None):
        """The chapter's forward pass: (x_recon, mu, logvar) with one reparameterized sample."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar)
        return self.decode(z, y), mu, logvar

    # ---- distributions ---------------------------------------------------------------------
    def prior(self) -> Distribution:
        """p(z) = N(0, I) over latent_dim."""
        return standard_normal((self.latent_dim,), self._anchor())

    def posterior(self, x, y=None) -> Distribution:
        """q(z|x): a diagonal Gaussian with batch shape (B,) and event shape (latent_dim,)."""
        mu, logvar = self.encode(self.as_batch(x), y)
        return diagonal_gaussian(mu, logvar)

    def likelihood(self, z, y=None) -> Distribution:
        """p(x|z) with batch shape z.shape[:-1] and event shape `data_shape`."""
        lead = z.shape[:-1]
        params = self.decoder_params(z.reshape(-1, z.shape[-1]), self._labels(y, z, lead))
        params = params.to(self._anchor().dtype)  # likelihoods in the weights' precision, not autocast's
        params = params.reshape(*lead, *params.shape[1:])  # (..., P*C, H, W) or (..., P*D)
        return self.lik(params, len(self.data_shape))

    # ---- objectives ------------------------------------------------------------------------
    def loss(self, x, y=None, beta: float = 1.0, free_bits: float = 0.0, target=None) -> StepOutput:
        """Negative ELBO (beta-weighted KL, optional free bits) averaged over the batch.

        With `target` (e.g. clean images while x is corrupted) the decoder is scored on the target:
        the objective of a denoising VAE.
        """
        x = self.as_batch(x)
        target = x if target is None else self.as_batch(target)
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar)
        rec = self.likelihood(z, y).log_prob(target)  # (B,)
        kl_dims = gaussian_kl_per_dim(mu, logvar)  # (B, L)
        kl = kl_dims.sum(-1)
        kl_charged = free_bits_kl(kl_dims, free_bits) if free_bits > 0 else kl
        loss = (beta * kl_charged - rec).mean()
        return StepOutput(loss, {"reconstruction": -rec, "kl": kl, "elbo": rec - kl})

    def elbo(self, x, y=None, n_samples: int = 1) -> torch.Tensor:
        """Per-example ELBO (nats), averaged over `n_samples` posterior samples; shape (B,)."""
        x = self.as_batch(x)
        q = self.posterior(x, y)
        z = q.rsample((n_samples,))  # (S, B, L)
        rec = self.likelihood(z, y).log_prob(x).mean(0)
        return rec - kl_divergence(q, self.prior())

    def sample_posterior(self, x, y=None, k: int = 1):
        """k reparameterized samples z ~ q(z|x) and their log-densities: ((k, B, L), (k, B))."""
        q = self.posterior(x, y)
        z = q.rsample((k,))
        return z, q.log_prob(z)

    def log_weights(self, x, y=None, k: int = 1) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for k posterior samples; shape (k, B)."""
        x = self.as_batch(x)
        z, log_q = self.sample_posterior(x, y, k)  # (k, B, L), (k, B)
        return self.likelihood(z, y).log_prob(x) + self.prior().log_prob(z) - log_q

    def log_likelihood(self, x, y=None, k: int = 1000, chunk: int = 500) -> torch.Tensor:
        """Importance-sampled log p(x) (Burda et al.) with k samples, in chunks; shape (B,), float64."""
        parts = []
        for start in range(0, k, chunk):
            with torch.no_grad():
                lw = self.log_weights(x, y, min(chunk, k - start)).double()  # (chunk, B)
            parts.append(torch.logsumexp(lw, 0))
        return torch.logsumexp(torch.stack(parts), 0) - math.log(k)

    def reconstruct(self, x, y=None) -> torch.Tensor:
        """decode(posterior mean): the model's deterministic reconstruction of x."""
        return self.decode(self.encode(x, y)[0], y)

    @torch.no_grad()
    def sample(self, n: int, y=None, temperature: float = 1.0) -> torch.Tensor:
        """n new examples: decode z ~ p(z) = N(0, I), its noise scaled by `temperature` (below 1:
        more typical, less varied samples). No gradient; `decode` is the differentiable path."""
        z = self.prior().sample((n,)) * temperature
        return self.decode(z, y)

    # ---- input handling --------------------------------------------------------------------
    def as_batch(self, x) -> torch.Tensor:
        """x as a float batch of shape (B, *data_shape); accepts flat or image layouts."""
        return self._batch(x)[0]

    def check_input(self, x) -> torch.Tensor:
        """as_batch plus finiteness and likelihood-support checks; raises InputError."""
        x = self.as_batch(x)
        self.lik.check(x)
        return x

    def _batch(self, x):
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        shape, size = self.data_shape, math.prod(self.data_shape)
        x = x.to(self._anchor().dtype) if not torch.is_floating_point(x) else x
        if x.shape == shape or (x.dim() == 1 and x.numel() == size):
            return x.reshape(1, *shape), True
        if x.dim() >= 2 and math.prod(x.shape[1:]) == size:
            return x.reshape(x.shape[0], *shape), False
        raise InputError(
            f"Expected examples of shape {tuple(shape)} ({size} values each), got a tensor of shape "
            f"{tuple(x.shape)}; reshape the data or build the model for this size."
        )

    def _labels(self, y, like, lead=None):
        return y

    def _anchor(self) -> torch.Tensor:
        return next(self.parameters())

    # ---- saving ----------------------------------------------------------------------------
    def save_pretrained(self, folder) -> None:
        """Write `config.json` and `model.safetensors` into `folder`, atomically."""
        from ..io import save_pretrained

        save_pretrained(self, folder)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def extra_repr(self) -> str:
        return f"likelihood={self.lik.name}, latent_dim={self.latent_dim}"
