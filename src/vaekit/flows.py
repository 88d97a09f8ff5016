"""Normalizing flows on the latent z: planar flows and inverse autoregressive flows (IAF).

Every layer maps z of shape (..., L) to `(z_new, log_abs_det)`, where log_abs_det has shape (...)
and is log |det dz_new/dz|. A VAE with a flow posterior draws z0 ~ N(mu, sigma) and pushes it
through the layers, so that

    log q(z_K | x) = log N(z0; mu, sigma) - sum_k log_abs_det_k.

Layers built with `context_dim > 0` are *amortized*: they also take the encoder's hidden state h
(shape (..., context_dim), broadcastable against z's leading dimensions), so every example gets
its own flow, as in Rezende & Mohamed (2015) and Kingma et al. (2016). With `context_dim = 0`
their parameters are shared by all examples and `context` is ignored.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.distributions import Distribution

from .distributions import DiagonalGaussian
from .errors import InputError


class PlanarFlow(nn.Module):
    """f(z) = z + u_hat * tanh(w . z + b) (Rezende & Mohamed 2015), invertible by construction.

    With m(a) = -1 + softplus(a), u_hat = u + (m(w . u) - w . u) * w / |w|^2 has w . u_hat =
    m(w . u) > -1, which makes f strictly increasing along w and hence invertible; its Jacobian
    determinant 1 + u_hat . psi(z), psi(z) = (1 - tanh^2(w . z + b)) w, is then positive.

    Amortized (context_dim > 0): (u, w, b) are a function of the encoder's hidden state h: a
    linear map, or a small MLP with one ELU layer of width `hidden` when hidden > 0. Otherwise
    (u, w, b) are free parameters shared by all examples (`hidden` is then unused).
    """

    reverse_between_layers = False  # no variable order to alternate

    def __init__(self, latent_dim: int, context_dim: int = 0, hidden: int = 0):
        super().__init__()
        self.latent_dim = latent_dim
        n_params = 2 * latent_dim + 1  # [u | w | b]
        if context_dim > 0:
            if hidden > 0:
                self.amortizer = nn.Sequential(nn.Linear(context_dim, hidden), nn.ELU(), nn.Linear(hidden, n_params))
            else:
                self.amortizer = nn.Linear(context_dim, n_params)
            self.raw = None
        else:
            self.amortizer = None
            self.raw = nn.Parameter(0.1 * torch.randn(n_params))

    def planar_params(self, context=None):
        """(u_hat, w, b) with shapes (..., L), (..., L), (..., 1); (L,), (L,), (1,) when not amortized."""
        return self._params(context)[:3]

    def _params(self, context):
        """(u_hat, w, b, 1 + w . u_hat); the last, (..., 1), is softplus(w . u): exactly > 0 in floats."""
        if self.amortizer is None:
            raw = self.raw
        elif context is None:
            raise ValueError("This planar flow is amortized: pass the encoder's hidden state as `context`.")
        else:
            raw = self.amortizer(context)  # (..., 2L + 1)
        L = self.latent_dim
        u, w, b = raw.split([L, L, 1], dim=-1)
        wu = (w * u).sum(-1, keepdim=True)  # (..., 1)
        w_sq = (w * w).sum(-1, keepdim=True).clamp_min(1e-12)
        one_plus_w_u_hat = F.softplus(wu)  # 1 + m(w . u)
        u_hat = u + (one_plus_w_u_hat - 1.0 - wu) * w / w_sq  # so that w . u_hat = m(w . u) > -1
        return u_hat, w, b, one_plus_w_u_hat

    def forward(self, z, context=None):
        u_hat, w, b, one_plus_w_u_hat = self._params(context)
        t = torch.tanh((w * z).sum(-1, keepdim=True) + b)  # (..., 1)
        z_new = z + u_hat * t  # (..., L)
        # det = 1 + u_hat . psi(z) = 1 + (1 - t^2) (w . u_hat) = t^2 + (1 - t^2) softplus(w . u): a sum of
        # non-negative terms, so the guarantee det > 0 survives rounding.
        det = t * t + (1.0 - t * t) * one_plus_w_u_hat
        log_abs_det = torch.log(det.clamp_min(1e-30)).squeeze(-1)  # (...)
        return z_new, log_abs_det


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask of shape (out, in)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        # Not saved: the mask follows from the layer sizes, so it is rebuilt on construction.
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class IAFLayer(nn.Module):
    """One inverse autoregressive flow step (Kingma et al. 2016) with a MADE network.

    A masked autoregressive network maps z (and the context h, added into the first hidden
    layer) to (m, s), where m_i and s_i depend only on z_1..z_{i-1}. The gated update

        sigma = sigmoid(s),   z_new = sigma * z + (1 - sigma) * m

    has a triangular Jacobian with diagonal sigma, so log |det| = sum_i log sigma_i.
    The bias of s starts at `forget_bias` so that sigma starts near 1 (z_new close to z).
    Chains of IAF layers reverse the variable order between layers (see `build_flows`).
    """

    reverse_between_layers = True

    def __init__(self, latent_dim: int, context_dim: int = 0, hidden: int = 64, forget_bias: float = 2.0):
        super().__init__()
        if hidden < 1:
            raise InputError(f"An IAF layer needs a hidden width of at least 1, got {hidden}.")
        L = latent_dim
        # MADE degrees: variable i (1-based) has degree i; hidden units cycle through 1..L-1
        # (0 when L = 1: they see only the context); output m_i and s_i have degree i.
        deg_in = torch.arange(1, L + 1)  # (L,)
        deg_hidden = torch.arange(hidden) % max(L - 1, 1) + min(L - 1, 1)  # (hidden,)
        deg_out = deg_in.repeat(2)  # (2L,): [m | s]
        self.first = MaskedLinear(L, hidden, deg_hidden[:, None] >= deg_in[None, :])
        self.context = nn.Linear(context_dim, hidden) if context_dim > 0 else None
        self.middle = MaskedLinear(hidden, hidden, deg_hidden[:, None] >= deg_hidden[None, :])
        self.last = MaskedLinear(hidden, 2 * L, deg_out[:, None] > deg_hidden[None, :])
        with torch.no_grad():
            self.last.bias[L:].fill_(forget_bias)

    def autoregressive_params(self, z, context=None):
        """(m, s), each shaped like z; output i depends only on z[..., :i] (and the context)."""
        h = self.first(z)  # (..., hidden)
        if self.context is not None:
            if context is None:
                raise ValueError("This IAF layer is amortized: pass the encoder's hidden state as `context`.")
            h = h + self.context(context)
        h = F.elu(self.middle(F.elu(h)))
        m, s = self.last(h).chunk(2, dim=-1)  # (..., L) each
        return m, s

    def forward(self, z, context=None):
        m, s = self.autoregressive_params(z, context)
        sigma = torch.sigmoid(s)
        z_new = sigma * z + (1.0 - sigma) * m
        return z_new, F.logsigmoid(s).sum(-1)


class Reverse(nn.Module):
    """Reverse the order of the latent variables (a permutation: log |det| = 0)."""

    def forward(self, z, context=None):
        return z.flip(-1), z.new_zeros(z.shape[:-1])


class FlowChain(nn.Module):
    """Flow layers applied in turn; returns the last z and the summed log |det| of shape (...)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, z, context=None):
        log_abs_det = z.new_zeros(z.shape[:-1])
        for layer in self.layers:
            z, step = layer(z, context)
            log_abs_det = log_abs_det + step
        return z, log_abs_det


