"""A Gaussian mixture over a model's latent codes, fitted after training (the RAE paper's ex-post
density estimate): scikit-learn fits it, torch.distributions samples and scores it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from ..configs import validate
from ..io import save_pretrained

COMPONENT_CHOICES = (1, 2, 5, 10, 20, 50)  # numbers of components the BIC chooses among
MIN_CODES_PER_COMPONENT = 20  # no more components than codes / this
MAX_CODES = 100000  # codes the mixture is fitted to at most (a random subset of more); 10,000 doubled MNIST FIDs


@dataclass
class GaussianMixtureConfig:
    latent_dim: int = 20
    components: int = 10


class GaussianMixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(z; mu_k, Sigma_k) with full covariances."""

    model_type = "gmm"
    config_class = GaussianMixtureConfig
    conditional = False

    def __init__(self, config: GaussianMixtureConfig | None = None, **kwargs):
        super().__init__()
        config = config or GaussianMixtureConfig(**kwargs)
        validate(config)
        self.config = config
        k, d = config.components, config.latent_dim
        self.register_buffer("logits", torch.zeros(k))  # (K,) log mixing weights, up to a constant
        self.register_buffer("means", torch.zeros(k, d))  # (K, L)
        self.register_buffer("scale_tril", torch.eye(d).repeat(k, 1, 1))  # (K, L, L) Cholesky factors

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def distribution(self) -> MixtureSameFamily:
        return MixtureSameFamily(Categorical(logits=self.logits), MultivariateNormal(self.means, scale_tril=self.scale_tril))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes (..., L)."""
        return self.distribution().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, y=None, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (n, L): a component by its weight, then its mean plus `temperature` times its noise."""
        comp = torch.multinomial(self.logits.softmax(0), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator, device=self.means.device)  # (n, L, 1)
        return self.means[comp] + temperature * (self.scale_tril[comp] @ eps).squeeze(-1)

    @classmethod
    def fit(cls, codes: torch.Tensor, components: int | None = None, seed: int = 0) -> "GaussianMixturePrior":
        """Fit to codes (N, L), at most MAX_CODES of them (a random subset); `components` None
        chooses among COMPONENT_CHOICES by the BIC."""
        from concurrent.futures import ThreadPoolExecutor

        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        z = codes.detach().cpu().float().numpy()  # float32 EM: half the time of float64, the same BIC choices
        if len(z) > MAX_CODES:
            z = z[np.random.default_rng(seed).choice(len(z), MAX_CODES, replace=False)]
        choices = [components] if components else \
            [k for k in COMPONENT_CHOICES if k == 1 or k * MIN_CODES_PER_COMPONENT <= len(z)]

        def fit(k):
            return GaussianMixture(k, covariance_type="full", reg_covar=1e-5, random_state=seed).fit(z)

        # the candidates side by side, one per thread torch may use, largest first (numpy releases the
        # GIL), each with a one-thread BLAS (two-thread BLAS in two workers took 2.3x longer)
        workers = max(1, min(torch.get_num_threads(), len(choices)))
        with ThreadPoolExecutor(workers) as pool, threadpool_limits(1 if workers > 1 else None, user_api="blas"):
            fits = list(pool.map(fit, sorted(choices, reverse=True)))
        best = min(fits, key=lambda g: g.bic(z))
        prior = cls(GaussianMixtureConfig(latent_dim=z.shape[1], components=best.n_components))
        prior.logits.copy_(torch.from_numpy(np.log(best.weights_)))
        prior.means.copy_(torch.from_numpy(best.means_))
        prior.scale_tril.copy_(torch.linalg.cholesky(torch.from_numpy(best.covariances_).double()))
        return prior

    def config_dict(self) -> dict:
        return asdict(self.config)

    def save_pretrained(self, folder) -> None:
        save_pretrained(self, folder)

    def extra_repr(self) -> str:
        return f"components={self.config.components}, latent_dim={self.latent_dim}"
