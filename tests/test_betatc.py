"""beta-TC-VAE: the minibatch estimate of the aggregate posterior against an exact mixture density,
the KL decomposition identity, how the warm-up beta meets the config's weights, training, save/load."""

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import vaekit
from vaekit.distributions import InputError, diagonal_gaussian
from vaekit.models.betatc import (
    BetaTCVAE,
    BetaTCVAEConfig,
    aggregate_log_density,
    kl_decomposition,
    log_importance_weights,
)
from vaekit.objectives import gaussian_kl_per_dim


@pytest.fixture(scope="module")
def digits():
    """64 digits, flattened to (64, 64) with values in [0, 1]."""
    return torch.tensor(load_digits().data[:64] / 16.0, dtype=torch.float32)


def small_model(**kw):
    return BetaTCVAE(64, 4, hidden_dims=(32,), **kw)


def random_posteriors(B, L, seed=0):
    """A batch of diagonal Gaussian posteriors (mu, logvar) and one sample z from each; all (B, L)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(B, L, generator=g, dtype=torch.float64)
    logvar = torch.randn(B, L, generator=g, dtype=torch.float64) * 0.5 - 1.0
    z = mu + torch.exp(0.5 * logvar) * torch.randn(B, L, generator=g, dtype=torch.float64)
    return z, mu, logvar


def exact_aggregate(mu, logvar):
    """q(z) = (1/B) sum_j q(z|x_j) as a mixture, and its per-dimension marginals q(z_d)."""
    B, L = mu.shape
    std = torch.exp(0.5 * logvar)
    weights = Categorical(logits=torch.zeros(B, dtype=mu.dtype))
    joint = MixtureSameFamily(weights, Independent(Normal(mu, std), 1))
    marginals = MixtureSameFamily(
        Categorical(logits=torch.zeros(L, B, dtype=mu.dtype)), Normal(mu.T, std.T)  # batch (L,), components B
    )
    return joint, marginals


# ---- the estimator ---------------------------------------------------------------------------
def test_stratified_estimate_is_exact_when_the_batch_is_the_dataset():
    z, mu, logvar = random_posteriors(24, 3)
    joint, marginals = exact_aggregate(mu, logvar)
    log_qz, log_qz_dims = aggregate_log_density(z, mu, logvar, dataset_size=24, estimator="stratified")
    assert log_qz.shape == (24,) and log_qz_dims.shape == (24, 3)
    assert torch.allclose(log_qz, joint.log_prob(z), atol=1e-10)
    assert torch.allclose(log_qz_dims, marginals.log_prob(z), atol=1e-10)  # z (B, L) against batch (L,)
    # dataset_size=None means the same thing
    none_qz, _ = aggregate_log_density(z, mu, logvar, dataset_size=None)
    assert torch.allclose(none_qz, log_qz)


def test_mws_is_chen_et_al_formula_low_by_log_n():
    z, mu, logvar = random_posteriors(16, 3, seed=1)
    joint, marginals = exact_aggregate(mu, logvar)
    N = 1000
    log_qz, log_qz_dims = aggregate_log_density(z, mu, logvar, dataset_size=N, estimator="mws")
    # log (1/(N M)) sum_j q(z_i|x_j) = log q_batch(z_i) - log N
    assert torch.allclose(log_qz, joint.log_prob(z) - math.log(N), atol=1e-10)
    assert torch.allclose(log_qz_dims, marginals.log_prob(z) - math.log(N), atol=1e-10)


@pytest.mark.parametrize("M,N", [(1, 10), (5, 5), (8, 100), (32, 60000)])
def test_importance_weights_rows_sum_to_one(M, N):
    w = log_importance_weights(M, N, "stratified").double().exp()
    assert w.shape == (M, M)
    assert torch.allclose(w.sum(1), torch.ones(M, dtype=torch.float64))
    own = 1.0 / N if M > 1 else 1.0  # a lone posterior stands for the whole data set
    assert torch.allclose(w.diagonal(), torch.full((M,), own, dtype=torch.float64))
    with pytest.raises(InputError):
        log_importance_weights(M, N, "bogus")


def test_stratified_mutual_information_is_at_most_log_n_per_example():
    """q(z_i) >= q(z_i|x_i) / N, so the MI estimate can never exceed the entropy log N of the index."""
    torch.manual_seed(2)
    z, mu, logvar = random_posteriors(32, 4, seed=2)
    mu = mu * 10  # well separated posteriors: the estimate sits right at the bound
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    for N in [32, 500, 60000]:
        mi, _, _ = kl_decomposition(z, mu, logvar, dataset_size=N)
        assert (mi <= math.log(N) + 1e-9).all()
        assert mi.mean() > math.log(N) - 0.1


@pytest.mark.parametrize("estimator", ["stratified", "mws"])
def test_decomposition_telescopes_to_the_monte_carlo_kl(estimator):
    """mi + tc + sum_d dim_kl = log q(z|x) - log p(z) exactly, for any estimate of q(z)."""
    z, mu, logvar = random_posteriors(20, 5, seed=3)
    mi, tc, dim_kl = kl_decomposition(z, mu, logvar, dataset_size=1000, estimator=estimator)
    assert mi.shape == tc.shape == (20,) and dim_kl.shape == (20, 5)
    mc_kl = diagonal_gaussian(mu, logvar).log_prob(z) - Independent(Normal(0.0, torch.ones_like(z)), 1).log_prob(z)
    assert torch.allclose(mi + tc + dim_kl.sum(-1), mc_kl, atol=1e-10)


def test_decomposition_estimates_the_closed_form_kl_on_a_large_batch():
    """With dataset_size = batch, the three terms average to the closed-form KL (up to sampling noise),
    and the estimated MI and TC are the non-negative information quantities they stand for."""
    torch.manual_seed(0)
    model = small_model(alpha=1.0, beta=1.0, gamma=1.0)
    with torch.no_grad():  # spread the posteriors apart so that every term is several nats
        model.fc_mu.weight.mul_(20.0)
        model.fc_logvar.bias.fill_(-3.0)
        out = model.loss(torch.rand(512, 64))  # dataset_size None: the batch is the data set
    t = out.terms
    total = t["mi"] + t["tc"] + t["dim_kl"]  # (512,): single-sample Monte Carlo KL per example
    noise = total.std() / math.sqrt(len(total))
    assert t["kl"].mean() > 5.0
    assert abs(total.mean() - t["kl"].mean()) < 4 * noise
    assert 1.0 < t["mi"].mean() and t["mi"].max() <= math.log(512) + 1e-5
    assert t["tc"].mean() > 4 * t["tc"].std() / math.sqrt(512)  # a clearly positive TC


# ---- the model -------------------------------------------------------------------------------
def test_terms_shapes_and_the_true_elbo(digits):
    torch.manual_seed(0)
    model = small_model(dataset_size=1797)
    out = model.loss(digits)
    assert torch.isfinite(out.loss)
    assert set(out.terms) == {"reconstruction", "kl", "elbo", "mi", "tc", "dim_kl"}
    for term in out.terms.values():
        assert term.shape == (64,) and torch.isfinite(term).all()
    # kl and elbo are the closed-form ones, not the weighted decomposition
    torch.manual_seed(1)
    out = model.loss(digits)
    torch.manual_seed(1)
    mu, logvar = model.encode(digits)
    z = model.reparameterize(mu, logvar)
    assert torch.allclose(out.terms["kl"], gaussian_kl_per_dim(mu, logvar).sum(-1))
    assert torch.allclose(out.terms["elbo"], model.likelihood(z).log_prob(digits) - out.terms["kl"])
    mi, tc, dim_kl = kl_decomposition(z, mu, logvar, dataset_size=1797)
    assert torch.allclose(out.terms["mi"], mi) and torch.allclose(out.terms["tc"], tc)
    assert torch.allclose(out.terms["dim_kl"], dim_kl.sum(-1))


def test_warmup_beta_scales_all_kl_terms_and_the_config_weights_each(digits):
    torch.manual_seed(0)
    model = small_model(alpha=0.5, beta=6.0, gamma=2.0, dataset_size=1797)

    def loss_at(beta, free_bits=0.0):
        torch.manual_seed(7)
        return model.loss(digits, beta=beta, free_bits=free_bits)

    out0 = loss_at(0.0)
    assert torch.allclose(out0.loss, out0.terms["reconstruction"].mean())
    for w in [0.3, 1.0]:
        out = loss_at(w)
        t = out.terms
        penalty = 0.5 * t["mi"] + 6.0 * t["tc"] + 2.0 * t["dim_kl"]
        assert torch.allclose(out.loss, (t["reconstruction"] + w * penalty).mean())
    # free bits floor each dimension's batch-mean dimension-wise KL
    t = loss_at(1.0).terms
    floor = 5.0  # nats per dimension, above every dimension's estimate here
    out_fb = loss_at(1.0, free_bits=floor)
    expected = t["reconstruction"] + 0.5 * t["mi"] + 6.0 * t["tc"]
    assert torch.allclose(out_fb.loss, expected.mean() + 2.0 * floor * 4, rtol=1e-5)


def test_gradients_reach_all_parameters(digits):
    torch.manual_seed(0)
    model = small_model(dataset_size=1797)
    model.loss(digits).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_loss_falls(digits):
    torch.manual_seed(0)
    model = small_model(dataset_size=1797)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        out = model.loss(digits)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert math.isfinite(last) and last < 0.85 * first, (first, last)


def test_save_load_round_trip(digits, tmp_path):
    torch.manual_seed(0)
    model = small_model(alpha=0.5, beta=4.0, gamma=2.0, dataset_size=1797, estimator="mws").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    vaekit.save_pretrained(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is BetaTCVAE and loaded.config == model.config
    x = digits[:16]
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x)):
            assert torch.equal(a, b)
        torch.manual_seed(3)
        out_a = model.loss(x)
        torch.manual_seed(3)
        out_b = loaded.loss(x)
        torch.manual_seed(4)
        lw_a = model.log_weights(x, k=4)
        torch.manual_seed(4)
        lw_b = loaded.log_weights(x, k=4)
    assert torch.equal(out_a.loss, out_b.loss) and torch.equal(lw_a, lw_b)


def test_config_rejects_bad_values():
    with pytest.raises(InputError):
        BetaTCVAEConfig(estimator="mss")
    with pytest.raises(InputError):
        BetaTCVAEConfig(dataset_size=0)
    assert BetaTCVAEConfig(hidden_dims=[8]).hidden_dims == (8,)
