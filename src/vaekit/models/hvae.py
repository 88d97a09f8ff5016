"""A hierarchical VAE for images with a shared top-down path (Ladder VAE / NVAE style).

Latent groups are spatial maps z_0, ..., z_{L-1} at one or more scales, numbered in the order
they are sampled: z_0 is the top (coarsest, most abstract) group and z_{L-1} the one nearest the
data. The model, written as its probability statements:

    p(x, z) = p(z_0) * prod_{i>0} p(z_i | z_<i) * p(x | z)        p(z_0) = N(0, I)
    q(z | x) = q(z_0 | x) * prod_{i>0} q(z_i | x, z_<i)

Networks:
  bottom-up   x -> space-to-depth stem -> residual cells; one feature map f_i is kept per group,
              with a stride-2 convolution between scales (finest first, so f_0 is the deepest).
  top-down    h starts as a learned constant at the coarsest scale. For each group i:
                p(z_i | z_<i)    = N(mu_p, sigma_p)                     (mu_p, log sigma_p) = conv(h)
                q(z_i | x, z_<i) = N(mu_p + dmu, sigma_p * exp(dls))    (dmu, dls) = conv([h, f_i])
              (NVAE's residual posterior: q starts close to p), then h <- cells(h + conv1x1(z_i)),
              with nearest-neighbour upsampling where the next group lies at a finer scale.
  head        h -> conv -> depth-to-space -> decoder parameters (logits for Bernoulli pixels).

The KL of every group is analytic between the two diagonal Gaussians given the sampled z_<i,
which is a valid single-sample estimate of the ELBO's KL; `log_weights` is the exact importance
weight log p(x|z) + sum_i log p(z_i|z_<i) - sum_i log q(z_i|x,z_<i).

The chapter's API speaks of the top group: `encode` gives its (mu, logvar) flattened to
(B, latent_dim), `decode(z)` decodes a top code with every lower group at its prior mean, and
`prior()` is N(0, I) over it, so `decode(torch.randn(n, latent_dim))` generates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn as nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from ..cells import Downsample, Upsample, residual_stack, scaled_init
from ..capabilities import Capabilities
from ..errors import InputError
from ..nets import padded_size
from ..precision import full_precision
from .base import BaseVAE, Draw
from .core import ImageShape
from .registry import Option, register
from ..pixel_likelihood import PixelCNNLikelihood

PIXEL_CONTEXT = 16  # decoder values per pixel that the autoregressive likelihood reads
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)
LOG_SCALE_BOUND = 5.0  # log standard deviations of every latent Gaussian stay within (-5, 5)


def soft_clamp(x: torch.Tensor, bound: float = LOG_SCALE_BOUND) -> torch.Tensor:
    """bound * tanh(x / bound): a smooth clamp into (-bound, bound) with slope 1 near zero."""
    return bound * torch.tanh(x / bound)


class GaussianMap(Independent):
    """Diagonal Gaussian N(mu, exp(log_sigma)^2) over latent maps of shape (B, C, h, w); the last
    three dims are the event. Float32 even under autocast: its log-densities and KLs are sums over
    hundreds of values.

    log_prob is the same density as Normal's, written with the log sigma at hand: one pass over
    the maps for the squared distance and one sum of log sigma, instead of Normal's eight
    elementwise passes; with torch's argument checks off, importance sampling of the shipped
    mnist-hvae ran 1.19x faster (benchmarks/RESULTS.md, "A CPU with AMX").
    """

    def __init__(self, mu: torch.Tensor, log_sigma: torch.Tensor):
        mu, log_sigma = full_precision(mu), full_precision(log_sigma)
        super().__init__(Normal(mu, log_sigma.exp(), validate_args=False), 3, validate_args=False)
        self.log_sigma = log_sigma

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z | mu, sigma^2) summed over each map: shape batch_shape."""
        normal, maps = self.base_dist, (-3, -2, -1)
        u = (z - normal.loc) / normal.scale  # (B, C, h, w): the standardised distance
        return -0.5 * u.square().sum(maps) - self.log_sigma.sum(maps) - self.event_shape.numel() * HALF_LOG_TWO_PI


