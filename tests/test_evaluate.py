"""Evaluation: the importance-sampled likelihood against a closed form, and the report and CLI.

The reference is probabilistic PCA, a linear-Gaussian VAE whose log p(x) is known exactly:
z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I)  =>  x ~ N(b, W W^T + sigma^2 I).
"""

import json
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from vaekit import VAE, InputError, evaluate, load
from vaekit.cli import main
from vaekit.evaluate import format_report
from vaekit.importance import GaussianLogWeights, PrunedMLP, importance_log_likelihood, relu_mlp_layers
from vaekit.models.base import BaseVAE

D, L, SIGMA = 6, 2, 0.5


@dataclass
class PPCAConfig:
    input_dim: int = D
    latent_dim: int = L
    likelihood: str = "gaussian"
    sigma: float = SIGMA


class LinearGaussianVAE(BaseVAE):
    """Linear encoder (x -> mu, logvar) and linear decoder with a fixed-sigma Gaussian likelihood."""

    model_type = "test-ppca"
    config_class = PPCAConfig

    def __init__(self, config=None):
        super().__init__(config or PPCAConfig())
        self.encoder = nn.Identity()
        self.fc_mu = nn.Linear(D, L)
        self.fc_logvar = nn.Linear(D, L)
        self.decoder = nn.Linear(L, D)

    @property
    def data_shape(self):
        return (D,)

    def exact_log_px(self, x):
        w, b = self.decoder.weight.double(), self.decoder.bias.double()  # (D, L), (D,)
        cov = w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(b, cov).log_prob(x.double())

    def set_exact_posterior(self):
        """q(z|x) = p(z|x): N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1, diagonal
        because W's columns are orthogonal."""
        w, b = self.decoder.weight.data, self.decoder.bias.data
        s = torch.linalg.inv(torch.eye(L) + w.T @ w / SIGMA**2)
        assert torch.allclose(s, torch.diag(torch.diagonal(s)), atol=1e-6)
        self.fc_mu.weight.data = s @ w.T / SIGMA**2
        self.fc_mu.bias.data = -(s @ w.T @ b) / SIGMA**2
        self.fc_logvar.weight.data.zero_()
        self.fc_logvar.bias.data = torch.diagonal(s).log()


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(0)
    model = LinearGaussianVAE()
    q, _ = torch.linalg.qr(torch.randn(D, L))
    model.decoder.weight.data = q * torch.tensor([2.0, 1.0])  # orthogonal columns, scales 2 and 1
    model.decoder.bias.data = torch.randn(D) * 0.3
    model.set_exact_posterior()
    with torch.no_grad():
        x = model.decoder(torch.randn(200, L)) + SIGMA * torch.randn(200, D)
    return model.eval(), x


def detuned(model):
    """The same model with a worse encoder: shifted means and too wide variances (a wider proposal
    keeps the importance weights' variance finite, so the estimator converges at the usual rate)."""
    worse = LinearGaussianVAE()
    worse.load_state_dict(model.state_dict())
    worse.fc_mu.bias.data += 0.4
    worse.fc_logvar.bias.data += 0.7
    return worse.eval()


def test_exact_posterior_gives_the_exact_likelihood_for_any_k(ppca):
    model, x = ppca
    exact = model.exact_log_px(x)
    for k in (1, 7):
        est, mean_lw = importance_log_likelihood(model, x, k=k)
        assert torch.allclose(est, exact, atol=1e-4)  # every importance weight equals p(x)
        assert torch.allclose(mean_lw, exact, atol=1e-4)


def test_estimator_is_below_for_small_k_and_converges(ppca):
    model, x = ppca
    model = detuned(model)
    exact = model.exact_log_px(x)
    errors, ses = [], []
    for k in (1, 10, 100, 2000):
        est, mean_lw = importance_log_likelihood(model, x, k=k, seed=1)
        assert (mean_lw <= est + 1e-9).all()  # the ELBO of the same samples is below, per example
        diff = est - exact
        errors.append(diff.mean().item())
        ses.append(diff.std().item() / math.sqrt(len(diff)))
    assert errors[0] < -0.5 and errors[0] + 3 * ses[0] < 0  # a clear downward bias at k = 1 (the ELBO)
    assert errors[1] + 3 * ses[1] < 0  # still below in expectation at k = 10
    assert errors[0] < errors[1] < errors[2] < errors[3] + 1e-3  # tightening as k grows
    assert abs(errors[3]) < 0.015  # exact to about 5 standard errors at k = 2000


