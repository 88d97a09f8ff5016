"""The hierarchical VAE: shapes at several image sizes, per-group KL terms, exact importance
weights, gradients, save/load, learning on a small batch and ancestral sampling."""

import math

import pytest
import torch
from sklearn.datasets import load_digits

import vaekit.io
from vaekit.distributions import InputError
from vaekit.models import FAMILIES
from vaekit.models.hvae import GaussianMap, HierarchicalVAE, HierarchicalVAEConfig
from vaekit.objectives import iwae_loss, vae_loss


def tiny(image_size=8, **kwargs) -> HierarchicalVAE:
    """A few-thousand-parameter model: two scales, one group each (three for 28x28 below)."""
    settings = dict(image_size=image_size, groups_per_scale=(1, 1), hidden_channels=8, latent_channels=2)
    settings.update(kwargs)
    return HierarchicalVAE(**settings)


@pytest.fixture(scope="module")
def digits():
    """64 scikit-learn digits scaled to [0, 1], as (64, 1, 8, 8) images."""
    images = torch.tensor(load_digits().images[:64], dtype=torch.float32) / 16.0
    return images.unsqueeze(1)  # (64, 1, 8, 8)


def trained_tiny(x, steps=30):
    torch.manual_seed(0)
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(x).loss.backward()
        opt.step()
    return model.eval()


def test_registered_and_config_defaults():
    assert FAMILIES["hvae"].cls is HierarchicalVAE
    model = HierarchicalVAE()
    assert model.config == HierarchicalVAEConfig()
    assert model.latent_shapes == [(8, 7, 7), (8, 7, 7), (8, 14, 14), (8, 14, 14)]
    assert model.latent_dim == 8 * 7 * 7
    assert model.total_latent_dim == 2 * 8 * 49 + 2 * 8 * 196


@pytest.mark.parametrize(
    "image_size, groups, shapes",
    [
        ((28, 28), (2, 1), [(2, 7, 7), (2, 7, 7), (2, 14, 14)]),
        ((8, 8), (1, 1), [(2, 2, 2), (2, 4, 4)]),
        ((10, 13), (1, 1), [(2, 3, 4), (2, 6, 8)]),  # padded to 12x16, outputs cropped back
    ],
)
def test_shapes(image_size, groups, shapes):
    torch.manual_seed(0)
    model = tiny(image_size, groups_per_scale=groups)
    assert model.latent_shapes == shapes
    L, D = model.latent_dim, model.total_latent_dim
    assert L == math.prod(shapes[0]) and D == sum(math.prod(s) for s in shapes)
    x = torch.rand(3, 1, *image_size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, L)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape and mu.shape == (3, L)
    assert model.decode(torch.randn(4, L)).shape == (4, 1, *image_size)
    assert model.decode(torch.randn(4, D)).shape == (4, 1, *image_size)  # a joint code
    assert model.encode(x[0])[0].shape == (L,)  # one unbatched example
    assert model.elbo(x, n_samples=2).shape == (3,)
    assert model.log_weights(x, k=5).shape == (5, 3)
    z, log_q = model.sample_posterior(x, k=4)
    assert z.shape == (4, 3, D) and log_q.shape == (4, 3)
    assert model.likelihood(z).log_prob(x).shape == (4, 3)
    layers = model.layers(x)
    assert [tuple(layer.z.shape[1:]) for layer in layers] == shapes
    with torch.no_grad():
        assert model.sample(2).shape == (2, 1, *image_size)


def test_gaussian_map_density_and_gradients_match_torch_normal():
    """GaussianMap's log_prob (written with log sigma) is Normal's density summed over each map,
    value and gradients, in float64."""
    torch.manual_seed(0)
    mu = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    log_sigma = (0.7 * torch.randn(3, 2, 4, 5, dtype=torch.float64)).requires_grad_()
    z = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    ours = GaussianMap(mu, log_sigma).log_prob(z)
    ref = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).sum((1, 2, 3))
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(ours.sum(), (mu, log_sigma, z))
    ref_grads = torch.autograd.grad(ref.sum(), (mu, log_sigma, z))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-12)