def repeat_samples(t: torch.Tensor, n: int) -> torch.Tensor:
    """(B, ...) -> (n * B, ...), sample-major: row s * B + b is a copy of row b."""
    return t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


class LatentLayer(NamedTuple):
    """One stochastic group of a top-down pass."""

    q: Distribution | None  # q(z_i | x, z_<i); None when no x was given (generation, decoding)
    p: Distribution  # p(z_i | z_<i); N(0, I) for the top group
    z: torch.Tensor  # the z_i that was used, (B, latent_channels, h_i, w_i)


@dataclass
class HierarchicalVAEConfig:
    in_channels: int = 1  # image channels
    image_size: tuple[int, int] = (28, 28)  # (H, W); an int means square; padded to multiples of 2**scales
    groups_per_scale: tuple[int, ...] = (2, 2)  # latent groups per scale, coarsest first; S scales give maps at 1/2**S .. 1/2 of the image
    latent_channels: int = 8  # channels of every latent group's map
    hidden_channels: int = 32  # width of the residual cells in both paths (cost grows as its square)
    cells_per_group: int = 1  # residual cells after each latent group, in each path
    squeeze_excitation: bool = True  # squeeze-and-excitation gate at the end of each residual cell
    likelihood: str = "bernoulli"  # p(x|z): 'bernoulli', 'gaussian' or 'gaussian-learned'
    sigma: float = 1.0  # standard deviation of a fixed-variance Gaussian likelihood
    pixel_window: int = 0  # odd size >= 3: Bernoulli pixels that also depend on the pixels before them
    #                        within this window (vaekit.pixel_likelihood); 0: independent pixels
    pixel_channels: int = 32  # width of that autoregressive layer

    added_fields: ClassVar[dict] = {"pixel_window": 0, "pixel_channels": 32}  # what models saved before these fields used

    def __post_init__(self):
        size = self.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        if isinstance(self.groups_per_scale, int):
            raise InputError(
                "groups_per_scale takes one group count per scale, coarsest first, e.g. (2, 2); "
                f"for {self.groups_per_scale} groups at a single scale write ({self.groups_per_scale},)."
            )
        self.groups_per_scale = tuple(self.groups_per_scale)
        if len(self.groups_per_scale) < 1 or min(self.groups_per_scale) < 1 or sum(self.groups_per_scale) < 2:
            raise InputError(
                f"groups_per_scale={self.groups_per_scale} must give every scale at least one group and "
                "at least two groups in all, e.g. (2, 2)."
            )
        if min(self.latent_channels, self.hidden_channels, *self.image_size) < 1 or self.cells_per_group < 0:
            raise InputError("latent_channels, hidden_channels and image_size must be positive and cells_per_group >= 0.")
        if self.pixel_window and (self.pixel_window < 3 or self.pixel_window % 2 != 1) or self.pixel_channels < 1:
            raise InputError(f"pixel_window must be 0 (independent pixels) or an odd size of at least 3 (got "
                             f"{self.pixel_window}), and pixel_channels positive.")
        if self.pixel_window and self.likelihood != "bernoulli":
            raise InputError(f"An autoregressive decoder (pixel_window={self.pixel_window}) models binary pixels; "
                             f"use the bernoulli likelihood, not {self.likelihood!r}, or pixel_window=0.")