def test_estimate_above_the_models_elbo(ppca):
    model, x = ppca
    model = detuned(model)
    est, _ = importance_log_likelihood(model, x, k=50)
    with torch.no_grad():
        elbo = model.elbo(x, n_samples=200)  # closed-form KL
    assert est.mean() > elbo.mean()
    report = evaluate(model, x, k=50, progress=False)
    assert report["nll"] <= report["nelbo"]
    assert report["elbo"] == pytest.approx(-report["nelbo"])


def test_invariant_to_batching_and_chunking(ppca):
    model, x = ppca
    model = detuned(model)
    a, _ = importance_log_likelihood(model, x[:40], k=64, batch_size=1, chunk=5)
    b, _ = importance_log_likelihood(model, x[:40], k=64, batch_size=40, chunk=64)
    c, _ = importance_log_likelihood(model, x[:40], k=64, batch_size=7, chunk=9)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
    d, _ = importance_log_likelihood(model, x[:40], k=64, seed=1)
    assert not torch.allclose(a, d, atol=1e-5)  # the seed does change the samples


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian", "learned", "cvae", "conv"])
def test_fast_log_weights_equal_the_models_own(kind, digits_data):
    """The evaluator's log-weights (pruned ReLU-MLP decoder, log q from the noise) are the model's
    log p(x|z) + log p(z) - log q(z|x) for the same z."""
    from vaekit import CVAE, ConvVAE
    from vaekit.data import binarize_fixed

    torch.manual_seed(0)
    x, y = digits_data.x[:5], digits_data.y[:5]
    if kind == "bernoulli":
        model, x, y = VAE(64, 5), binarize_fixed(x), None
    elif kind == "gaussian":
        model, y = VAE(64, 5, likelihood="gaussian", sigma=0.3), None
    elif kind == "learned":
        model, y = VAE(64, 5, likelihood="gaussian-learned"), None
    elif kind == "cvae":
        model = CVAE(64, 5, num_classes=10)
    else:
        model, y = ConvVAE(latent_dim=5, image_size=8, likelihood="gaussian"), None
    model.eval()
    assert (relu_mlp_layers(model) is None) == (kind == "conv")
    with torch.no_grad():
        mu, logvar = model.encode(x, y)
        eps = torch.randn(5, 40, 5)
        fast = GaussianLogWeights(model)(model.as_batch(x), y, mu, logvar, eps, binary=kind == "bernoulli")  # (B, c)
        z = (mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps).transpose(0, 1)  # (c, B, L)
        own = model.likelihood(z, y).log_prob(model.as_batch(x)) + model.prior().log_prob(z) \
            - model.posterior(x, y).log_prob(z)
    assert torch.allclose(fast, own.T, rtol=1e-5, atol=1e-3)


def test_pruned_mlp_equals_the_decoder():
    torch.manual_seed(0)
    model = VAE(30, 4, hidden_dims=(64, 32)).eval()
    z = torch.randn(200, 4) * 0.1 + 1.0  # rows near one point share active units
    with torch.no_grad():
        full = model.decoder(z)
        assert torch.allclose(PrunedMLP(relu_mlp_layers(model))(z), full, atol=1e-5)
        bf16 = PrunedMLP(relu_mlp_layers(model), "bf16")(z)
        assert bf16.dtype == torch.bfloat16 and torch.allclose(bf16.float(), full, atol=0.1)
        unpruned = PrunedMLP(relu_mlp_layers(model), "bf16", prune=False)(z)
        assert torch.allclose(bf16.float(), unpruned.float(), atol=1e-2)
        h = model.decoder[:2](z)
        assert (h.amax(0) <= 0).any()  # some units are inactive on every row: pruning had work to skip


def test_scoring_on_two_cores_gives_the_same_numbers():
    torch.manual_seed(0)
    model = VAE(30, 4, hidden_dims=(32, 16)).eval()
    x = (torch.rand(9, 30) < 0.3).float()
    one, lw_one = importance_log_likelihood(model, x, k=40, batch_size=2, chunk=16)  # one thread (conftest)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two, lw_two = importance_log_likelihood(model, x, k=40, batch_size=2, chunk=16, precision="bf16")
        two32, lw_two32 = importance_log_likelihood(model, x, k=40, batch_size=2, chunk=16)
        assert torch.get_num_threads() == 2  # the workers' single thread does not leak out
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(one, two32, atol=1e-5) and torch.allclose(lw_one, lw_two32, atol=1e-5)
    assert torch.allclose(one, two, atol=0.05) and torch.allclose(lw_one, lw_two, atol=0.05)