def test_per_layer_kl_terms_are_non_negative_and_sum_to_kl(digits):
    torch.manual_seed(0)
    model = tiny(28, groups_per_scale=(2, 1))
    x = torch.nn.functional.interpolate(digits[:16], size=28)  # (16, 1, 28, 28)
    out = model.loss(x)
    kls = [out.terms[f"kl_{i}"] for i in range(model.num_layers)]
    assert f"kl_{model.num_layers}" not in out.terms
    for kl in kls:
        assert kl.shape == (16,) and (kl >= 0).all()
    assert torch.allclose(torch.stack(kls).sum(0), out.terms["kl"])
    assert torch.allclose(out.terms["elbo"], -out.terms["reconstruction"] - out.terms["kl"])
    assert torch.allclose(out.loss, -out.terms["elbo"].mean())  # beta = 1, no free bits


def test_free_bits_charge_exactly_the_floor_per_latent_channel(digits):
    model = tiny()
    torch.manual_seed(3)
    plain = model.loss(digits)
    torch.manual_seed(3)
    floored = model.loss(digits, free_bits=0.5)
    torch.manual_seed(3)
    layers = model.layers(digits)
    per_channel = torch.cat(  # batch-mean KL of each latent channel of each group: (L * lc,)
        [torch.distributions.kl_divergence(l.q.base_dist, l.p.base_dist).sum((2, 3)).mean(0) for l in layers]
    )
    expected = (0.5 - per_channel).clamp(min=0).sum()
    assert expected > 0
    assert torch.allclose(floored.loss - plain.loss, expected, atol=1e-4)
    assert torch.equal(floored.terms["kl"], plain.terms["kl"])  # the logged KL is the true one


def test_beta_scales_only_the_kl(digits):
    model = tiny()
    torch.manual_seed(0)
    full = model.loss(digits, beta=1.0)
    torch.manual_seed(0)
    half = model.loss(digits, beta=0.5)
    expected = (full.terms["reconstruction"] + 0.5 * full.terms["kl"]).mean()
    assert torch.allclose(half.loss, expected)


def test_log_weights_average_to_the_elbo(digits):
    """E_q[log w] is the ELBO: the Monte Carlo mean of the exact weights matches the analytic-KL ELBO.

    4 x 1000 samples exceed max_eval_batch, so this also checks the chunked, sample-major layout.
    """
    torch.manual_seed(0)
    model = trained_tiny(digits, steps=20)
    x = digits[:4]
    assert 4 * 1000 > model.max_eval_batch
    with torch.no_grad():
        mc = model.log_weights(x, k=1000).mean(0)
        analytic = model.elbo(x, n_samples=1000)
    assert torch.allclose(mc, analytic, atol=0.25), (mc, analytic)  # standard error about 0.02


