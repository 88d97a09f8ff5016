"""Fitted priors: the diffusion prior's math, what it learns on a known mixture, the Gaussian
mixture against scikit-learn, saving them with a model, and the commands that fit and use them."""

import json
import math

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.errors import InputError
from vaekit.models.registry import build_model
from vaekit.priors import (GaussianMixturePrior, LatentDiffusion, LatentDiffusionConfig, fit_prior, load_prior,
                           save_prior, saved_priors)
from vaekit.priors.diffusion import cosine_alpha_bar
from vaekit.priors.fit import train_diffusion

MEANS = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])


def mixture(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MEANS[torch.randint(0, 3, (n,), generator=g)] + 0.5 * torch.randn(n, 2, generator=g)


def test_forward_noising_matches_the_chain_of_single_steps():
    """q(z_t | z_0) in closed form equals t steps of z <- sqrt(1 - b) z + sqrt(b) eps (Monte Carlo moments)."""
    net = LatentDiffusion(latent_dim=1, timesteps=50)
    abar = cosine_alpha_bar(50)
    betas = 1 - abar[1:] / abar[:-1]
    z0 = torch.full((200000, 1), 2.0, dtype=torch.float64)
    z = z0.clone()
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 31):
        z = (1 - betas[t - 1]).sqrt() * z + betas[t - 1].sqrt() * torch.randn(z.shape, generator=gen, dtype=z.dtype)
    t = torch.full((len(z0),), 30)
    closed = net.noised(z0.float(), t, torch.randn(z0.shape, generator=gen))
    assert z.mean().item() == pytest.approx(abar[30].sqrt().item() * 2.0, abs=0.01)
    assert z.var().item() == pytest.approx(1 - abar[30].item(), abs=0.01)
    assert closed.mean().item() == pytest.approx(z.mean().item(), abs=0.01)
    assert closed.var().item() == pytest.approx(z.var().item(), abs=0.01)


def test_schedule_runs_from_data_to_noise():
    abar = cosine_alpha_bar(1000)
    assert abar[0] == 1 and abar[-1] < 1e-3 and bool((abar[1:] < abar[:-1]).all())


@pytest.fixture(scope="module")
def mixture_prior():
    return train_diffusion(mixture(4000), None, LatentDiffusionConfig(latent_dim=2, width=128, blocks=2), steps=3000)


def test_diffusion_reproduces_a_known_mixture(mixture_prior):
    data = mixture(4000, seed=1)
    s = mixture_prior.sample(4000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), data.mean(0), atol=0.4)
    assert torch.allclose(torch.cov(s.T), torch.cov(data.T), atol=1.2)  # variances about 11 and 6
    nearest = torch.cdist(s, MEANS)
    assert (nearest.min(1).values < 1.5).float().mean() > 0.95  # samples lie on the modes, not between
    shares = torch.bincount(nearest.argmin(1), minlength=3) / len(s)
    assert bool((shares > 0.25).all())  # every mode is found


def test_saved_diffusion_prior_gives_the_same_samples(mixture_prior, tmp_path):
    mixture_prior.save_pretrained(tmp_path / "p")
    from vaekit.loading import load_module
    from vaekit.priors import PRIOR_KINDS

    again = load_module(tmp_path / "p", PRIOR_KINDS, "prior")
    a = mixture_prior.sample(50, generator=torch.Generator().manual_seed(3))
    b = again.sample(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_sampler_inverts_an_exact_denoiser(prediction):
    """With the exact eps (or v) of a point mass at c, every DDIM step's z_0 estimate is c."""
    prior = LatentDiffusion(latent_dim=2, timesteps=100, sample_steps=10, prediction=prediction)
    c = torch.tensor([1.5, -0.5])

    def exact(z_t, t, y=None):
        a = prior.alpha_bar[t][:, None]  # (B, 1)
        eps = (z_t - a.sqrt() * c) / (1 - a).sqrt()
        return eps if prediction == "eps" else a.sqrt() * eps - (1 - a).sqrt() * c

    prior.denoiser = exact
    s = prior.sample(5, generator=torch.Generator().manual_seed(0), precision="fp32")
    assert torch.allclose(s, c.expand(5, 2), atol=1e-4)


def test_a_prior_saved_before_v_prediction_loads_as_eps(tmp_path):
    """config.json files written before the `prediction` field load as what they were: eps."""
    from vaekit.loading import load_module
    from vaekit.priors import PRIOR_KINDS

    torch.manual_seed(0)
    old = LatentDiffusion(latent_dim=2, width=32, blocks=1, prediction="eps")
    old.save_pretrained(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "config.json").read_text())
    del meta["config"]["prediction"]
    (tmp_path / "p" / "config.json").write_text(json.dumps(meta))
    again = load_module(tmp_path / "p", PRIOR_KINDS, "prior")
    assert again.config.prediction == "eps"
    a = old.sample(20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, again.sample(20, generator=torch.Generator().manual_seed(1)))
    LatentDiffusion(latent_dim=2, width=32, blocks=1, prediction="v").save_pretrained(tmp_path / "v")
    assert load_module(tmp_path / "v", PRIOR_KINDS, "prior").config.prediction == "v"
    with pytest.raises(InputError, match="prediction must be"):
        LatentDiffusion(latent_dim=2, prediction="x0")


