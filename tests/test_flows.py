"""Normalizing flows and the flow-posterior VAE: log-determinants against autograd Jacobians, the
IAF's autoregressive mask, planar invertibility, and FlowVAE's bounds, gradients, save/load and training."""

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch.autograd.functional import jacobian

import vaekit
from vaekit.distributions import InputError, diagonal_gaussian
from vaekit.flows import FLOWS, IAFLayer, PlanarFlow, Reverse, build_flows
from vaekit.models.flow import ConvFlowVAE, FlowVAE, FlowVAEConfig


@pytest.fixture(scope="module")
def digits():
    """64 digits, flattened to (64, 64) with values in [0, 1]."""
    return torch.tensor(load_digits().data[:64] / 16.0, dtype=torch.float32)


def small_flow_vae(flow="iaf", **kw):
    return FlowVAE(64, 4, hidden_dims=(32,), flow=flow, flow_length=2, flow_hidden=16, **kw)


def log_abs_det_by_autograd(f, z):
    """log |det df/dz| at one point z of shape (L,), from the full Jacobian."""
    return torch.linalg.slogdet(jacobian(f, z)).logabsdet


# ---- log-determinants -------------------------------------------------------------------------
LAYERS = {
    "planar-amortized": lambda L, C: PlanarFlow(L, context_dim=C),
    "planar-amortized-mlp": lambda L, C: PlanarFlow(L, context_dim=C, hidden=8),
    "planar-free": lambda L, C: PlanarFlow(L),
    "iaf-amortized": lambda L, C: IAFLayer(L, context_dim=C, hidden=12),
    "iaf-free": lambda L, C: IAFLayer(L, hidden=12),
    "iaf-chain": lambda L, C: build_flows("iaf", 3, L, C, hidden=12),
    "planar-chain": lambda L, C: build_flows("planar", 3, L, C),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("L", [3, 5])
def test_log_abs_det_matches_autograd_jacobian(kind, L):
    torch.manual_seed(L)
    C = 6
    layer = LAYERS[kind](L, C).double()
    with torch.no_grad():  # larger parameters than at initialisation, so the maps are far from identity
        for p in layer.parameters():
            p.mul_(3.0)
    largest = 0.0
    for _ in range(4):
        z, h = torch.randn(L, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
        z_new, log_det = layer(z, h)
        assert z_new.shape == (L,) and log_det.shape == ()
        expected = log_abs_det_by_autograd(lambda v: layer(v, h)[0], z)
        assert torch.allclose(log_det, expected, atol=1e-9), (log_det, expected)
        largest = max(largest, abs(log_det.item()))
    assert largest > 1e-2  # the test is not passing on a volume-preserving map


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_batched_log_abs_det_has_leading_shape_and_matches_per_point(name):
    torch.manual_seed(0)
    L, C = 4, 6
    chain = build_flows(name, 2, L, C, hidden=12).double()
    z, h = torch.randn(3, 5, L, dtype=torch.float64), torch.randn(5, C, dtype=torch.float64)  # (k, B, L), (B, C)
    z_new, log_det = chain(z, h)
    assert z_new.shape == (3, 5, L) and log_det.shape == (3, 5)
    for i, b in [(0, 0), (2, 4), (1, 3)]:
        one_z, one_det = chain(z[i, b], h[b])
        assert torch.allclose(one_z, z_new[i, b]) and torch.allclose(one_det, log_det[i, b])


def test_reverse_sits_between_iaf_layers_only():
    iaf, planar = build_flows("iaf", 3, 4, 0), build_flows("planar", 3, 4, 0)
    assert [type(m) for m in iaf.layers] == [IAFLayer, Reverse, IAFLayer, Reverse, IAFLayer]
    assert [type(m) for m in planar.layers] == [PlanarFlow] * 3
    assert len(build_flows("iaf", 0, 4, 0).layers) == 0
    with pytest.raises(InputError):
        build_flows("radial", 2, 4, 0)


# ---- the IAF's autoregressive structure ------------------------------------------------------
@pytest.mark.parametrize("L,hidden,context_dim", [(3, 4, 5), (5, 16, 0), (5, 9, 3)])
def test_iaf_outputs_depend_only_on_earlier_inputs(L, hidden, context_dim):
    torch.manual_seed(1)
    layer = IAFLayer(L, context_dim=context_dim, hidden=hidden).double()
    h = torch.randn(context_dim, dtype=torch.float64) if context_dim else None
    z = torch.randn(L, dtype=torch.float64)
    strictly_lower = torch.ones(L, L, dtype=torch.bool).tril(-1)  # [i, j] True where j < i
    for k in range(2):  # m, then s
        J = jacobian(lambda v: layer.autoregressive_params(v, h)[k], z)  # (L, L): d out_i / d z_j
        assert (J[~strictly_lower] == 0).all()  # no dependence on z_j for j >= i
        assert (J[strictly_lower] != 0).all()  # and every earlier variable is used (hidden >= L - 1)


def test_iaf_jacobian_is_triangular_with_diagonal_sigma():
    torch.manual_seed(2)
    L = 4
    layer = IAFLayer(L, hidden=10).double()
    z = torch.randn(L, dtype=torch.float64)
    J = jacobian(lambda v: layer(v)[0], z)
    assert torch.equal(J, J.tril())
    sigma = torch.sigmoid(layer.autoregressive_params(z)[1])
    assert torch.allclose(J.diagonal(), sigma)


def test_iaf_starts_close_to_identity():
    layer = IAFLayer(6, hidden=16)
    z = torch.randn(100, 6)
    z_new, _ = layer(z)
    assert (z_new - z).abs().mean() < 0.5 * z.abs().mean()  # forget bias: sigma ~ sigmoid(2) = 0.88


# ---- planar invertibility --------------------------------------------------------------------
def test_planar_u_hat_keeps_w_dot_u_above_minus_one():
    torch.manual_seed(3)
    L = 4
    layer = PlanarFlow(L).double()
    for scale in [-100.0, -10.0, -1.0, 0.0, 1.0, 10.0]:
        with torch.no_grad():
            w = torch.randn(L, dtype=torch.float64)
            layer.raw.copy_(torch.cat([scale * w, w, torch.randn(1, dtype=torch.float64)]))  # u = scale * w
        u_hat, w_out, _ = layer.planar_params()
        assert (w_out * u_hat).sum() >= -1.0
        # Adversarial u (w.u << -1) would fold the map without u_hat; with it, det > 0 everywhere.
        for _ in range(5):
            z = 3 * torch.randn(L, dtype=torch.float64)
            sign, _ = torch.linalg.slogdet(jacobian(lambda v: layer(v)[0], z))
            assert sign > 0
        # f is strictly increasing along w: invertible on the line where it could fold.
        line = torch.linspace(-6, 6, 201, dtype=torch.float64)[:, None] * w / w.norm()  # (201, L)
        proj = (layer(line)[0] * w).sum(-1)
        assert (proj.diff() > 0).all()


def test_amortized_planar_u_hat_holds_per_example():
    torch.manual_seed(4)
    layer = PlanarFlow(3, context_dim=5).double()
    with torch.no_grad():
        layer.amortizer.weight.mul_(20.0)
    h = torch.randn(200, 5, dtype=torch.float64)
    u_hat, w, _ = layer.planar_params(h)  # (200, 3) each
    w_u = (w * u_hat).sum(-1)
    assert (w_u < -1.0 + 1e-6).any()  # these weights do reach the boundary that u_hat protects
    assert (w_u >= -1.0 - 1e-9).all()  # rounding only
    z = torch.randn(200, 3, dtype=torch.float64)
    assert torch.isfinite(layer(z, h)[1]).all()  # det > 0 even at the boundary
    with pytest.raises(ValueError):
        layer(torch.randn(3))  # amortized layers need a context


# ---- FlowVAE ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_flow_vae_log_q_is_the_change_of_variables_density(flow):
    """log q(z_K|x) from sample_posterior equals log N(z0) - log|det J| of the whole chain, per point."""
    torch.manual_seed(5)
    model = small_flow_vae(flow).double()
    x = torch.rand(3, 64, dtype=torch.float64)
    torch.manual_seed(6)
    z, log_q = model.sample_posterior(x, k=2)  # (2, 3, 4), (2, 3)
    assert z.shape == (2, 3, 4) and log_q.shape == (2, 3)
    torch.manual_seed(6)
    mu, logvar = model.encode(x)
    z0 = diagonal_gaussian(mu, logvar).rsample((2,))  # the same base samples
    h = model.encoder(x)
    for i in range(2):
        for b in range(3):
            f = lambda v: model.flows(v, h[b])[0]  # noqa: E731
            assert torch.allclose(f(z0[i, b]), z[i, b])
            expected = diagonal_gaussian(mu[b], logvar[b]).log_prob(z0[i, b]) - log_abs_det_by_autograd(f, z0[i, b])
            assert torch.allclose(log_q[i, b], expected, atol=1e-8)


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_flow_vae_loss_finite_and_gradients_reach_all_parameters(flow, digits):
    torch.manual_seed(0)
    model = small_flow_vae(flow)
    out = model.loss(digits[:32])
    assert torch.isfinite(out.loss)
    assert set(out.terms) == {"reconstruction", "kl", "elbo"}
    for term in out.terms.values():
        assert term.shape == (32,) and torch.isfinite(term).all()
    assert torch.allclose(out.terms["elbo"], -out.terms["reconstruction"] - out.terms["kl"])
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert any(n.startswith("flows.") for n, _ in model.named_parameters())


def test_flow_vae_chapter_api_shapes(digits):
    torch.manual_seed(0)
    model = small_flow_vae()
    mu, logvar = model.encode(digits[:5])
    assert mu.shape == logvar.shape == (5, 4)
    x_recon, mu2, logvar2 = model(digits[:5])
    assert x_recon.shape == (5, 64) and ((x_recon >= 0) & (x_recon <= 1)).all()
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    one, mu1, _ = model(digits[0])
    assert one.shape == (64,) and mu1.shape == (4,)
    assert model.sample(3).shape == (3, 64)
    # forward decodes the *flowed* sample: with the same noise, x_recon = decode(z_K), not decode(z0)
    torch.manual_seed(9)
    x_recon, _, _ = model(digits[:5])
    torch.manual_seed(9)
    z, _ = model.sample_posterior(digits[:5], k=1)
    assert torch.allclose(x_recon, model.decode(z[0]))


def test_flow_vae_beta_and_free_bits():
    torch.manual_seed(0)
    model = small_flow_vae()
    x = torch.rand(16, 64)
    torch.manual_seed(1)
    out0 = model.loss(x, beta=0.0)
    assert torch.allclose(out0.loss, out0.terms["reconstruction"].mean())
    torch.manual_seed(1)
    out2 = model.loss(x, beta=2.0)
    assert torch.allclose(out2.loss, (out2.terms["reconstruction"] + 2.0 * out2.terms["kl"]).mean())
    # free bits: the charged KL's batch mean is max(free_bits * L, mean KL)
    floor = out2.terms["kl"].mean().item() / 4 + 1.0  # nats per dimension, above the current KL
    torch.manual_seed(1)
    out_fb = model.loss(x, free_bits=floor)
    assert torch.allclose(out_fb.loss, out_fb.terms["reconstruction"].mean() + floor * 4, rtol=1e-5)


@pytest.fixture(scope="module")
def trained_flow_vae(digits):
    """An IAF FlowVAE after 50 Adam steps on 64 digits, and its loss curve."""
    torch.manual_seed(0)
    model = small_flow_vae()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        out = model.loss(digits)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return model.eval(), losses


def test_flow_vae_loss_falls(trained_flow_vae):
    _, losses = trained_flow_vae
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert math.isfinite(last) and last < 0.85 * first, (first, last)


def test_flow_vae_log_likelihood_bounds_the_elbo(trained_flow_vae, digits):
    model, _ = trained_flow_vae
    torch.manual_seed(0)
    lw = model.log_weights(digits[:16], k=7)
    assert lw.shape == (7, 16) and torch.isfinite(lw).all()
    with torch.no_grad():
        elbo = model.elbo(digits, n_samples=64)  # (64,)
    ll = model.log_likelihood(digits, k=256)  # (64,)
    assert elbo.shape == ll.shape == (64,)
    assert ll.mean() >= elbo.mean()
    assert ll.mean() - elbo.mean() < 20.0  # a bound, not a different quantity


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_flow_vae_save_load_round_trip_is_exact(flow, digits, tmp_path):
    torch.manual_seed(0)
    model = small_flow_vae(flow, flow_context=(flow == "iaf")).eval()
    with torch.no_grad():  # move away from the initialisation so a reinitialised model would differ
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    vaekit.save_pretrained(model, tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert type(loaded) is FlowVAE and loaded.config == model.config
    assert model.state_dict().keys() == loaded.state_dict().keys()
    x = digits[:8]
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x)):
            assert torch.equal(a, b)
        torch.manual_seed(3)
        lw_a = model.log_weights(x, k=4)
        torch.manual_seed(3)
        lw_b = loaded.log_weights(x, k=4)
    assert torch.equal(lw_a, lw_b)


def test_flow_config_rejects_bad_values():
    with pytest.raises(InputError):
        FlowVAEConfig(flow="radial")
    with pytest.raises(InputError):
        FlowVAEConfig(flow_length=-1)
    with pytest.raises(InputError):
        FlowVAEConfig(flow="iaf", flow_hidden=0)
    assert FlowVAEConfig(hidden_dims=[8]).hidden_dims == (8,)  # the MLP config's own checks still run


def test_flow_length_zero_is_a_gaussian_posterior():
    torch.manual_seed(0)
    model = FlowVAE(64, 3, hidden_dims=(16,), flow_length=0)
    x = torch.rand(4, 64)
    torch.manual_seed(1)
    z, log_q = model.sample_posterior(x, k=2)
    assert torch.allclose(log_q, model.posterior(x).log_prob(z))


def test_conv_flow_vae_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ConvFlowVAE(3, image_size=8, channels=(4, 8), fc_dim=16, flow="planar", flow_length=2)
    x = torch.rand(6, 1, 8, 8)
    out = model.loss(x)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(p.grad is not None for p in model.parameters())
    assert model(x)[0].shape == (6, 1, 8, 8)
    model.eval().save_pretrained(tmp_path / "c")
    loaded = vaekit.load(tmp_path / "c")
    assert type(loaded) is ConvFlowVAE
    torch.manual_seed(2)
    a = model.log_weights(x, k=3)
    torch.manual_seed(2)
    b = loaded.log_weights(x, k=3)
    assert torch.equal(a, b)
