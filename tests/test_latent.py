"""Latent-space operations: slerp/lerp maths, interpolation, arithmetic, traversal, tempered sampling."""

import math

import pytest
import torch

import vaekit
from vaekit import latent
from vaekit.distributions import InputError

SMALL = {
    "vae": lambda: vaekit.VAE(64, 4, hidden_dims=(16,), image_shape=(1, 8, 8)),
    "conv": lambda: vaekit.ConvVAE(3, image_size=8, channels=(4, 8), fc_dim=16),
    "cvae": lambda: vaekit.CVAE(64, 4, 3, hidden_dims=(16,)),
}


@pytest.fixture(params=sorted(SMALL))
def setup(request):
    """(model, a batch of 5 examples in its data shape, a label or None)."""
    torch.manual_seed(0)
    model = SMALL[request.param]()
    x = torch.rand(5, *model.data_shape)
    y = 1 if model.conditional else None
    return model, x, y


def mu(model, x, y=None):
    return model.encode(model.as_batch(x), y)[0]


# ---- lerp / slerp ----------------------------------------------------------------------------

def test_slerp_endpoints_are_exact():
    z0, z1 = torch.randn(6), torch.randn(6)
    assert torch.equal(latent.slerp(z0, z1, 0.0), z0)
    assert torch.equal(latent.slerp(z0, z1, 1.0), z1)


def test_slerp_preserves_norm_for_equal_norm_vectors():
    z0, z1 = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    z1 = z1 * z0.norm() / z1.norm()
    path = latent.slerp(z0, z1, torch.linspace(0, 1, 11, dtype=torch.float64))  # (11, 8)
    assert path.shape == (11, 8)
    torch.testing.assert_close(path.norm(dim=-1), z0.norm().expand(11))
    # lerp cuts through the inside of the sphere
    assert latent.lerp(z0, z1, 0.5).norm() < z0.norm()


def test_slerp_midpoint_of_orthogonal_unit_vectors():
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(latent.slerp(e0, e1, 0.5), torch.tensor([1.0, 1.0]) / math.sqrt(2))


def test_slerp_falls_back_to_lerp_for_parallel_and_opposite_vectors():
    z = torch.tensor([1.0, 2.0, 3.0])
    t = torch.linspace(0, 1, 5)
    for other in (2 * z, -z, z):
        out = latent.slerp(z, other, t)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, latent.lerp(z, other, t))


def test_interpolate_latents_shapes_and_validation():
    z0, z1 = torch.zeros(3), torch.ones(3)
    path = latent.interpolate_latents(z0, z1, steps=4)
    torch.testing.assert_close(path[:, 0], torch.tensor([0, 1 / 3, 2 / 3, 1]))
    assert latent.interpolate_latents(torch.randn(2, 3), torch.randn(2, 3), 5, "slerp").shape == (5, 2, 3)
    with pytest.raises(InputError, match="steps"):
        latent.interpolate_latents(z0, z1, steps=1)
    with pytest.raises(InputError, match="method"):
        latent.interpolate_latents(z0, z1, method="cubic")
    with pytest.raises(InputError, match="shapes"):
        latent.interpolate_latents(z0, torch.ones(4))


# ---- operations on models --------------------------------------------------------------------

@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_endpoints_decode_the_posterior_means(setup, method):
    model, x, y = setup
    out = latent.interpolate(model, x[0], x[1], steps=6, method=method, y=y)
    assert out.shape == (6, *model.data_shape)
    with torch.no_grad():
        first, last = model.decode(mu(model, x[:2], y), y)
    torch.testing.assert_close(out[0], first)
    torch.testing.assert_close(out[-1], last)


def test_interpolate_wants_single_examples(setup):
    model, x, y = setup
    with pytest.raises(InputError, match="one example"):
        latent.interpolate(model, x[:2], x[2], y=y)


def test_arithmetic_matches_the_manual_computation(setup):
    model, x, y = setup
    out = latent.arithmetic(model, x[0], x[1], x[2], y=y)
    with torch.no_grad():
        z = mu(model, x[0], y) - mu(model, x[1], y) + mu(model, x[2], y)
        expected = model.decode(z[0], y)
    assert out.shape == model.data_shape
    torch.testing.assert_close(out, expected)


