"""The shared core: one registry that the CLI, loading and the tests all read; declared
capabilities; one ELBO written on hooks; one importance-sampled log p(x) behind both
`model.log_likelihood` and `vaekit.evaluate`; the plain autoencoder as a family like the others."""

import ast
import json
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.capabilities import Capabilities
from vaekit.cli import build_parser, main
from vaekit.models import FAMILIES, BaseVAE
from vaekit.models.registry import cli_options

SRC = Path(vaekit.__file__).parent


def _model_help() -> str:
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if "--model" in a.option_strings)
    return train.help


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_a_cli_choice_has_a_tiny_config_and_loads_back(name, tmp_path):
    family = FAMILIES[name]
    assert f"{name} (" in _model_help()
    assert isinstance(family.cls.capabilities, Capabilities)
    model = family.tiny_model().eval()
    model.save_pretrained(tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m", expect=name)
    assert type(loaded) is family.cls
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == name
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_trains_from_the_cli(name, tmp_path, capsys):
    """`vaekit train --model NAME` runs end to end on the digits and writes a loadable model."""
    out = tmp_path / "run"
    argv = ["train", "--model", name, "--epochs", "1", "--limit", "96", "--latent-dim", "4", "--prior-epochs", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert type(vaekit.load(out)) is FAMILIES[name].cls
    assert (out / "samples.png").exists() and (out / "reconstructions.png").exists()


def test_family_flags_are_declared_once_and_refused_for_other_families(tmp_path, capsys):
    options = cli_options()
    assert options["--flow-length"][1] == ["flow", "conv-flow"] and options["--tc-weight"][1] == ["betatc"]
    argv = ["train", "--model", "vae", "--flow-length", "2", "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--flow-length applies to --model flow or conv-flow" in capsys.readouterr().err


def test_tc_weight_sets_the_total_correlation_weight_and_beta_stays_the_kl_weight(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "--model", "betatc", "--tc-weight", "3", "--beta", "2", "--epochs", "1", "--limit", "64",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert vaekit.load(out).config.beta == 3.0
    assert json.loads((out / "train_config.json").read_text())["beta"] == 2.0


@pytest.mark.parametrize("name", ["vae", "cvae", "flow", "hvae"])
def test_log_likelihood_is_the_number_evaluate_reports(name, digits_data):
    """Same seed and k: the per-example log p(x) of the model is exactly what evaluate averages."""
    torch.manual_seed(0)
    model = FAMILIES[name].tiny_model().eval()
    x = (digits_data.x[:12] > 0.5).float()
    y = digits_data.y[:12]
    labels = y if model.conditional else None
    log_px = model.log_likelihood(x, labels, k=40, seed=3)
    assert log_px.shape == (12,) and log_px.dtype == torch.float64
    report = vaekit.evaluate(model, (x, y), k=40, seed=3, binarize=None, progress=False)
    assert report["nll"] == pytest.approx(-log_px.mean().item(), abs=1e-9)
    assert not torch.equal(log_px, model.log_likelihood(x, labels, k=40, seed=4))  # the seed matters


@pytest.mark.parametrize("cls", [vaekit.FlowVAE, vaekit.ConvFlowVAE, vaekit.HierarchicalVAE, vaekit.BetaTCVAE,
                                 vaekit.CVAE, vaekit.ConvVAE])
def test_the_elbo_is_written_once(cls):
    """Families say what differs through hooks; none carries its own copy of the objectives."""
    for name in ("loss", "elbo", "log_weights", "sample_posterior", "log_likelihood"):
        assert not any(name in vars(k) for k in cls.__mro__ if k is not BaseVAE and issubclass(k, BaseVAE)), name


def test_no_module_sniffs_capabilities_and_io_knows_no_models():
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "inspect.signature" not in text, path
        assert 'getattr(model, "conditional"' not in text, path
    imported = {node.module for node in ast.walk(ast.parse((SRC / "io.py").read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert not any(m and ("models" in m or "loading" in m) for m in imported)


def test_the_flow_posterior_is_the_flowed_distribution():
    torch.manual_seed(0)
    model = FAMILIES["flow"].tiny_model()
    q = model.posterior(torch.rand(5, 64))
    z, log_q = q.rsample_with_log_prob((3,))
    assert z.shape == (3, 5, 4) and torch.equal(q.log_prob(z), log_q)
    base = torch.distributions.Independent(torch.distributions.Normal(q.mu, (0.5 * q.logvar).exp()), 1)
    assert not torch.allclose(log_q, base.log_prob(z))  # the flows change the density
    with pytest.raises(NotImplementedError):
        q.log_prob(torch.zeros(5, 4))


def test_common_noise_gives_the_same_elbo_whatever_the_batch(digits_data):
    torch.manual_seed(0)
    model = FAMILIES["vae"].tiny_model().eval()
    x = digits_data.x[:6]
    noise = torch.randn(7, 1, 4)
    whole = model.elbo(x, noise=noise)
    parts = torch.cat([model.elbo(x[:2], noise=noise), model.elbo(x[2:], noise=noise)])
    assert torch.allclose(whole, parts, atol=1e-5)


def test_the_plain_autoencoder_reconstructs_but_its_prior_samples_are_plain_decodes(digits_data, tmp_path):
    """The chapter's 28.1 baseline: trained on reconstruction only; `sample` decodes N(0, I) codes."""
    torch.manual_seed(0)
    ae = vaekit.Autoencoder(64, 4, hidden_dims=(32,), likelihood="gaussian", sigma=0.2)
    x = digits_data.x[:256].flatten(1)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    before = ae.loss(x).loss.item()
    for _ in range(150):
        out = ae.loss(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert set(out.terms) == {"reconstruction"} and out.loss.item() < 0.5 * before
    ae.eval()
    torch.manual_seed(5)
    samples = ae.sample(8)
    torch.manual_seed(5)
    assert torch.equal(samples, ae.decode(torch.randn(8, 4)))
    ae.save_pretrained(tmp_path / "ae")
    assert torch.equal(vaekit.load(tmp_path / "ae").reconstruct(x[:4]), ae.reconstruct(x[:4]))
    report = vaekit.evaluate(ae, x[:64], k=10, progress=False)
    assert report["nll"] is None and report["elbo"] is None and report["recon_error"] > 0
    with pytest.raises(vaekit.InputError, match="autoencoder"):
        ae.log_likelihood(x[:4], k=5)


class ShiftedPrior(torch.nn.Module):
    """p(z) = N(m, s^2 I): a stand-in for a learned prior."""

    def __init__(self, dim, m=0.5, s=2.0):
        super().__init__()
        self.loc, self.scale = torch.full((dim,), m), torch.full((dim,), s)

    def forward(self):
        return torch.distributions.Independent(torch.distributions.Normal(self.loc, self.scale), 1)


def test_a_swapped_prior_reaches_sampling_the_kl_and_the_likelihood(digits_data, tmp_path):
    torch.manual_seed(0)
    model = FAMILIES["vae"].tiny_model().eval()
    x = (digits_data.x[:6] > 0.5).float()
    standard = model.log_likelihood(x, k=50, seed=1)
    model.set_prior(ShiftedPrior(4))
    assert model.prior().mean[0] == 0.5
    torch.manual_seed(2)
    z = model.sample_prior(20000)
    assert abs(z.mean().item() - 0.5) < 0.05 and abs(z.std().item() - 2.0) < 0.05
    # the KL is now Monte Carlo; averaged over many draws it matches the closed form Gaussian KL
    q = model.posterior(x)
    exact = torch.distributions.kl_divergence(
        torch.distributions.Independent(torch.distributions.Normal(q.mu, q.stddev), 1), model.prior())
    with torch.no_grad():
        mc = torch.stack([model.kl(next(iter(model.draws(x, None, 4000))))]).mean(1)[0]
    assert torch.allclose(mc, exact, atol=0.15)
    shifted = model.log_likelihood(x, k=50, seed=1)  # the general path: log_weights with the new prior
    assert not torch.allclose(shifted, standard)
    with pytest.raises(vaekit.InputError, match="set_prior"):
        model.save_pretrained(tmp_path / "m")
    model.set_prior(None)
    assert torch.equal(model.log_likelihood(x, k=50, seed=1), standard)