def test_sure_pixels_are_scored_without_subnormals():
    torch.manual_seed(0)
    model = VAE(30, 4, hidden_dims=(16,)).eval()
    x = torch.zeros(3, 30)
    scores = []
    for bias in (-80.0, -200.0):  # sure pixels: exp(-80) is a normal float32, exp(-200) a subnormal or zero
        with torch.no_grad():
            model.decoder[-1].weight.zero_()
            model.decoder[-1].bias.fill_(bias)
        scores.append(importance_log_likelihood(model, x, k=50, seed=3)[0])
    assert torch.allclose(scores[0], scores[1], atol=1e-6)  # what the pixels add is below 1e-30 either way


def test_generic_path_is_batching_invariant_within_noise(digits_data):
    from vaekit import FlowVAE

    torch.manual_seed(0)
    model = FlowVAE(64, 3, flow="planar", flow_length=2, likelihood="gaussian", sigma=0.3).eval()
    x = digits_data.x[:30]
    a, lw_a = importance_log_likelihood(model, x, k=100, batch_size=30, chunk=100)
    b, _ = importance_log_likelihood(model, x, k=100, batch_size=10, chunk=40)
    assert (lw_a <= a + 1e-9).all()
    assert abs(a.mean() - b.mean()) < 0.05 * a.abs().mean()


def test_report_keys_and_shapes(digits_data):
    torch.manual_seed(0)
    model = VAE(64, 4)  # Bernoulli: the data are binarized once
    report = evaluate(model, digits_data.subset(slice(0, 50)), k=20, progress=False)
    for key in ("nll", "nll_se", "elbo", "nelbo", "bpd", "bpd_se", "recon_nll", "recon_error", "kl", "kl_se",
                "kl_per_dim", "activity", "active_units", "layer_kl", "perplexity", "n", "k", "seconds"):
        assert key in report
    assert report["n"] == 50 and report["k"] == 20 and report["binarized"] is True
    assert len(report["kl_per_dim"]) == 4 and len(report["activity"]) == 4
    assert report["bpd"] == pytest.approx(report["nll"] / (64 * math.log(2)))
    assert report["layer_kl"] is None and report["perplexity"] is None
    assert report["nll"] <= report["nelbo"]
    assert sum(report["kl_per_dim"]) == pytest.approx(report["kl"], rel=1e-4)
    json.dumps(report)  # JSON-ready
    assert "NLL" in format_report(report)
    gaussian = evaluate(VAE(64, 4, likelihood="gaussian", sigma=0.3), digits_data.x[:20], k=5, progress=False)
    assert gaussian["bpd"] is None and gaussian["binarized"] is False
    limited = evaluate(model, digits_data, k=0, limit=12, progress=False)
    assert limited["n"] == 12 and limited["nll"] is None and limited["bpd_from"] == "nelbo"


def test_active_units_count_only_used_dimensions(digits_data):
    torch.manual_seed(0)
    model = VAE(64, 6, likelihood="gaussian", sigma=0.3).eval()
    with torch.no_grad():
        model.fc_mu.weight[3:] = 0
        model.fc_mu.bias[3:] = 0
        model.fc_logvar.weight[3:] = 0
        model.fc_logvar.bias[3:] = 0
        model.fc_mu.weight[:3] *= 50  # the first three vary strongly with x
    report = evaluate(model, digits_data.x[:100], k=2, progress=False)
    assert report["active_units"] == 3
    assert max(report["activity"][3:]) < 1e-12
    assert report["kl_per_dim"][3:] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_hierarchical_active_units_leave_out_a_group_whose_posterior_is_its_prior(digits_data):
    """A lower group with q = p carries nothing: none of its units is active, although its
    posterior mean varies with x (it follows the prior's mean, which moves with the top group)."""
    from vaekit import HierarchicalVAE

    torch.manual_seed(0)
    hvae = HierarchicalVAE(image_size=8, groups_per_scale=(1, 1), latent_channels=2, hidden_channels=8,
                           cells_per_group=0).eval()
    with torch.no_grad():
        conv = hvae.groups[1].posterior[1]
        conv.weight.zero_()
        conv.bias.zero_()  # q(z_1 | x, z_0) = p(z_1 | z_0)
        hvae.groups[0].posterior[1].weight.mul_(30)  # the top group varies strongly with x
        hvae.groups[1].prior[1].weight.mul_(30)  # and moves the lower prior's mean with it
    report = evaluate(hvae, digits_data.x[:100], k=0, progress=False)
    top = hvae.latent_dim
    lower = slice(top, hvae.total_latent_dim)
    assert max(report["kl_per_dim"][lower]) == 0.0
    assert max(report["activity"][lower]) > 0.01  # what the covariance criterion would have counted
    assert 0 < report["active_units"] <= top
    assert report["active_units"] == sum(kl > 0.01 for kl in report["kl_per_dim"])