def test_gmm_matches_scikit_learn():
    from sklearn.mixture import GaussianMixture

    z = mixture(3000)
    prior = GaussianMixturePrior.fit(z, components=3)
    ref = GaussianMixture(3, covariance_type="full", reg_covar=1e-5, random_state=0).fit(z.double().numpy())
    test = mixture(200, seed=2)
    assert np.allclose(prior.log_prob(test).numpy(), ref.score_samples(test.double().numpy()), atol=1e-4)
    s = prior.sample(20000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), z.mean(0), atol=0.1)
    assert prior.sample(5, temperature=0.0).sub(MEANS[:, None]).norm(dim=-1).min(0).values.max() < 0.1  # T = 0: the means


def test_gmm_chooses_its_size_by_bic():
    assert GaussianMixturePrior.fit(mixture(3000)).config.components in (2, 5)  # 3 is not offered; BIC picks near it


@pytest.fixture
def model(digits_data):
    torch.manual_seed(0)
    return build_model("vae", tuple(digits_data.x.shape[1:]), 10, 4, "gaussian", sigma=0.2)


def test_a_fitted_prior_is_what_samples_come_from_and_is_saved(model, digits_data, tmp_path):
    prior = fit_prior(model, digits_data, "gmm")
    assert model.fitted_prior is prior
    torch.manual_seed(0)
    z = model.sample_prior(2000)
    assert torch.allclose(z.mean(0), model.encode(digits_data.x)[0].mean(0), atol=0.1)  # the codes', not N(0, I)'s
    model.save_pretrained(tmp_path / "m")
    assert saved_priors(tmp_path / "m") == ["gmm"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["sampling_prior"] == "gmm"
    again = vaekit.load(tmp_path / "m")
    torch.manual_seed(1)
    a = model.sample(8)
    torch.manual_seed(1)
    assert torch.equal(a, again.sample(8))
    assert vaekit.load(tmp_path / "m", prior="standard").fitted_prior is None
    with pytest.raises(InputError, match="no diffusion prior"):
        vaekit.load(tmp_path / "m", prior="diffusion")


def test_bounds_keep_the_trained_prior(model, digits_data):
    x = digits_data.x[:16]
    before = model.log_likelihood(x, k=20)
    fit_prior(model, digits_data, "gmm")
    assert torch.equal(before, model.log_likelihood(x, k=20))


def test_a_prior_of_another_latent_size_is_refused(model):
    with pytest.raises(InputError, match="codes of 3 values"):
        model.use_prior(GaussianMixturePrior(latent_dim=3, components=2))


def test_conditional_diffusion_prior_takes_labels(digits_data):
    torch.manual_seed(0)
    cvae = build_model("cvae", tuple(digits_data.x.shape[1:]), 10, 3, "gaussian", sigma=0.2)
    prior = fit_prior(cvae, digits_data, "diffusion", steps=30)
    assert prior.config.num_classes == 10
    assert cvae.sample(6, torch.arange(6)).shape == (6, 64)


def test_discrete_codes_are_refused(digits_data):
    vq = build_model("vqvae", tuple(digits_data.x.shape[1:]), 10, 4, "gaussian", sigma=0.2, **{})
    with pytest.raises(InputError, match="PixelCNN"):
        fit_prior(vq, digits_data, "gmm")


def test_save_prior_keeps_the_others(model, digits_data, tmp_path):
    model.save_pretrained(tmp_path / "m")
    save_prior(fit_prior(model, digits_data, "gmm"), tmp_path / "m")
    save_prior(fit_prior(model, digits_data, "diffusion", steps=20), tmp_path / "m")
    assert saved_priors(tmp_path / "m") == ["diffusion", "gmm"]
    assert isinstance(vaekit.load(tmp_path / "m").fitted_prior, LatentDiffusion)
    assert isinstance(load_prior(tmp_path / "m", "gmm"), GaussianMixturePrior)


# ---- the commands --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "run"
    assert main(["train", "--epochs", "3", "--out", str(out), "--no-progress", "--latent-dim", "4"]) == 0
    return out


def test_train_fits_a_gmm_prior_and_measures_samples(run):
    assert saved_priors(run / "model") == ["gmm"]
    rows = json.loads((run / "sample_quality.json").read_text())
    assert list(rows) == ["samples, gmm prior", "samples, N(0, I)", "reconstructions", "reconstructions, training images", "real data"]
    assert rows["real data"]["precision"] > 0.8 and rows["real data"]["fid"] < rows["samples, N(0, I)"]["fid"]
    assert (run / "samples_standard.png").exists()


def test_auto_prior_skips_the_mixture_for_long_codes(tmp_path, capsys):
    """--fit-prior auto (the default) fits the mixture to codes of at most AUTO_GMM_MAX_DIM values
    and, for longer ones, says why it fitted none; an explicit --fit-prior gmm still fits it."""
    from vaekit.run_generation import AUTO_GMM_MAX_DIM

    base = ["train", "--epochs", "1", "--limit", "200", "--no-progress", "--latent-dim", str(AUTO_GMM_MAX_DIM + 1)]
    assert main([*base, "--out", str(tmp_path / "auto")]) == 0
    said = capsys.readouterr().out
    assert f"No prior fitted to the codes: a mixture over {AUTO_GMM_MAX_DIM + 1} values" in said
    assert "Fitted a" not in said and saved_priors(tmp_path / "auto" / "model") == []
    assert main([*base, "--fit-prior", "gmm", "--out", str(tmp_path / "gmm")]) == 0
    assert "Fitted a gmm prior" in capsys.readouterr().out and saved_priors(tmp_path / "gmm" / "model") == ["gmm"]


def test_prior_fit_then_sample_with_each_prior(run, tmp_path, capsys):
    assert main(["prior", "fit", str(run), "--kind", "diffusion", "--steps", "20", "--no-progress"]) == 0
    assert "samples_diffusion.png" in capsys.readouterr().out
    assert saved_priors(run / "model") == ["diffusion", "gmm"]
    for prior, picture in (("standard", "sample_seed0_standard.png"), ("gmm", "sample_seed0_gmm.png"),
                           ("saved", "sample_seed0.png")):
        assert main(["sample", str(run), "--n", "4", "--prior", prior, "--out", str(tmp_path)]) == 0
        assert (tmp_path / picture).exists(), prior


def test_evaluate_samples_prints_the_reference_rows(run, capsys):
    assert main(["evaluate", str(run), "--k", "0", "--samples", "100", "--prior", "gmm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["sample_quality"]) == {"samples, gmm prior", "samples, N(0, I)", "reconstructions", "reconstructions, training images", "real data"}
    assert report["sample_quality"]["samples, gmm prior"]["n"] == 100


@pytest.mark.parametrize("argv, message", [
    (["prior", "fit", "mnist-mlp"], "not a folder"),
    (["prior", "fit", "{run}", "--data", "{missing}"], "missing.npz"),
    (["sample", "{run}", "--prior", "flow"], "Unknown prior"),
    (["prior", "fit", "{run}", "--components", "0"], "components must be"),
    (["evaluate", "{run}", "--k", "0", "--samples", "10", "--features", "mnist"], "takes images of shape (1, 28, 28)"),
])
def test_bad_prior_input_exits_2(run, tmp_path, capsys, argv, message):
    argv = [a.replace("{run}", str(run)).replace("{missing}", str(tmp_path / "missing.npz")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_math_of_the_time_embedding():
    from vaekit.priors.diffusion import time_embedding

    e = time_embedding(torch.tensor([0.0, 0.5]), 8)
    assert e.shape == (2, 8) and torch.allclose(e[0], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))
    assert math.isclose(float(e[1, 0]), math.sin(500.0), abs_tol=1e-4)


def test_a_conditional_prior_on_an_unconditional_model_is_refused(model):
    from vaekit.priors import LatentDiffusion

    with pytest.raises(InputError, match="takes class labels"):
        model.use_prior(LatentDiffusion(latent_dim=4, num_classes=10))


def test_resume_says_which_fitted_priors_it_drops(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--latent-dim", "2", "--out", str(out), "--no-progress"]) == 0
    assert (out / "model" / "priors" / "gmm").is_dir()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--fit-prior", "none"]) == 0
    said = capsys.readouterr().out
    assert "The gmm prior fitted to the earlier weights no longer matches" in said and "--kind gmm" in said
    assert not (out / "model" / "priors" / "gmm").exists()
