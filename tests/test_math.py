"""The mathematics: KL in closed form against Monte Carlo, likelihoods against hand formulas,
the IWAE bound tightening with k, and importance sampling on a model with an exact log p(x)."""

import math

import pytest
import torch
from torch.distributions import kl_divergence

from vaekit import VAE, vae_loss
from vaekit.distributions import diagonal_gaussian, make_likelihood, standard_normal
from vaekit.objectives import free_bits_kl, gaussian_kl_per_dim, iwae_bound


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4) * 0.5
    q, p = diagonal_gaussian(mu, logvar), standard_normal((4,), mu)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    exact = gaussian_kl_per_dim(mu, logvar).sum(-1)
    assert torch.allclose(mc, exact, atol=0.03)
    assert torch.allclose(kl_divergence(q, p), exact, atol=1e-5)


def test_chapter_kl_formula_equals_distribution_kl():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    chapter = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert torch.allclose(chapter, gaussian_kl_per_dim(mu, logvar).sum(), atol=1e-5)


def test_model_loss_equals_chapter_loss_per_example():
    torch.manual_seed(0)
    model = VAE(20, 3, hidden_dims=(16,))
    x = torch.rand(7, 20)
    torch.manual_seed(1)
    out = model.loss(x)
    torch.manual_seed(1)
    x_recon, mu, logvar = model(x)
    assert torch.allclose(out.loss * 7, vae_loss(x_recon, x, mu, logvar), rtol=1e-5)


def test_likelihood_log_probs_match_formulas():
    logits, x = torch.randn(4, 6), torch.rand(4, 6)
    bern = make_likelihood("bernoulli")(logits, 1).log_prob(x)
    p = torch.sigmoid(logits)
    assert torch.allclose(bern, (x * p.log() + (1 - x) * (1 - p).log()).sum(-1), atol=1e-5)
    gauss = make_likelihood("gaussian", sigma=0.5)(logits, 1).log_prob(x)
    expected = (-0.5 * ((x - logits) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(gauss, expected, atol=1e-5)
    params = torch.randn(4, 12)
    learned = make_likelihood("gaussian-learned")(params, 1)
    assert torch.allclose(learned.mean, params[:, :6])
    assert torch.allclose(learned.stddev, params[:, 6:].exp())
    floored = make_likelihood("gaussian-learned", min_sigma=0.5)(params, 1)
    assert torch.allclose(floored.stddev, params[:, 6:].exp().clamp(min=0.5))


def test_free_bits_floors_each_dimension():
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]])  # batch means: 0.2 and 3.0
    charged = free_bits_kl(kl, 0.5)
    assert torch.allclose(charged.mean(), torch.tensor(0.5 + 3.0))
    kl.requires_grad_(True)
    free_bits_kl(kl, 0.5).mean().backward()
    assert torch.allclose(kl.grad[:, 0], torch.zeros(2))  # no pressure below the floor
    assert torch.allclose(kl.grad[:, 1], torch.full((2,), 0.5))


@pytest.fixture(scope="module")
def trained_small_vae(digits_data):
    torch.manual_seed(0)
    model = VAE(64, 8, hidden_dims=(64,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = digits_data.x.view(len(digits_data.x), -1)
    for _ in range(300):
        idx = torch.randint(0, len(x), (128,))
        loss = model.loss(x[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[:300]


def test_iwae_bound_tightens_with_k(trained_small_vae):
    model, x = trained_small_vae
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = [torch.stack([iwae_bound(model.log_weights(x, k=k)) for _ in range(20)]).mean()
                  for k in (1, 5, 50)]
        elbo = model.elbo(x, n_samples=50).mean()
    assert abs(bounds[0] - elbo) < 0.3  # k=1 is the ELBO
    assert bounds[0] < bounds[1] < bounds[2]


def test_log_likelihood_invariant_to_chunking(trained_small_vae):
    model, x = trained_small_vae
    torch.manual_seed(0)
    a = model.log_likelihood(x[:50], k=600, chunk=600)
    torch.manual_seed(0)
    b = model.log_likelihood(x[:50], k=600, chunk=137)
    assert a.dtype == torch.float64
    assert torch.allclose(a.mean(), b.mean(), atol=0.05)
