"""VAEs with a normalizing-flow posterior: z0 ~ N(mu, sigma), then z_K = f_K(...f_1(z0; h)...; h).

The flows (planar or IAF, see `vaekit.flows`) are amortized on the encoder's hidden state h, so
q(z_K|x) can be non-Gaussian and differ per example. Its density is exact by change of variables,

    log q(z_K | x) = log N(z0; mu, sigma) - sum_k log |det df_k/dz|,

but its KL to the prior has no closed form, so the loss uses the Monte Carlo estimate
log q(z_K|x) - log p(z_K) on the same sample that the decoder sees.

Only what differs from the shared Gaussian VAE is overridden (`FlowPosteriorMixin`): the
posterior sample, the loss, the ELBO and the chapter's forward pass. `encode` still returns the
base Gaussian's (mu, logvar), and `posterior(x)` is that base Gaussian q0(z0|x); samples of
the flowed posterior and their log-densities come from `sample_posterior(x, y, k)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..distributions import InputError, diagonal_gaussian
from ..flows import FLOWS, build_flows
from ..objectives import StepOutput, free_bits_kl
from .base import register
from .conv import ConvVAE, ConvVAEConfig
from .vae import VAE, VAEConfig


@dataclass
class FlowOptions:
    """The flow fields shared by every flow-posterior config."""

    flow: str = "iaf"  # flow applied to q0's samples: 'iaf' (inverse autoregressive) or 'planar'
    flow_length: int = 4  # number of flow layers (0: a Gaussian posterior with a Monte Carlo KL)
    flow_hidden: int = 64  # width of each layer's own network (IAF's MADE; planar's amortizer, 0: linear)
    flow_context: bool = True  # amortize the flows on the encoder's hidden state h (False: shared parameters)

    def __post_init__(self):
        if self.flow not in FLOWS:
            raise InputError(f"Unknown flow {self.flow!r}; choose one of {', '.join(FLOWS)}.")
        if self.flow_length < 0:
            raise InputError(f"flow_length must be 0 or more, got {self.flow_length}.")
        if self.flow_hidden < (1 if self.flow == "iaf" else 0):
            raise InputError(f"flow_hidden={self.flow_hidden} is too small for a {self.flow!r} flow.")
        parent = getattr(super(), "__post_init__", None)  # the model config's own checks
        if parent is not None:
            parent()


@dataclass
class FlowVAEConfig(FlowOptions, VAEConfig):
    """The MLP VAE's config plus the flow fields."""


@dataclass
class ConvFlowVAEConfig(FlowOptions, ConvVAEConfig):
    """The ConvVAE's config plus the flow fields."""


class FlowPosteriorMixin:
    """Turns a Gaussian-posterior VAE family into one with a flow posterior.

    Put it before the family in the bases and call `_build_flows()` after the family's __init__.
    """

    def _build_flows(self):
        cfg = self.config
        context_dim = self.fc_mu.in_features if cfg.flow_context else 0  # width of h
        self.flows = build_flows(cfg.flow, cfg.flow_length, cfg.latent_dim, context_dim, cfg.flow_hidden)

    def _flowed_samples(self, x, y, k: int):
        """k samples z_K ~ q(z_K|x) with log q(z_K|x), plus the base (mu, logvar).

        Returns z (k, B, L), log_q (k, B), mu (B, L), logvar (B, L).
        """
        x = self.as_batch(x)
        h = self.encoder(self.encoder_input(x, self._labels(y, x)))  # (B, H)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        q0 = diagonal_gaussian(mu, logvar)
        z0 = q0.rsample((k,))  # (k, B, L)
        z, log_abs_det = self.flows(z0, h)  # h (B, H) broadcasts over the k samples
        return z, q0.log_prob(z0) - log_abs_det, mu, logvar

    def sample_posterior(self, x, y=None, k: int = 1):
        """k reparameterized samples of the flowed posterior and their log-densities: ((k, B, L), (k, B))."""
        z, log_q, _, _ = self._flowed_samples(x, y, k)
        return z, log_q

    def forward(self, x, y=None):
        """The chapter's forward pass: (x_recon, mu, logvar), x_recon decoded from one flowed sample.

        mu and logvar are the base Gaussian's, as `encode` returns them.
        """
        xb, single = self._batch(x)
        z, _, mu, logvar = self._flowed_samples(xb, y, 1)
        x_recon = self.decode(z[0], y)  # (B, *data_shape)
        return (x_recon[0], mu[0], logvar[0]) if single else (x_recon, mu, logvar)

    def loss(self, x, y=None, beta: float = 1.0, free_bits: float = 0.0) -> StepOutput:
        """Negative ELBO with the single-sample Monte Carlo KL log q(z_K|x) - log p(z_K), averaged.

        `beta` weights the KL. The KL of a flow does not split into per-dimension parts, so free
        bits floor the batch-mean KL of the whole latent vector at `free_bits * latent_dim` nats
        (Kingma et al.'s free bits with all dimensions as one group).
        """
        x = self.as_batch(x)
        z, log_q, _, _ = self._flowed_samples(x, y, 1)
        z, log_q = z[0], log_q[0]  # (B, L), (B,)
        rec = self.likelihood(z, y).log_prob(x)  # (B,)
        kl = log_q - self.prior().log_prob(z)  # (B,)
        kl_charged = free_bits_kl(kl.unsqueeze(-1), free_bits * self.latent_dim) if free_bits > 0 else kl
        loss = (beta * kl_charged - rec).mean()
        return StepOutput(loss, {"reconstruction": -rec, "kl": kl, "elbo": rec - kl})

    def elbo(self, x, y=None, n_samples: int = 1) -> torch.Tensor:
        """Per-example ELBO (nats): the mean of `n_samples` log-weights log p(x, z_K) - log q(z_K|x); (B,)."""
        return self.log_weights(x, y, n_samples).mean(0)

    def extra_repr(self) -> str:
        cfg = self.config
        return f"{super().extra_repr()}, flow={cfg.flow} x {cfg.flow_length}"


@register
class FlowVAE(FlowPosteriorMixin, VAE):
    """FlowVAE(input_dim, latent_dim, flow='iaf', flow_length=4): the MLP VAE with a flow posterior."""

    model_type = "flow"
    config_class = FlowVAEConfig

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: FlowVAEConfig | None = None, **kwargs):
        config = config or FlowVAEConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config=config)
        self._build_flows()


@register
class ConvFlowVAE(FlowPosteriorMixin, ConvVAE):
    """ConvFlowVAE(latent_dim, flow='iaf', flow_length=4): the ConvVAE with a flow posterior."""

    model_type = "conv-flow"
    config_class = ConvFlowVAEConfig

    def __init__(self, latent_dim: int = 20, config: ConvFlowVAEConfig | None = None, **kwargs):
        config = config or ConvFlowVAEConfig(latent_dim=latent_dim, **kwargs)
        super().__init__(config=config)
        self._build_flows()