def test_arithmetic_averages_each_group(setup):
    model, x, y = setup
    out = latent.arithmetic(model, x[:2], x[2:4], x[4], y=y)
    with torch.no_grad():
        z = mu(model, x[:2], y).mean(0) - mu(model, x[2:4], y).mean(0) + mu(model, x[4], y)[0]
        expected = model.decode(z, y)
    torch.testing.assert_close(out, expected)


def test_traverse_varies_only_the_chosen_dimension(setup):
    model, x, y = setup
    values = torch.tensor([-2.0, 0.0, 2.0])
    dims = [0, model.latent_dim - 1]
    grid = latent.traverse_latents(model, x[0], dims=dims, values=values, y=y)
    assert grid.shape == (2, 3, model.latent_dim)
    start = mu(model, x[0], y)[0].detach()
    for row, d in enumerate(dims):
        torch.testing.assert_close(grid[row, :, d], values)
        others = [k for k in range(model.latent_dim) if k != d]
        torch.testing.assert_close(grid[row][:, others], start[others].expand(3, -1))
    out = latent.traverse(model, x[0], dims=dims, values=values, y=y)
    assert out.shape == (2, 3, *model.data_shape)
    with torch.no_grad():
        torch.testing.assert_close(out[1, 2], model.decode(grid[1, 2], y))


def test_traverse_defaults_start_at_the_prior_mean(setup):
    model, _, y = setup
    grid = latent.traverse_latents(model, y=y)
    assert grid.shape == (min(model.latent_dim, 10), 9, model.latent_dim)
    torch.testing.assert_close(grid[0, :, 0], torch.linspace(-3, 3, 9))
    assert (grid[0, :, 1:] == 0).all()
    assert latent.traverse(model, y=y).shape == (*grid.shape[:2], *model.data_shape)


@pytest.mark.parametrize("dims", [[99], [-1], "active", [0.5], []])
def test_traverse_rejects_bad_dims(setup, dims):
    model, x, y = setup
    with pytest.raises(InputError):
        latent.traverse(model, x[0], dims=dims, y=y)


def test_active_dims_orders_by_average_kl(setup):
    model, x, y = setup
    dims = latent.active_dims(model, x, k=2, y=y)
    with torch.no_grad():
        m, logvar = model.encode(x, y)
    kl = 0.5 * (m**2 + logvar.exp() - 1 - logvar).mean(0)
    assert dims == kl.argsort(descending=True)[:2].tolist()


def test_sample_temperature_zero_decodes_the_prior_mean(setup):
    model, _, y = setup
    out = latent.sample(model, 3, y=y, temperature=0.0)
    assert out.shape == (3, *model.data_shape)
    with torch.no_grad():
        expected = model.decode(model.prior().mean.expand(3, -1), y)
    torch.testing.assert_close(out, expected)


def test_sample_temperature_scales_the_prior_draw():
    model = SMALL["vae"]()
    torch.manual_seed(1)
    hot = latent.sample(model, 4, temperature=1.0)
    torch.manual_seed(1)
    eps = model.prior().sample((4,))
    with torch.no_grad():
        torch.testing.assert_close(hot, model.decode(eps))
        torch.manual_seed(1)
        torch.testing.assert_close(latent.sample(model, 4, temperature=0.5), model.decode(0.5 * eps))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2, "temperature": -1.0}, {"n": 2, "temperature": float("nan")}])
def test_sample_rejects_bad_requests(kwargs):
    with pytest.raises(InputError):
        latent.sample(SMALL["vae"](), **kwargs)


def test_conditional_model_needs_labels():
    model = SMALL["cvae"]()
    with pytest.raises(InputError, match="labels"):
        latent.sample(model, 2)


def test_model_mode_is_restored_and_no_gradients_are_kept(setup):
    model, x, y = setup
    model.train()
    out = latent.interpolate(model, x[0], x[1], y=y)
    assert model.training and not out.requires_grad
    model.eval()
    latent.sample(model, 2, y=y)
    assert not model.training


def test_models_without_a_continuous_latent_are_refused():
    class Discrete(torch.nn.Module):  # e.g. a VQ-VAE: discrete codes, no latent_dim or Gaussian prior
        data_shape = (4,)

    with pytest.raises(InputError, match="continuous latent"):
        latent.sample(Discrete(), 2)
    with pytest.raises(InputError, match="continuous latent"):
        latent.interpolate(Discrete(), torch.rand(4), torch.rand(4))