def test_samples_of_one_image_share_its_encoder_work_exactly(digits):
    """top_down(feats, samples=n) draws what the same pass over n copies of every image draws,
    with the top posterior and the encoder's half of each posterior computed once per image."""
    from vaekit.models.hvae import repeat_samples

    model = tiny(image_size=28, groups_per_scale=(2, 1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # every weight matters
        x = torch.nn.functional.interpolate(digits[:3], size=28)  # (3, 1, 28, 28)
        feats = model.bottom_up(x)
        torch.manual_seed(1)
        params, layers = model.top_down(feats=feats, samples=4)
        torch.manual_seed(1)
        params_copies, layers_copies = model.top_down(feats=[repeat_samples(f, 4) for f in feats])
        assert params.shape == (12, 1, 28, 28)
        torch.testing.assert_close(params, params_copies, atol=1e-5, rtol=1e-5)
        for a, b in zip(layers, layers_copies):
            torch.testing.assert_close(a.q.log_prob(a.z), b.q.log_prob(b.z), atol=1e-4, rtol=1e-5)
        group, h = model.groups[1], torch.randn(12, 8, 7, 7)
        split = group.posterior_delta(h, feats[1], 4)
        torch.testing.assert_close(split, group.posterior(torch.cat([h, repeat_samples(feats[1], 4)], 1)),
                                   atol=1e-5, rtol=1e-5)


def test_log_likelihood_is_above_elbo_after_training(digits):
    model = trained_tiny(digits)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = model.elbo(digits, n_samples=10).mean()
        ll = model.log_likelihood(digits, k=100).mean()
    assert torch.isfinite(ll) and ll >= elbo


def test_gradients_reach_all_parameters_and_are_finite(digits):
    torch.manual_seed(0)
    model = tiny(groups_per_scale=(2, 1))
    out = model.loss(digits, beta=0.5, free_bits=0.1)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_iwae_objective_trains_through_log_weights(digits):
    torch.manual_seed(0)
    model = tiny()
    out = iwae_loss(model, digits[:8], k=3)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.stem[1].weight.grad.abs().sum() > 0


def test_save_load_round_trip_is_exact(digits, tmp_path):
    torch.manual_seed(0)
    model = tiny(groups_per_scale=(2, 1), squeeze_excitation=False).eval()
    vaekit.io.save_pretrained(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is HierarchicalVAE and loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    for run in (lambda m: m.loss(digits).loss, lambda m: m.sample(3), lambda m: m.log_weights(digits[:4], k=3)):
        torch.manual_seed(1)
        a = run(model)
        torch.manual_seed(1)
        b = run(loaded)
        assert torch.equal(a, b)


def test_loss_falls_on_a_small_batch(digits):
    torch.manual_seed(0)
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = model.loss(digits).loss.item()
    for _ in range(60):
        out = model.loss(digits)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.8 * start


def test_ancestral_samples_and_decoding(digits):
    model = trained_tiny(digits, steps=10)
    torch.manual_seed(0)
    with torch.no_grad():
        s = model.sample(6)
        assert s.shape == (6, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
        assert not torch.equal(s[0], s[1])
        assert torch.equal(model.sample(2, temperature=0.0), model.sample(2, temperature=0.0))
        z = torch.randn(3, model.latent_dim)
        assert torch.equal(model.decode(z), model.decode(z))  # lower groups at their prior means
        assert torch.allclose(model.decode(z), model.likelihood(z).mean)


def test_reconstruct_uses_every_group_at_its_posterior_mean(digits):
    model = trained_tiny(digits, steps=10)
    with torch.no_grad():
        recon = model.reconstruct(digits[:5])
        assert recon.shape == (5, 1, 8, 8) and torch.equal(recon, model.reconstruct(digits[:5]))
        assert model.reconstruct(digits[0]).shape == (1, 8, 8)
        # the same as decoding the joint code of posterior means, group by group from the top
        means = []
        feats = model.bottom_up(digits[:5])
        for i in range(model.num_layers):
            given = means + [None] * (model.num_layers - i)
            means.append(model.top_down(feats=feats, given=given, mode="mean")[1][i].q.mean)
        assert torch.allclose(recon, model.decode(model.join_code(means)), atol=1e-6)


def test_chapter_api_forward_and_vae_loss(digits):
    model = tiny()
    recon, mu, logvar = model(digits)
    assert recon.min() >= 0 and recon.max() <= 1
    assert torch.allclose(mu, model.encode(digits)[0])
    loss = vae_loss(recon, digits, mu, logvar)
    assert torch.isfinite(loss) and loss > 0
    q = model.posterior(digits)
    assert q.event_shape == (model.latent_dim,) and model.prior().event_shape == (model.latent_dim,)


def test_bad_configs_and_inputs_raise_one_clear_error():
    with pytest.raises(InputError, match="at least two groups"):
        HierarchicalVAE(groups_per_scale=(1,))
    with pytest.raises(InputError, match="one group count per scale"):
        HierarchicalVAE(groups_per_scale=2)
    model = tiny()
    with pytest.raises(InputError, match="shape"):
        model.loss(torch.rand(2, 1, 9, 9))
    with pytest.raises(InputError, match="top code"):
        model.decode(torch.randn(2, model.latent_dim + 1))
