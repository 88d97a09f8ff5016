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


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "gaussian-learned"])
def test_constant_params_decode_to_the_given_mean(name):
    lik = make_likelihood(name)
    mean = torch.tensor([0.01, 0.3, 0.5, 0.97])
    params = lik.constant_params(mean).unsqueeze(0)  # (1, params_per_value * 4)
    assert params.shape == (1, lik.params_per_value * 4)
    assert torch.allclose(lik.mean(params, 1)[0], mean, atol=1e-6)
    if name == "bernoulli":  # never-lit pixels get a finite logit
        assert torch.isfinite(lik.constant_params(torch.tensor([0.0, 1.0]))).all()


def test_init_output_bias_makes_the_untrained_decoder_predict_the_data_mean():
    torch.manual_seed(0)
    x = torch.rand(500, 12) ** 2  # pixel means far from 0.5
    model = VAE(12, 3, hidden_dims=(16,), init="he")
    model.init_output_bias(x)
    with torch.no_grad():
        model.decoder[-1].weight.zero_()  # the bias alone decides the output
    assert torch.allclose(model.decode(torch.randn(7, 3)), x.mean(0).expand(7, -1), atol=1e-5)


def test_mlp_init_keeps_activations_at_unit_scale():
    """He-normal layers before ReLUs, LeCun-normal before the output: the second moment of the
    activations stays about 1 from layer to layer (PyTorch's default halves it at every layer)."""
    from vaekit.nets import mlp

    torch.manual_seed(0)
    net = mlp([512, 512, 512, 512, 512], final_activation=False, init="he")
    h = torch.randn(4000, 512)  # E[h^2] = 1
    for layer in net:
        h = layer(h)
        if isinstance(layer, torch.nn.ReLU):
            assert 0.85 < h.pow(2).mean().item() < 1.15  # pre-activation variance 2, halved by the ReLU
    assert 0.85 < h.pow(2).mean().item() < 1.15  # the output layer: unit variance
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in net if isinstance(m, torch.nn.Linear))


def test_default_init_is_pytorchs_and_leaves_the_output_bias_alone():
    torch.manual_seed(0)
    a = VAE(12, 3, hidden_dims=(16,))
    torch.manual_seed(0)
    b = torch.nn.Linear(12, 16)  # the first layer, drawn by PyTorch's default
    assert torch.equal(a.encoder[0].weight, b.weight)
    before = a.decoder[-1].bias.clone()
    a.init_output_bias(torch.rand(10, 12))
    assert torch.equal(a.decoder[-1].bias, before)