class TopDownGroup(nn.Module):
    """The layers of one latent group in the top-down path: prior, posterior delta, z projection, cells."""

    def __init__(self, channels: int, latent_channels: int, top: bool, cells: int, squeeze_excitation: bool):
        super().__init__()
        # the top prior is N(0, I): no network; the top posterior sees only the encoder feature
        self.prior = None if top else nn.Sequential(
            nn.SiLU(), scaled_init(nn.Conv2d(channels, 2 * latent_channels, 3, padding=1))
        )
        in_q = channels if top else 2 * channels
        self.posterior = nn.Sequential(nn.SiLU(), scaled_init(nn.Conv2d(in_q, 2 * latent_channels, 3, padding=1)))
        self.z_proj = nn.Conv2d(latent_channels, channels, 1)
        self.cells = residual_stack(channels, cells, squeeze_excitation)

    def posterior_delta(self, h: torch.Tensor, feat: torch.Tensor, samples: int) -> torch.Tensor:
        """posterior([h, feat]) for top-down states h (samples * B, ...) (sample-major rows) and the
        encoder features feat (B, ...) of their B images: (samples * B, 2 * latent_channels, h_i, w_i).

        A convolution of concatenated channels is the sum of one convolution per part, so the
        encoder's part is computed once per image and added to every sample of it."""
        conv, split = self.posterior[1], h.shape[1]
        from_h = nn.functional.conv2d(nn.functional.silu(h), conv.weight[:, :split], conv.bias, padding=conv.padding)
        from_f = nn.functional.conv2d(nn.functional.silu(feat), conv.weight[:, split:], padding=conv.padding)
        return (from_h.unflatten(0, (samples, -1)) + from_f).flatten(0, 1)  # (samples, B, ...) -> (samples * B, ...)


@register(summary="hierarchical, top-down inference", data="image", uses_latent_dim=False,
          options=(Option("--pixel-window", "pixel_window", int, "odd window of earlier pixels that each pixel's "
                          "probability also reads: an autoregressive Bernoulli decoder (default 0: independent pixels)"),),
          tiny={"groups_per_scale": (1, 1), "hidden_channels": 8, "latent_channels": 2})
