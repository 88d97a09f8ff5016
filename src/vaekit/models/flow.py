"""VAEs with a normalizing-flow posterior: z0 ~ N(mu, sigma), then z_K = f_K(...f_1(z0; h)...; h).

The flows (planar or IAF, see `vaekit.flows`) are amortized on the encoder's hidden state h, so
q(z_K|x) can be non-Gaussian and differ per example. Its density is exact by change of variables,

    log q(z_K | x) = log N(z0; mu, sigma) - sum_k log |det df_k/dz|,

but its KL to the prior has no closed form, so the loss uses the Monte Carlo estimate
log q(z_K|x) - log p(z_K) on the same sample that the decoder sees.

Only what differs from the shared Gaussian VAE is overridden (`FlowPosteriorMixin`): the
posterior, a `FlowPosterior` distribution whose samples come with their log-densities, and the
KL, a Monte Carlo estimate. `encode` still returns the base Gaussian's (mu, logvar).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..capabilities import Capabilities
from ..distributions import DiagonalGaussian
from ..errors import InputError
from ..flows import FLOWS, FlowPosterior, build_flows
from .registry import Option, register
from .conv import ConvVAE, ConvVAEConfig
from .vae import INIT_OPTION, VAE, VAEConfig


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
    Only `posterior` changes (the flowed q); the shared objectives then use the Monte Carlo KL
    log q(z_K|x) - log p(z_K), which free bits floor as one group of all latent dimensions.
    """

    capabilities = Capabilities(posterior="flow")

    def _build_flows(self):
        cfg = self.config
        context_dim = self.fc_mu.in_features if cfg.flow_context else 0  # width of h
        self.flows = build_flows(cfg.flow, cfg.flow_length, cfg.latent_dim, context_dim, cfg.flow_hidden)

    def posterior(self, x, y=None) -> FlowPosterior:
        """q(z_K|x): the base Gaussian pushed through the flows amortized on the encoder's h."""
        h, mu, logvar = self._encoder_outputs(self.as_batch(x), y)  # (B, H), (B, L), (B, L)
        return FlowPosterior(DiagonalGaussian(mu, logvar), self.flows, h)

    def extra_repr(self) -> str:
        cfg = self.config
        return f"{super().extra_repr()}, flow={cfg.flow} x {cfg.flow_length}"


FLOW_OPTIONS = (
    Option("--flow", "flow", str, "flow of the posterior (default iaf)", choices=tuple(FLOWS)),
    Option("--flow-length", "flow_length", int, "flow layers (default 4)"),
)
TINY_FLOW = {"flow_length": 2, "flow_hidden": 16}


@register(summary="flow posterior, IAF or planar", options=FLOW_OPTIONS + (INIT_OPTION,),
          tiny={"hidden_dims": (32,), **TINY_FLOW})
class FlowVAE(FlowPosteriorMixin, VAE):
    """FlowVAE(input_dim, latent_dim, flow='iaf', flow_length=4): the MLP VAE with a flow posterior."""

    model_type = "flow"
    config_class = FlowVAEConfig

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: FlowVAEConfig | None = None, **kwargs):
        config = config or FlowVAEConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config=config)
        self._build_flows()


@register(summary="convolutional, flow posterior", data="image", options=FLOW_OPTIONS,
          tiny={"channels": (8, 16), "fc_dim": 32, **TINY_FLOW})
class ConvFlowVAE(FlowPosteriorMixin, ConvVAE):
    """ConvFlowVAE(latent_dim, flow='iaf', flow_length=4): the ConvVAE with a flow posterior."""

    model_type = "conv-flow"
    config_class = ConvFlowVAEConfig

    def __init__(self, latent_dim: int = 20, config: ConvFlowVAEConfig | None = None, **kwargs):
        config = config or ConvFlowVAEConfig(latent_dim=latent_dim, **kwargs)
        super().__init__(config=config)
        self._build_flows()
