"""Vector quantization for VQ-VAE (van den Oord et al. 2017): a codebook, nearest-code assignment,
the straight-through estimator, and the usual remedies for dead codes.

The codebook is learned one of two ways:

- exponential moving averages (``decay`` in (0, 1), the default 0.99): each code becomes the
  running mean of the encoder outputs assigned to it. The codebook is then a buffer, not a
  parameter, and the only loss term is the commitment cost.
- gradient descent (``decay=None`` or ``0``): the codebook is a parameter trained by the codebook
  loss ``||sg[z_e] - e||^2`` next to the commitment cost ``commitment * ||z_e - sg[e]||^2``.

Everything that changes the codebook outside gradient descent (k-means initialisation, EMA
updates, restarting dead codes) happens in training mode only, inside ``forward``; ``assign`` and
``lookup`` never change anything. All of that state lives in buffers, so a ``state_dict`` (and a
saved model) holds it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributions import InputError, full_precision


class Quantized(NamedTuple):
    """What `VectorQuantizer.forward` returns.

    quantized:     like the input, (B, ..., code_dim); the nearest codes in the forward pass, with
                   the straight-through gradient (d quantized / d input = identity) backwards.
    indices:       (B, ...) long, the code chosen for each vector.
    commitment:    (B,) ``commitment * ||z_e - sg[e]||^2`` summed over each example's vectors.
    codebook:      (B,) ``||sg[z_e] - e||^2`` summed likewise; zeros when the codebook is an EMA.
    perplexity:    scalar, exp(entropy of this batch's average code usage), between 1 and num_codes.
    used_fraction: scalar, the fraction of codes chosen at least once in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    commitment: torch.Tensor
    codebook: torch.Tensor
    perplexity: torch.Tensor
    used_fraction: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        """The quantizer's per-example loss terms added together, shape (B,)."""
        return self.commitment + self.codebook


def usage_stats(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, used_fraction) of code counts of shape (num_codes,).

    perplexity = exp(-sum_k p_k log p_k) with p_k = counts_k / sum(counts) (0 log 0 = 0);
    used_fraction = (number of codes with a non-zero count) / num_codes.
    """
    counts = counts.double()
    p = counts / counts.sum().clamp(min=1)
    entropy = -torch.special.xlogy(p, p).sum()
    return entropy.exp().float(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """VectorQuantizer(num_codes, code_dim): map vectors of size `code_dim` to the nearest of
    `num_codes` learned codes.

    Args:
        num_codes: codebook size K.
        code_dim: size D of each code and of the vectors quantized.
        commitment: weight of the commitment cost (0.25 in the paper; robust from 0.1 to 2).
        decay: EMA decay of the codebook; None or 0 trains the codebook by its loss instead.
        eps: Laplace smoothing of the EMA cluster sizes, so no code divides by zero.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that initialisation.
        dead_code_threshold: a code whose EMA usage (assignments per batch) falls below this is
            re-seeded from a random vector of the current batch; 0 turns restarts off.
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        commitment: float = 0.25,
        decay: float | None = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 1.0,
    ):
        super().__init__()
        if decay is not None and not 0 <= decay < 1:
            raise InputError(f"decay must be in [0, 1) (None or 0: learn the codebook by its loss), got {decay}.")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.commitment, self.eps = commitment, eps
        self.use_ema = bool(decay)
        # Usage is tracked by an EMA in both modes (it drives dead-code restarts).
        self.decay = decay if self.use_ema else 0.99
        self.kmeans_iters, self.dead_code_threshold = kmeans_iters, dead_code_threshold

        codebook = torch.randn(num_codes, code_dim)
        if self.use_ema:
            self.register_buffer("codebook", codebook)
        else:
            self.codebook = nn.Parameter(codebook)
        # EMA state: assignments per batch and the sum of the vectors assigned, per code.
        # Invariant before smoothing: codebook = embed_sum / cluster_size.
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    # ---- assignment --------------------------------------------------------------------------
    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each vector of z (..., code_dim); shape z.shape[:-1]."""
        flat = z.reshape(-1, self.code_dim).to(self.codebook.dtype)  # (N, D)
        return self._nearest(flat, self.codebook).reshape(z.shape[:-1])

    @staticmethod
    def _nearest(flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Index of the nearest row of codes (K, D) for each row of flat (N, D), in full precision."""
        with torch.autocast(flat.device.type, enabled=False):
            # ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2 for all pairs, as one matmul: (N, K)
            dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)
        return dist.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes for integer `indices` of any shape; shape (*indices.shape, code_dim)."""
        return F.embedding(indices, self.codebook)

    # ---- the forward pass --------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> Quantized:
        """Quantize z of shape (B, ..., code_dim) (channels last). In training mode this also
        initialises the codebook (first call), updates the EMA and restarts dead codes."""
        if z.shape[-1] != self.code_dim:
            raise InputError(
                f"Expected vectors of size {self.code_dim} in the last dimension, got shape {tuple(z.shape)}."
            )
        flat = z.detach().reshape(-1, self.code_dim).to(self.codebook.dtype)  # (N, D), N = B * positions
        if self.training and not self.initialized:
            self._kmeans_init(flat)

        z = full_precision(z)  # the costs are sums of squares: float32 even under autocast
        indices = self.assign(z)  # (B, ...)
        q = self.lookup(indices)  # (B, ..., D)
        per_example = tuple(range(1, z.dim()))
        commitment = self.commitment * (z - q.detach()).pow(2).sum(per_example)
        if self.use_ema:
            codebook_loss = z.new_zeros(z.shape[0])
        else:
            codebook_loss = (z.detach() - q).pow(2).sum(per_example)

        counts = torch.bincount(indices.reshape(-1), minlength=self.num_codes)  # (K,)
        perplexity, used = usage_stats(counts)
        if self.training:
            self._update(flat, indices.reshape(-1), counts)
        quantized = z + (q - z).detach()  # straight-through: forward value q, gradient to z
        return Quantized(quantized, indices, commitment, codebook_loss, perplexity, used)

    # ---- codebook maintenance (training mode only) -------------------------------------------
    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """Lloyd's k-means on one batch of vectors (N, D); codes start at random batch vectors."""
        n = flat.shape[0]
        start = torch.randperm(n, device=flat.device)[: self.num_codes]
        if n < self.num_codes:  # fewer vectors than codes: some codes start as duplicates
            start = torch.randint(n, (self.num_codes,), device=flat.device)
        centroids = flat[start].clone()  # (K, D)
        counts = torch.zeros(self.num_codes, device=flat.device)
        for _ in range(self.kmeans_iters):
            assign = self._nearest(flat, centroids)
            counts = torch.bincount(assign, minlength=self.num_codes).to(flat.dtype)
            sums = torch.zeros_like(centroids).index_add_(0, assign, flat)
            filled = counts > 0  # an empty cluster keeps its centroid
            centroids[filled] = sums[filled] / counts[filled, None]
        self.codebook.data.copy_(centroids)
        # Empty clusters get a zero usage, so the first restart re-seeds them.
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA of usage (and, with EMA codebooks, of assigned sums); then restart dead codes."""
        d = self.decay
        self.cluster_size.mul_(d).add_(counts.to(self.cluster_size.dtype), alpha=1 - d)
        if self.use_ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
            self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
            # Laplace smoothing: sizes stay positive, and they still sum to the same total.
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._restart_dead_codes(flat)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        """Re-seed codes whose EMA usage is below the threshold with random vectors of `flat`."""
        dead = self.cluster_size < self.dead_code_threshold  # (K,) bool
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        n = flat.shape[0]
        if n >= n_dead:
            pick = torch.randperm(n, device=flat.device)[:n_dead]
        else:  # more dead codes than vectors: some share a seed and split apart later
            pick = torch.randint(n, (n_dead,), device=flat.device)
        new = flat[pick]  # (n_dead, D)
        self.codebook.data[dead] = new
        # A restarted code counts as just reaching the threshold: unused again, it is re-seeded again.
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = new * self.dead_code_threshold

    def extra_repr(self) -> str:
        learn = f"ema decay={self.decay}" if self.use_ema else "codebook loss"
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, commitment={self.commitment}, {learn}, "
                f"dead_code_threshold={self.dead_code_threshold}")

