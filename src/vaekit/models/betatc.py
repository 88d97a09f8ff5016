"""beta-TC-VAE (Chen et al. 2018): the KL term split into three parts, each with its own weight.

Averaged over the data, the KL of a VAE decomposes as

    E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || prod_d q(z_d)) + sum_d KL(q(z_d) || p(z_d))
                             (MI)        (total correlation, TC)     (dimension-wise KL)

where q(z) = (1/N) sum_n q(z|x_n) is the aggregate posterior over the N training examples.
Penalising the TC more (beta > 1) pushes the latent dimensions towards independence without
also squeezing the information z carries about x (the MI), as a plain beta-VAE does.

q(z) and its marginals q(z_d) have no closed form: they are estimated from the minibatch, for each
z_i ~ q(z|x_i), from the B posteriors q(z_i|x_j) of the batch (`aggregate_log_density`).
Per example the three terms telescope exactly to log q(z_i|x_i) - log p(z_i), the single-sample
Monte Carlo KL, whatever the estimate of q(z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from ..distributions import diagonal_gaussian
from ..errors import InputError
from ..objectives import free_bits_kl
from .registry import Option, register
from .vae import INIT_OPTION, VAE, VAEConfig

ESTIMATORS = ("stratified", "mws")


def log_importance_weights(batch_size: int, dataset_size: int, estimator: str = "stratified",
                           like: torch.Tensor | None = None) -> torch.Tensor:
    """log w[i, j]: the weight of q(z_i|x_j) in the minibatch estimate of q(z_i); shape (M, M).

    'stratified': x_i's own posterior stands for one of the N examples (weight 1/N); the other
    M - 1 share the other N - 1 equally, (N - 1) / (N (M - 1)) each. Rows sum to 1, the estimate
    of q(z_i) is unbiased, and with N = M it is the exact aggregate posterior of the batch.
    (A batch of one has weight 1: MI and TC are then 0 and the dimension-wise KL is the whole KL.)
    'mws': minibatch-weighted sampling as written in Chen et al. (2018): every weight is 1/(N M).
    Its gradients match the equal-weight average, but its log q(z) is low by log N, which
    inflates the reported MI by log N and the TC by (L - 1) log N.
    """
    M, N = batch_size, dataset_size
    kw = {"dtype": like.dtype, "device": like.device} if like is not None else {}
    if estimator == "mws":
        return torch.full((M, M), -math.log(N * M), **kw)
    if estimator != "stratified":
        raise InputError(f"Unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}.")
    if M == 1:  # a lone posterior has nothing to share the other N - 1 with: it stands for all of them
        return torch.zeros((1, 1), **kw)
    others = math.log(N - 1) - math.log(N * (M - 1)) if N > 1 else -math.inf
    log_w = torch.full((M, M), others, **kw)
    log_w.fill_diagonal_(-math.log(N))
    return log_w


def aggregate_log_density(z, mu, logvar, dataset_size: int | None = None, estimator: str = "stratified"):
    """Minibatch estimates of log q(z_i) and of each log q(z_i,d) under the aggregate posterior.

    z: (B, L) with z_i ~ q(z|x_i); mu, logvar: (B, L) the batch's posteriors. dataset_size: N
    (None: the batch is the whole data set). Returns (log_qz (B,), log_qz_dims (B, L)).
    """
    B = z.shape[0]
    N = B if dataset_size is None else dataset_size
    std = torch.exp(0.5 * logvar)
    log_q_pairs = Normal(mu.unsqueeze(0), std.unsqueeze(0)).log_prob(z.unsqueeze(1))  # (B_i, B_j, L): log q(z_i,d | x_j)
    log_w = log_importance_weights(B, N, estimator, like=z)  # (B_i, B_j)
    log_qz = torch.logsumexp(log_w + log_q_pairs.sum(-1), dim=1)  # (B,)
    log_qz_dims = torch.logsumexp(log_w.unsqueeze(-1) + log_q_pairs, dim=1)  # (B, L)
    return log_qz, log_qz_dims


def kl_decomposition(z, mu, logvar, dataset_size: int | None = None, estimator: str = "stratified"):
    """Per-example (mi (B,), tc (B,), dim_kl (B, L)) of the KL decomposition at samples z (B, L).

    mi = log q(z|x) - log q(z), tc = log q(z) - sum_d log q(z_d), dim_kl[:, d] = log q(z_d) - log p(z_d);
    mi + tc + dim_kl.sum(-1) = log q(z|x) - log p(z) exactly.
    """
    log_qz_x = diagonal_gaussian(mu, logvar).log_prob(z)  # (B,)
    log_pz_dims = Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z)  # (B, L)
    log_qz, log_qz_dims = aggregate_log_density(z, mu, logvar, dataset_size, estimator)
    return log_qz_x - log_qz, log_qz - log_qz_dims.sum(-1), log_qz_dims - log_pz_dims


@dataclass
class BetaTCVAEConfig(VAEConfig):
    alpha: float = 1.0  # weight of the index-code mutual information I_q(x; z)
    beta: float = 6.0  # weight of the total correlation KL(q(z) || prod_d q(z_d)): the disentangling pressure
    gamma: float = 1.0  # weight of the dimension-wise KL sum_d KL(q(z_d) || p(z_d))
    dataset_size: int | None = None  # N in q(z) = (1/N) sum_n q(z|x_n); the Trainer and CLI set it to the
    #                                  number of training examples. None: each minibatch stands for the data set
    estimator: str = "stratified"  # minibatch estimate of q(z): 'stratified' or Chen et al.'s 'mws'

    def __post_init__(self):
        super().__post_init__()
        if self.estimator not in ESTIMATORS:
            raise InputError(f"Unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}.")
        if self.dataset_size is not None and self.dataset_size < 1:
            raise InputError(f"dataset_size must be the number of training examples (1 or more), got {self.dataset_size}.")


@register(summary="beta-TCVAE, a total-correlation penalty",
          options=(Option("--tc-weight", "beta", float, "weight of the total correlation (default 6)"), INIT_OPTION),
          tiny={"hidden_dims": (32,), "dataset_size": 1797})
class BetaTCVAE(VAE):
    """BetaTCVAE(input_dim, latent_dim, alpha=1, beta=6, gamma=1): the MLP VAE with the beta-TC loss.

    Only what the loss charges for the KL changes (`penalty`): `elbo`, `log_weights` and
    `log_likelihood` are the shared ones (closed-form KL), so evaluation numbers compare directly.
    The loss's terms per example: reconstruction, kl (closed form), elbo, mi, tc and dim_kl.
    """

    model_type = "betatc"
    config_class = BetaTCVAEConfig
    capabilities = VAE.capabilities.replace(needs_dataset_size=True)

    def __init__(self, input_dim: int = 784, latent_dim: int = 20, config: BetaTCVAEConfig | None = None, **kwargs):
        config = config or BetaTCVAEConfig(input_dim=input_dim, latent_dim=latent_dim, **kwargs)
        super().__init__(config=config)

    def set_dataset_size(self, n: int) -> None:
        """N of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n), unless the config fixed it."""
        if self.config.dataset_size is None:
            self.config.dataset_size = int(n)

    def penalty(self, draw, units, free_bits: float):
        """alpha * MI + config.beta * TC + gamma * dimension-wise KL per example, and those terms.

        The Trainer's KL weight (`beta` of `loss`, e.g. a KL warm-up) scales all three together,
        so at 1 the weights are exactly the config's alpha, beta and gamma. Free bits floor the
        batch-mean dimension-wise KL of each latent dimension at `free_bits` nats. The reported
        `kl` and `elbo` keep the closed-form KL, so they compare directly with other models.
        """
        cfg = self.config
        q = draw.q
        mi, tc, dim_kl_dims = kl_decomposition(draw.z[0], q.mu, q.logvar, cfg.dataset_size, cfg.estimator)
        dim_kl = dim_kl_dims.sum(-1)  # (B,)
        dim_kl_charged = free_bits_kl(dim_kl_dims, free_bits) if free_bits > 0 else dim_kl
        charged = cfg.alpha * mi + cfg.beta * tc + cfg.gamma * dim_kl_charged
        return charged, {"mi": mi, "tc": tc, "dim_kl": dim_kl}