FLOWS = {"planar": PlanarFlow, "iaf": IAFLayer}


def build_flows(name: str, length: int, latent_dim: int, context_dim: int = 0, hidden: int = 64) -> FlowChain:
    """`length` flow layers of kind `name` ('planar' or 'iaf') as one FlowChain.

    context_dim > 0 makes every layer amortized on the encoder's hidden state; `hidden` is the
    width of each layer's own network (IAF's MADE; the planar amortizer, 0 for a linear map).
    Autoregressive layers get a `Reverse` between them so every variable conditions on every other.
    """
    if name not in FLOWS:
        raise InputError(f"Unknown flow {name!r}; choose one of {', '.join(FLOWS)}.")
    if length < 0:
        raise InputError(f"The flow length must be 0 or more, got {length}.")
    cls = FLOWS[name]
    layers: list[nn.Module] = []
    for i in range(length):
        if i > 0 and cls.reverse_between_layers:
            layers.append(Reverse())
        layers.append(cls(latent_dim, context_dim=context_dim, hidden=hidden))
    return FlowChain(layers)


class FlowPosterior(Distribution):
    """q(z_K | x): a diagonal Gaussian q0(z0 | x) pushed through a flow chain amortized on h.

    `rsample_with_log_prob` gives samples with their exact log-density (change of variables).
    The density of an arbitrary point needs the flow's inverse, which planar flows and IAF do not
    offer cheaply, so `log_prob` scores only the samples this object drew last (any point when
    the chain has no layers).
    `mu` and `logvar` are the base Gaussian's, as the model's `encode` returns them.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, base: DiagonalGaussian, flows: FlowChain, context: torch.Tensor | None):
        self.base, self.flows, self.context = base, flows, context
        self.mu, self.logvar = base.mu, base.logvar
        self._last = None  # (z, log q(z)) of the latest samples
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample_with_log_prob(self, sample_shape=torch.Size(), noise=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_K, log q(z_K|x)) for reparameterised samples of shape sample_shape + (B, L) (or from
        given standard-normal `noise`, as in DiagonalGaussian)."""
        z0, log_q0 = self.base.rsample_with_log_prob(sample_shape, noise)  # (..., B, L), (..., B)
        z, log_abs_det = self.flows(z0, self.context)  # h (B, H) broadcasts over the sample dims
        log_q = log_q0 - log_abs_det
        self._last = (z, log_q)
        return z, log_q

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is not None and value is self._last[0]:
            return self._last[1]
        if len(self.flows.layers) == 0:  # no layers: q is the base Gaussian itself
            return self.base.log_prob(value)
        raise NotImplementedError(
            "A flow posterior scores only its own samples: use rsample_with_log_prob(), or the model's "
            "sample_posterior(x, k), which return each sample with its log-density."
        )