class HierarchicalVAE(ImageShape, BaseVAE):
    """HierarchicalVAE(groups_per_scale=(2, 2), hidden_channels=32, ...): spatial latent groups
    at several scales, a bottom-up encoder and a shared top-down prior/posterior path."""

    model_type = "hvae"
    config_class = HierarchicalVAEConfig
    capabilities = Capabilities(posterior="hierarchical")
    # images per network pass when log_weights / elbo repeat a batch k times; on CPU 2048 took
    # 1.8x as long as 256 (its 50 MB activations leave the caches)
    max_eval_batch = 256

    def __init__(self, config: HierarchicalVAEConfig | None = None, **kwargs):
        config = config or HierarchicalVAEConfig(**kwargs)
        super().__init__(config)
        c, ch, lc = config.in_channels, config.hidden_channels, config.latent_channels
        if config.pixel_window:
            self.lik = PixelCNNLikelihood(c, PIXEL_CONTEXT, config.pixel_channels, config.pixel_window)
        n_scales = len(config.groups_per_scale)
        self.padded = tuple(padded_size(s, n_scales) for s in config.image_size)
        # (h, w) of the latent maps at each scale, coarsest first: 1/2**S, ..., 1/2 of the padded image
        self.scale_sizes = [(self.padded[0] >> (n_scales - t), self.padded[1] >> (n_scales - t)) for t in range(n_scales)]
        # scale index of each group, in sampling (top-down) order
        self.group_scale = [t for t, g in enumerate(config.groups_per_scale) for _ in range(g)]
        self.latent_shapes = [(lc, *self.scale_sizes[t]) for t in self.group_scale]

        # bottom-up: enc_cells[i] produces the feature f_i that group i's posterior reads
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * c, ch, 3, padding=1))  # (B, ch, H/2, W/2)
        self.enc_down = nn.ModuleList(Downsample(ch) for _ in range(n_scales - 1))  # enc_down[t]: scale t+1 -> t
        self.enc_cells = nn.ModuleList(
            residual_stack(ch, config.cells_per_group, config.squeeze_excitation) for _ in self.group_scale
        )
        # top-down
        self.h0 = nn.Parameter(torch.zeros(1, ch, *self.scale_sizes[0]))  # learned initial state
        self.dec_up = nn.ModuleList(Upsample(ch) for _ in range(n_scales - 1))  # dec_up[t]: scale t -> t+1
        self.groups = nn.ModuleList(
            TopDownGroup(ch, lc, i == 0, config.cells_per_group, config.squeeze_excitation)
            for i in range(len(self.group_scale))
        )
        out = self.lik.params_per_value * c
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, 4 * out, 3, padding=1), nn.PixelShuffle(2))  # (B, out, H, W)

    # ---- shapes ----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of latent groups L."""
        return len(self.latent_shapes)

    @property
    def latent_dim(self) -> int:
        """Size of the top code z_0 (what encode/decode/prior speak of)."""
        c, h, w = self.latent_shapes[0]
        return c * h * w

    @property
    def total_latent_dim(self) -> int:
        """Size of the joint code: all groups flattened and concatenated, top first."""
        return sum(c * h * w for c, h, w in self.latent_shapes)

    # ---- the two passes --------------------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features, one per group in sampling order: f_i is (B, hidden, h_i, w_i)."""
        pad_h, pad_w = self.padded[0] - x.shape[-2], self.padded[1] - x.shape[-1]
        h = self.stem(nn.functional.pad(x, (0, pad_w, 0, pad_h)))  # (B, hidden, H/2, W/2)
        feats: list[torch.Tensor] = [None] * self.num_layers
        for i in reversed(range(self.num_layers)):  # from the data upwards
            if i < self.num_layers - 1 and self.group_scale[i] != self.group_scale[i + 1]:
                h = self.enc_down[self.group_scale[i]](h)
            h = self.enc_cells[i](h)
            feats[i] = h
        return feats

    def _top_posterior(self, feat: torch.Tensor):
        """(mu, log sigma) maps of q(z_0 | x) from the deepest encoder feature."""
        mu, log_sigma = self.groups[0].posterior(feat).chunk(2, dim=1)  # each (B, lc, h_0, w_0)
        return mu, soft_clamp(log_sigma)

    def top_down(self, feats=None, given=None, batch: int | None = None, mode: str = "sample",
                 temperature: float = 1.0, samples: int = 1):
        """Run the generative path from the top; returns (decoder params, [LatentLayer] top first).

        Each z_i is `given[i]` when that is not None; otherwise it comes from q(z_i | x, z_<i)
        when encoder `feats` are passed, else from the prior p(z_i | z_<i): a (reparameterised)
        sample if mode='sample', its mean if mode='mean'. `temperature` scales the prior's
        standard deviations. With `feats`, every layer records q, so given latents can be scored.
        With `samples` = n the pass draws n samples of each of the B images of `feats` (rows
        sample-major: row s * B + b is image b); what depends on the image alone (the top posterior,
        the encoder's part of every posterior) is computed once per image.
        """
        if batch is None:
            batch = samples * feats[0].shape[0] if feats is not None else given[0].shape[0]
        h = self.h0.expand(batch, -1, -1, -1)  # (B, hidden, h_0, w_0)
        layers = []
        for i, group in enumerate(self.groups):
            if i > 0 and self.group_scale[i] != self.group_scale[i - 1]:
                h = self.dec_up[self.group_scale[i - 1]](h)  # to the next finer scale
            if i == 0:
                mu_p = h.new_zeros(batch, *self.latent_shapes[0])
                raw_p = log_sigma_p = mu_p
            else:
                mu_p, raw_p = group.prior(h).chunk(2, dim=1)  # each (B, lc, h_i, w_i)
                log_sigma_p = soft_clamp(raw_p)
            p = GaussianMap(mu_p, log_sigma_p)
            q = None
            if feats is not None:
                if i == 0:
                    q = GaussianMap(*(repeat_samples(t, samples) for t in self._top_posterior(feats[0])))
                else:
                    d_mu, d_log_sigma = group.posterior_delta(h, feats[i], samples).chunk(2, dim=1)
                    q = GaussianMap(mu_p + d_mu, soft_clamp(raw_p + d_log_sigma))
            if given is not None and given[i] is not None:
                z = given[i]
            elif q is not None:
                z = q.mean if mode == "mean" else q.rsample()
            elif mode == "mean":
                z = mu_p
            else:
                z = mu_p + temperature * log_sigma_p.exp() * torch.randn_like(mu_p)
            layers.append(LatentLayer(q, p, z))
            h = group.cells(h + group.z_proj(z))
        params = self.head(h)[..., : self.config.image_size[0], : self.config.image_size[1]]  # crop padding
        return params, layers

    def layers(self, x, y=None) -> list[LatentLayer]:
        """One posterior pass: [(q_i, p_i, z_i)] for every group, top (z_0) first."""
        return self.top_down(feats=self.bottom_up(self.as_batch(x)))[1]

    def unit_kl(self, x) -> torch.Tensor:
        """KL(q(z_d | x, z_<i) || p(z_d | z_<i)) of every latent unit d of every group i, given one
        posterior sample of the groups above: (B, total_latent_dim), top group first, in nats."""
        layers = self.layers(x)
        return self.join_code([kl_divergence(layer.q.base_dist, layer.p.base_dist) for layer in layers])

    def split_code(self, z: torch.Tensor) -> list[torch.Tensor | None]:
        """A flat code (B, latent_dim) or joint code (B, total_latent_dim) as per-group maps.

        A top code gives [z_0 map, None, None, ...]; a joint code gives every group's map.
        """
        if z.shape[-1] == self.latent_dim:
            return [z.reshape(-1, *self.latent_shapes[0])] + [None] * (self.num_layers - 1)  # (B, lc, h_0, w_0)
        if z.shape[-1] == self.total_latent_dim:
            sizes = [c * h * w for c, h, w in self.latent_shapes]
            return [part.reshape(-1, *shape) for part, shape in zip(z.split(sizes, dim=-1), self.latent_shapes)]
        raise InputError(
            f"Expected a top code of {self.latent_dim} values or a joint code of {self.total_latent_dim} "
            f"values per example, got a tensor of shape {tuple(z.shape)}."
        )

    def join_code(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Per-group maps (B, lc, h_i, w_i), top first -> joint code (B, total_latent_dim)."""
        return torch.cat([z.flatten(1) for z in zs], dim=1)

    # ---- the chapter's API -----------------------------------------------------------------
    def encode(self, x, y=None):
        """(mu, logvar) of the top group's q(z_0|x), each flattened to (B, latent_dim)."""
        x, single = self._batch(x)
        mu, log_sigma = self._top_posterior(self.bottom_up(x)[0])
        mu, logvar = mu.flatten(1), 2 * log_sigma.flatten(1)  # (B, latent_dim)
        return (mu[0], logvar[0]) if single else (mu, logvar)

    def decoder_params(self, z, y=None):
        """Decoder output for a top code (lower groups at their prior means) or a joint code."""
        return self.top_down(given=self.split_code(z), batch=z.shape[0], mode="mean")[0]

    def forward(self, x, y=None):
        """(x_recon, mu, logvar): a reconstruction through every group's posterior sample, and
        the top group's (mu, logvar) flattened to (B, latent_dim)."""
        x, single = self._batch(x)
        params, layers = self.top_down(feats=self.bottom_up(x))
        top = layers[0].q.base_dist
        recon = self.lik.mean(params, len(self.data_shape))
        mu, logvar = top.loc.flatten(1), 2 * top.scale.log().flatten(1)  # (B, latent_dim)
        return (recon[0], mu[0], logvar[0]) if single else (recon, mu, logvar)

    def reconstruct(self, x, y=None) -> torch.Tensor:
        """Deterministic reconstruction through every group's posterior mean (likelihood mean).

        Unlike decode(encode(x)[0]), which keeps only the top code, this uses all groups.
        """
        x, single = self._batch(x)
        params, _ = self.top_down(feats=self.bottom_up(x), mode="mean")
        recon = self.lik.mean(params, len(self.data_shape))
        return recon[0] if single else recon

    @torch.no_grad()
    def sample(self, n: int, y=None, temperature: float = 1.0) -> torch.Tensor:
        """n new images by ancestral sampling from the top (likelihood mean, like decode).

        `temperature` < 1 scales every group's prior standard deviation for cleaner samples. With a
        fitted prior (`use_prior`) the top group comes from it, the lower groups from their priors.
        """
        given = self.split_code(self.sample_prior(n, temperature)) if self.fitted_prior is not None else None
        params, _ = self.top_down(given=given, batch=n, mode="sample", temperature=temperature)
        return self.lik.mean(params, len(self.data_shape))

    def set_prior(self, prior) -> None:
        """Not offered: the top group's N(0, I) is part of the top-down path (see `top_down`)."""
        if prior is not None:
            raise InputError("A hierarchical VAE's prior is its top-down path; set_prior does not apply to it.")

    # ---- the hooks of the shared objectives ---------------------------------------------------
    def draws(self, x, y, k: int, noise=None):
        """Yield Draws of joint codes for k posterior samples per example, in chunks.

        The bottom-up pass runs once per image, and so do the parts of the top-down pass that
        depend on the image alone; the top-down pass runs on at most `max_eval_batch` rows
        (samples x images) at a time. Each group draws its
        own noise given the groups above, so given `noise` is refused.
        """
        if noise is not None:
            raise InputError("A hierarchical VAE draws each group's noise given the groups above; it takes no noise=.")
        feats = self.bottom_up(x)
        b = x.shape[0]
        per = max(1, self.max_eval_batch // b)
        for start in range(0, k, per):
            n = min(per, k - start)
            params, layers = self.top_down(feats=feats, samples=n)
            z = self.join_code([layer.z for layer in layers]).view(n, b, -1)  # (n, B, total_latent_dim)
            log_q = sum(layer.q.log_prob(layer.z) for layer in layers).view(n, b)
            yield Draw(z, log_q, params=params, layers=layers)

    def log_px(self, draw: Draw, x, y=None) -> torch.Tensor:
        """log p(x|z) from the decoder output the top-down pass computed, (n, B)."""
        n = draw.z.shape[0]
        params = draw.params.view(n, -1, *draw.params.shape[1:])  # (n, B, ...): sample-major rows
        return self.lik(params, len(self.data_shape)).log_prob(x)  # x (B, ...) broadcast over the samples

    def log_prior(self, draw: Draw) -> torch.Tensor:
        """sum_i log p(z_i | z_<i), (n, B)."""
        n = draw.z.shape[0]
        return sum(layer.p.log_prob(layer.z) for layer in draw.layers).view(n, -1)

    def kl_units(self, draw: Draw) -> torch.Tensor:
        """Analytic KL(q(z_i|x, z_<i) || p(z_i|z_<i)) of each latent channel of each group, summed
        over its positions: (n, B, L * latent_channels), top group first. Free bits floor each."""
        n = draw.z.shape[0]
        maps = [kl_divergence(layer.q.base_dist, layer.p.base_dist) for layer in draw.layers]  # each (n*B, lc, h, w)
        return torch.cat([m.sum(dim=(2, 3)) for m in maps], dim=1).view(n, -1, self.num_layers * self.config.latent_channels)

    def penalty(self, draw: Draw, units: torch.Tensor, free_bits: float):
        """The shared penalty, plus each group's KL as the terms kl_0 (top) ... kl_{L-1}."""
        charged, terms = super().penalty(draw, units, free_bits)
        per_group = units.view(units.shape[0], self.num_layers, -1).sum(-1)  # (B, L)
        terms.update({f"kl_{i}": per_group[:, i] for i in range(self.num_layers)})
        return charged, terms

    def extra_repr(self) -> str:
        shapes = ", ".join("x".join(map(str, s)) for s in self.latent_shapes)
        return f"likelihood={self.lik.name}, latent groups (top first)=[{shapes}]"
