"""The shared VAE: prior, posterior and likelihood as distributions; one ELBO, IWAE weights, sampling.

A model family builds its networks and says what shape its data has. What differs between
families is said through a few hooks, and the objectives are written once on top of them:

    draws(x, y, k)      k reparameterised samples z ~ q(z|x) with log q(z|x)       (Draw)
    log_px(draw, x, y)  log p(x|z) of each sample                                (k, B)
    log_prior(draw)     log p(z) of each sample                                  (k, B)
    kl_units(draw)      KL(q || p) split into the units free bits floor          (..., U)
    penalty(...)        what the loss charges for the KL (beta-TCVAE splits it)

    loss        = mean_b [ beta * penalty - log p(x|z) ]           one sample per example
    elbo        = mean_k [ log p(x|z_k) - KL ]                      analytic KL where there is one
    log_weights = log p(x|z_k) + log p(z_k) - log q(z_k|x)         for the importance-sampled log p(x)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Distribution

from ..capabilities import Capabilities
from ..distributions import MIN_SIGMA, DiagonalGaussian, StandardNormal, make_likelihood
from ..errors import InputError
from ..objectives import StepOutput, free_bits_kl
from .core import ImageShape, Model, inference, trusted_inputs
from .registry import register

__all__ = ["BaseVAE", "Draw", "ImageShape", "register"]


@dataclass
class Draw:
    """k reparameterised samples from q(z|x) for a batch of B examples, and what came with them."""

    z: torch.Tensor  # (k, B, L): codes as `decode` takes them (hierarchical: the joint code)
    log_q: torch.Tensor  # (k, B): log q(z|x) of each code
    q: Distribution | None = None  # q(z|x) with batch shape (B,), where the model has one object for it
    params: torch.Tensor | None = None  # (k * B, ...): decoder output, where the posterior pass computed it
    layers: list | None = None  # hierarchical models: the (q_i, p_i, z_i) of every latent group


class BaseVAE(Model):
    """A VAE with a diagonal Gaussian posterior, a N(0, I) prior and a chosen likelihood."""

    capabilities = Capabilities()
    fitted_prior = None  # a prior fitted to the codes (vaekit.priors) that samples come from; see use_prior

    def __init__(self, config):
        super().__init__(config)
        self.lik = make_likelihood(config.likelihood, getattr(config, "sigma", 1.0),
                                   getattr(config, "min_sigma", MIN_SIGMA))
        self.latent_prior: nn.Module | None = None  # None: p(z) = N(0, I); see set_prior

    # ---- what a family defines -------------------------------------------------------------
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

    def set_dataset_size(self, n: int) -> None:
        """Told the number of training examples before training (families that need it override)."""

    # ---- the chapter's API -----------------------------------------------------------------
    def encode(self, x, y=None):
        """(mu, logvar) of q(z|x), each (B, latent_dim). A single unbatched example gives (latent_dim,)."""
        x, single = self._batch(x)
        _, mu, logvar = self._encoder_outputs(x, y)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def _encoder_outputs(self, x, y):
        """(h, mu, logvar) for a batch: the encoder's hidden state and the posterior's parameters."""
        h = self.encoder(self.encoder_input(x, self._labels(y, x)))
        dtype = self.fc_mu.weight.dtype  # the weights' precision (fp32) even under bf16 autocast
        return h, self.fc_mu(h).to(dtype), self.fc_logvar(h).to(dtype)

    def reparameterize(self, mu, logvar):
        """z = mu + sigma * eps with eps ~ N(0, I), differentiable in mu and logvar."""
        return DiagonalGaussian(mu, logvar).rsample()

    def decode(self, z, y=None):
        """Mean of p(x|z) in data space (probabilities for a Bernoulli likelihood)."""
        single = z.dim() == 1
        z = z.unsqueeze(0) if single else z
        out = self.lik.mean(self.decoder_params(z, self._labels(y, z)), len(self.data_shape))
        return out[0] if single else out

    def forward(self, x, y=None):
        """The chapter's forward pass: (x_recon, mu, logvar) with one reparameterized sample.

        mu and logvar are the (base) Gaussian's, as `encode` returns them."""
        x, single = self._batch(x)
        q = self.posterior(x, y)
        out = (self.decode(q.rsample(), y), q.mu, q.logvar)
        return tuple(t[0] for t in out) if single else out

    # ---- distributions ---------------------------------------------------------------------
    def prior(self) -> Distribution:
        """p(z) over latent_dim: N(0, I), or the component given to `set_prior`. Every sampler,
        bound and latent tool goes through this method."""
        if self.latent_prior is None:
            return StandardNormal((self.latent_dim,), self._anchor())
        return self.latent_prior()

    def set_prior(self, prior: nn.Module | None) -> None:
        """Swap p(z) for `prior`, a module whose call returns a Distribution with event shape
        (latent_dim,) (e.g. a prior fitted to the aggregate posterior); None restores N(0, I).
        The KL then becomes a Monte Carlo estimate, log q(z|x) - log p(z)."""
        self.latent_prior = prior

    def use_prior(self, prior) -> None:
        """Draw samples from `prior`, a prior fitted to this model's codes (`vaekit.priors`), instead
        of p(z); None: from p(z) again. Bounds and likelihoods keep p(z): a fitted prior changes
        what is generated, not the trained model. Saved with the model (priors/ in its folder)."""
        if prior is not None and prior.latent_dim != self.latent_dim:
            raise InputError(f"This prior is over codes of {prior.latent_dim} values, but the model's codes have "
                             f"{self.latent_dim}; fit the prior to this model.")
        if prior is not None and prior.conditional and not self.conditional:
            raise InputError("This prior takes class labels, but the model does not; fit the prior to this model.")
        object.__setattr__(self, "fitted_prior", prior)  # a plain attribute: not in state_dict or optimizers

    def posterior(self, x, y=None) -> Distribution:
        """q(z|x): a diagonal Gaussian with batch shape (B,) and event shape (latent_dim,)."""
        return DiagonalGaussian(*self.encode(self.as_batch(x), y))

    def likelihood(self, z, y=None) -> Distribution:
        """p(x|z) with batch shape z.shape[:-1] and event shape `data_shape`."""
        lead = z.shape[:-1]
        params = self.decoder_params(z.reshape(-1, z.shape[-1]), self._labels(y, z, lead))
        params = params.to(self._anchor().dtype)  # likelihoods in the weights' precision, not autocast's
        params = params.reshape(*lead, *params.shape[1:])  # (..., P*C, H, W) or (..., P*D)
        return self.lik(params, len(self.data_shape))

    # ---- the hooks the objectives are written on ---------------------------------------------
    def draws(self, x, y, k: int, noise=None):
        """Yield Draws that together hold k posterior samples per example (one Draw here).

        `noise` (k, B or 1, L): the standard-normal draws to reparameterise instead of fresh ones
        (common random numbers, e.g. the same for every example)."""
        q = self.posterior(x, y)
        z, log_q = q.rsample_with_log_prob((k,), noise=noise)  # (k, B, L), (k, B)
        yield Draw(z, log_q, q)

    def log_px(self, draw: Draw, x, y=None) -> torch.Tensor:
        """log p(x|z) for each sample of the draw, (k, B)."""
        return self.likelihood(draw.z, y).log_prob(x)

    def log_prior(self, draw: Draw) -> torch.Tensor:
        """log p(z) for each sample of the draw, (k, B)."""
        return self.prior().log_prob(draw.z)

    def kl_units(self, draw: Draw) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per free-bits unit, summing to the KL: in closed form per dimension,
        (B, L), for a diagonal Gaussian q and the N(0, I) prior; otherwise the single-sample Monte
        Carlo estimate log q(z|x) - log p(z) as one unit, (k, B, 1)."""
        if isinstance(draw.q, DiagonalGaussian) and self.latent_prior is None:  # q Gaussian, p = N(0, I)
            return draw.q.kl_per_dim()
        return (draw.log_q - self.log_prior(draw)).unsqueeze(-1)

    def penalty(self, draw: Draw, units: torch.Tensor, free_bits: float):
        """(what the loss charges for the KL (B,), extra per-example terms) from the KL units (B, U).

        Free bits (Kingma et al. 2016) floor each unit's batch-mean KL at `free_bits` nats per
        latent dimension it covers: a KL that does not split (one unit) covers all latent_dim."""
        if free_bits > 0:
            per_unit = self.latent_dim if units.shape[-1] == 1 else 1
            return free_bits_kl(units, free_bits * per_unit), {}
        return units.sum(-1), {}

    def kl(self, draw: Draw) -> torch.Tensor:
        """The KL estimate of each sample of the draw ((B,) when it does not depend on the sample)."""
        return self.kl_units(draw).sum(-1)

    # ---- objectives ------------------------------------------------------------------------
    def loss(self, x, y=None, beta: float = 1.0, free_bits: float = 0.0, target=None) -> StepOutput:
        """Negative ELBO (beta-weighted KL, optional free bits) averaged over the batch.

        With `target` (e.g. clean images while x is corrupted) the decoder is scored on the target:
        the objective of a denoising VAE. Terms per example: reconstruction, kl, elbo (+ the family's).
        """
        x = self.as_batch(x)  # checked here, once
        target = x if target is None else self.as_batch(target)
        with trusted_inputs(self):
            draw = next(iter(self.draws(x, y, 1)))
            rec = self.log_px(draw, target, y)[0]  # (B,)
            units = self.kl_units(draw).reshape(x.shape[0], -1)  # (B, U)
            kl = units.sum(-1)
            charged, extra = self.penalty(draw, units, free_bits)
        per_example = beta * charged - rec  # (B,)
        return StepOutput(per_example.mean(), {"reconstruction": -rec, "kl": kl, "elbo": rec - kl, **extra}, per_example)

    def elbo(self, x, y=None, n_samples: int = 1, noise=None) -> torch.Tensor:
        """Per-example ELBO (nats), averaged over `n_samples` posterior samples; shape (B,).
        (`noise`: given standard-normal draws, see `draws`.)"""
        x = self.as_batch(x)
        parts = [self.log_px(d, x, y) - self.kl(d) for d in self.draws(x, y, _count(n_samples, noise), noise)]  # each (n, B)
        return torch.cat(parts).mean(0)

    def sample_posterior(self, x, y=None, k: int = 1):
        """k reparameterized samples z ~ q(z|x) and their log-densities: ((k, B, L), (k, B))."""
        draws = list(self.draws(self.as_batch(x), y, k))
        return torch.cat([d.z for d in draws]), torch.cat([d.log_q for d in draws])

    def log_weights(self, x, y=None, k: int = 1, noise=None) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for k posterior samples; shape (k, B).
        (`noise`: given standard-normal draws, see `draws`.)"""
        x = self.as_batch(x)
        draws = self.draws(x, y, _count(k, noise), noise)
        return torch.cat([self.log_px(d, x, y) + self.log_prior(d) - d.log_q for d in draws])

    def log_likelihood(self, x, y=None, k: int = 1000, chunk: int | None = None, seed: int = 0,
                       precision: str = "fp32") -> torch.Tensor:
        """Importance-sampled log p(x) (Burda et al.) with k samples; shape (B,), float64.

        The same estimator, seeding and numbers as `vaekit.evaluate(model, x, k=k, seed=seed)`."""
        from ..importance import importance_log_likelihood

        x = self.check_input(x)
        with inference(self), trusted_inputs(self):
            return importance_log_likelihood(self, x, y, k=k, chunk=chunk, seed=seed, precision=precision)[0]

    def reconstruct(self, x, y=None) -> torch.Tensor:
        """decode(posterior mean): the model's deterministic reconstruction of x."""
        return self.decode(self.encode(x, y)[0], y)

    def sample_prior(self, n: int, temperature: float = 1.0, y=None) -> torch.Tensor:
        """n codes (n, latent_dim) from the fitted prior if there is one (labels y for a conditional
        one), else z = m + temperature * (z_p - m), z_p ~ p(z), m the prior mean."""
        if self.fitted_prior is not None:
            anchor = self._anchor()
            prior = self.fitted_prior.to(anchor.device)
            y = torch.as_tensor(y, device=anchor.device) if y is not None and prior.conditional else None
            return prior.sample(n, y=y, temperature=temperature).to(anchor.dtype)
        prior = self.prior()
        z = prior.sample((n,))
        return z if temperature == 1.0 else prior.mean + temperature * (z - prior.mean)

    @torch.no_grad()
    def sample(self, n: int, y=None, temperature: float = 1.0) -> torch.Tensor:
        """n new examples: decode codes from the fitted prior or p(z), their noise scaled by
        `temperature` (below 1: more typical, less varied samples; see `sample_prior`). No
        gradient; `decode` is the differentiable path."""
        return self.decode(self.sample_prior(n, temperature, y), y)

    def _labels(self, y, like, lead=None):
        return y

    def save_pretrained(self, folder) -> None:
        """Write `config.json` and `model.safetensors` into `folder`, atomically."""
        if self.latent_prior is not None:
            raise InputError("This model has a swapped-in prior (set_prior), which config.json cannot describe "
                             "yet; restore the N(0, I) prior with set_prior(None) before saving.")
        super().save_pretrained(folder)

    def extra_repr(self) -> str:
        return f"likelihood={self.lik.name}, latent_dim={self.latent_dim}"


def _count(k: int, noise) -> int:
    """The number of samples: k, or the leading size of given noise."""
    return k if noise is None else noise.shape[0]