def test_hierarchical_and_vq_reports(digits_data):
    from vaekit import VQVAE, HierarchicalVAE

    torch.manual_seed(0)
    hvae = HierarchicalVAE(image_size=8, groups_per_scale=(1, 1), latent_channels=2, hidden_channels=8,
                           cells_per_group=0)
    report = evaluate(hvae, digits_data.x[:16], k=4, progress=False)
    assert len(report["layer_kl"]) == hvae.num_layers == len(report["layer_kl_se"])
    assert report["latent_dims"] == hvae.total_latent_dim == len(report["kl_per_dim"])
    assert report["nll"] <= report["nelbo"]
    vq = VQVAE(num_codes=8, image_size=8, channels=(8,), code_dim=4, res_blocks=0, prior_channels=8, prior_layers=1)
    report = evaluate(vq, digits_data.x[:16], k=10, progress=False)
    assert report["nll"] is None and 1 <= report["perplexity"] <= 8 and report["bpd_from"] == "nelbo"
    with pytest.raises(InputError):
        evaluate(vq, digits_data.x[:16], precision="bf16", progress=False)


def test_bf16_decoding_stays_close(ppca, digits_data):
    torch.manual_seed(0)
    model = VAE(64, 4).eval()
    x = digits_data.x[:20]
    fp32 = evaluate(model, x, k=30, progress=False)
    bf16 = evaluate(model, x, k=30, progress=False, precision="bf16")
    assert abs(fp32["nll"] - bf16["nll"]) < 0.1
    with pytest.raises(InputError):
        evaluate(model, x, precision="fp16", progress=False)


def test_hierarchical_bf16_and_channels_last_stay_close(digits_data):
    from vaekit import HierarchicalVAE
    from vaekit.data import binarize_fixed

    torch.manual_seed(0)
    model = HierarchicalVAE(image_size=8, groups_per_scale=(1, 1), latent_channels=2, hidden_channels=8).eval()
    x = binarize_fixed(digits_data.x[:6], seed=0)
    with torch.no_grad():
        torch.manual_seed(0)
        before = model.elbo(x)
    fp32, _ = importance_log_likelihood(model, x, k=64, seed=1)  # converts the model to channels-last
    bf16, _ = importance_log_likelihood(model, x, k=64, seed=1, precision="bf16")
    assert torch.allclose(fp32, bf16, atol=0.05) and not torch.equal(fp32, bf16)
    assert model.stem[1].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # the layout changed, the function did not
        torch.manual_seed(0)
        assert torch.allclose(model.elbo(x), before, atol=1e-4)


def test_conditional_model_uses_labels(digits_data):
    from vaekit import CVAE

    torch.manual_seed(0)
    model = CVAE(64, 3, num_classes=10)
    report = evaluate(model, digits_data.subset(slice(0, 20)), k=5, progress=False)
    assert report["nll"] <= report["nelbo"]
    with pytest.raises(InputError):
        evaluate(model, digits_data.x[:20], k=5, progress=False)


def test_cli_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-progress", "--limit", "100"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "10", "--json", "--no-progress", "--limit", "30"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "evaluation.json").read_text())
    assert printed == saved
    assert printed["n"] == 30 and printed["k"] == 10 and printed["data"] == "digits"
    assert printed["nll"] <= printed["nelbo"]
    assert main(["evaluate", str(run), "--k", "5", "--no-progress", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "NLL" in out and "evaluation.json" in out
    assert main(["evaluate", str(tmp_path / "missing"), "--k", "5"]) == 2
    assert "No model" in capsys.readouterr().err
    assert main(["evaluate", str(run / "model"), "--k", "5", "--json", "--no-progress", "--limit", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10  # a run's model folder: the run's data
    bare = tmp_path / "bare"
    load(run).save_pretrained(bare)
    assert main(["evaluate", str(bare), "--k", "5"]) == 2  # a bare model folder needs --data
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--k", "-1", "--no-progress"]) == 2
