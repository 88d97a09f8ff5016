"""Data augmentation and denoising: the Python functions, the CLI commands, and PSNR by hand."""

import json
import math

import numpy as np
import pytest
import torch

import vaekit
from vaekit import CVAE, VAE, VQVAE, InputError, Trainer, TrainConfig, augment, denoise, psnr
from vaekit.applications import pseudo_label, save_npz
from vaekit.applications.augment import spread_labels
from vaekit.cli import main
from vaekit.corruption import corrupt
from vaekit.data import load_dataset


def _fit(model, data, epochs, **kw):
    torch.manual_seed(0)
    Trainer(model, TrainConfig(epochs=epochs, batch_size=64, progress=False, **kw)).fit(data)
    return model


@pytest.fixture(scope="module")
def vae(digits_data):
    return _fit(VAE(64, 8, likelihood="gaussian", sigma=0.2, image_shape=(1, 8, 8), hidden_dims=(128,)), digits_data, 25)


@pytest.fixture(scope="module")
def cvae(digits_data):
    return _fit(CVAE(64, 8, 10, likelihood="gaussian", sigma=0.2, image_shape=(1, 8, 8), hidden_dims=(128,)),
                digits_data, 40)


# ---- augment ------------------------------------------------------------------------------
def test_posterior_samples_keep_layout_labels_and_order(vae, digits_data):
    x, y = digits_data.x[:20], digits_data.y[:20]
    x_new, y_new = augment(vae, x, y, n_per_example=3, seed=0)
    assert x_new.shape == (60, 1, 8, 8) and x_new.dtype == torch.float32
    assert torch.equal(y_new, y.repeat_interleave(3))
    flat_new, flat_y = augment(vae, x.reshape(20, 64).double().numpy(), y.numpy(), n_per_example=3, seed=0)
    assert flat_new.shape == (60, 64) and torch.allclose(flat_new, x_new.reshape(60, 64))
    # each new example is a variation of its own source: closer to it than to the other sources
    dist = torch.cdist(x_new.reshape(60, -1), x.reshape(20, -1))  # (60, 20)
    assert (dist.argmin(1) == torch.arange(20).repeat_interleave(3)).float().mean() > 0.7


def test_augment_is_reproducible_with_a_seed_and_leaves_global_rng_alone(vae, digits_data):
    x, y = digits_data.x[:10], digits_data.y[:10]
    state = torch.get_rng_state()
    a, _ = augment(vae, x, y, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b, _ = augment(vae, x, y, seed=1)
    c, _ = augment(vae, x, y, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    vae.train()
    augment(vae, x, y, seed=1)
    assert vae.training
    vae.eval()


def test_temperature_zero_decodes_the_posterior_mean(vae, digits_data):
    x = digits_data.x[:5]
    x_new, y_new = augment(vae, x, n_per_example=2, temperature=0.0)
    assert y_new is None
    with torch.no_grad():
        recon = vae.reconstruct(x).reshape(5, 1, 8, 8)
    # pixels stay in the data's [0, 1] (so the file trains like the original): the clamped mean
    assert torch.allclose(x_new, recon.clamp(0, 1).repeat_interleave(2, 0), atol=1e-6)
    # "detail" adds decode(z) - decode(mu) to the original, so at temperature 0 it is the original
    same, _ = augment(vae, x, n_per_example=2, temperature=0.0, decoded="detail")
    assert torch.allclose(same, x.repeat_interleave(2, 0), atol=1e-5)
    # larger temperatures move further from the posterior mean
    near, _ = augment(vae, x, n_per_example=20, temperature=0.5, seed=0)
    far, _ = augment(vae, x, n_per_example=20, temperature=2.0, seed=0)
    base = recon.repeat_interleave(20, 0)
    assert (far - base).pow(2).mean() > (near - base).pow(2).mean()


def test_sampled_pixels_of_a_bernoulli_decoder_are_binary(digits_data):
    model = VAE(64, 4, image_shape=(1, 8, 8)).eval()
    x_new, _ = augment(model, digits_data.x[:4], n_per_example=2, decoded="sample", seed=0)
    assert set(x_new.unique().tolist()) <= {0.0, 1.0}


def test_cvae_generates_each_class(cvae, digits_data):
    from sklearn.linear_model import LogisticRegression

    x_new, y_new = augment(cvae, n_per_class=20, temperature=0.8, seed=0)
    assert x_new.shape == (200, 1, 8, 8)
    assert torch.equal(y_new, torch.arange(10).repeat_interleave(20))
    clf = LogisticRegression(max_iter=2000).fit(digits_data.x.reshape(len(digits_data), -1).numpy(), digits_data.y.numpy())
    agree = (clf.predict(x_new.reshape(200, -1).numpy()) == y_new.numpy()).mean()
    assert agree > 0.7  # the generated digits look like their class to an independent classifier
    # posterior samples around labelled examples through the CVAE: labels copied
    x_aug, y_aug = augment(cvae, digits_data.x[:6], digits_data.y[:6], n_per_example=2, seed=0)
    assert x_aug.shape == (12, 1, 8, 8) and torch.equal(y_aug, digits_data.y[:6].repeat_interleave(2))


def test_spread_labels_follows_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat_interleave(50, 0) + torch.randn(150, 2, generator=gen)  # 3 blobs of 50
    truth = torch.arange(3).repeat_interleave(50)
    labelled = torch.tensor([0, 50, 100])  # one labelled point per blob
    rest = torch.ones(150, dtype=torch.bool)
    rest[labelled] = False
    share = spread_labels(points[labelled], truth[labelled], points[rest], n_neighbours=5)
    assert share.shape == (147, 3) and torch.allclose(share.sum(1), torch.ones(147))
    assert torch.equal(share.argmax(1), truth[rest])


def test_pseudo_label_picks_confident_unlabelled_examples(vae, digits_data):
    x, y, unl = digits_data.x[:50], digits_data.y[:50], digits_data.x[50:]
    got = pseudo_label(vae, x, y, unl, n_per_class=20)
    assert got.x.shape == (len(got.y), 1, 8, 8) and len(got.y) <= 200 and len(got.y) > 150
    assert torch.equal(got.x, unl[got.index])
    assert ((got.share > 0) & (got.share <= 1)).all()
    assert (digits_data.y[50:][got.index] == got.y).float().mean() > 0.9  # the inferred labels are right
    # through augment: pseudo-labelled examples first, then the posterior samples
    x_new, y_new = augment(vae, x, y, n_per_example=1, unlabelled=unl, n_pseudo_per_class=20, seed=0)
    assert len(x_new) == len(got.y) + 50 and torch.equal(x_new[:len(got.y)], got.x)
    assert torch.equal(y_new[len(got.y):], y)
    only, _ = augment(vae, x, y, n_per_example=0, unlabelled=unl, n_pseudo_per_class=20)
    assert torch.equal(only, got.x)


@pytest.mark.parametrize("call, message", [
    (lambda m, c, x, y: augment(m, n_per_class=3), "conditional"),
    (lambda m, c, x, y: augment(c, x), "labels"),
    (lambda m, c, x, y: augment(c, x, y, n_per_class=2), "not both"),
    (lambda m, c, x, y: augment(m), "Give the examples"),
    (lambda m, c, x, y: augment(m, x, y, temperature=-1.0), "temperature"),
    (lambda m, c, x, y: augment(m, x, y, n_per_example=0), "n_per_example"),
    (lambda m, c, x, y: augment(m, x, y[:2]), "one label per example"),
    (lambda m, c, x, y: augment(m, x, y, decoded="median"), "decoded"),
    (lambda m, c, x, y: augment(m, torch.zeros(3, 5)), "shape"),
    (lambda m, c, x, y: augment(VQVAE(in_channels=1, image_size=(8, 8)), x), "Gaussian posterior"),
    (lambda m, c, x, y: augment(m, x, None, unlabelled=x), "labels"),
    (lambda m, c, x, y: pseudo_label(c, x, y, x), "unconditional"),
    (lambda m, c, x, y: pseudo_label(m, x, y, x, alpha=1.0), "alpha"),
])
def test_augment_bad_input_raises_input_error(vae, cvae, digits_data, call, message):
    with pytest.raises(InputError, match=message):
        call(vae, cvae, digits_data.x[:4], digits_data.y[:4])


def test_saved_npz_is_a_data_set(tmp_path, vae, digits_data):
    x_new, y_new = augment(vae, digits_data.x[:10], digits_data.y[:10], n_per_example=2, seed=0)
    save_npz(tmp_path / "aug.npz", x_new, y_new)
    back = load_dataset(tmp_path / "aug.npz")
    assert torch.allclose(back.x, x_new)
    assert torch.equal(back.y, y_new) and back.num_classes == int(y_new.max()) + 1


# ---- denoise and PSNR ---------------------------------------------------------------------
def test_psnr_matches_a_hand_computation():
    clean = torch.zeros(2, 1, 2, 2)
    estimate = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.01)])  # MSE 1e-2 and 1e-4
    assert psnr(clean, estimate, reduction="none").tolist() == pytest.approx([20.0, 40.0])
    assert psnr(clean, estimate) == pytest.approx(30.0)
    assert psnr(clean, estimate, reduction="global") == pytest.approx(10 * math.log10(1 / ((1e-2 + 1e-4) / 2)))
    assert psnr(clean.numpy(), clean.numpy()) == pytest.approx(100.0)  # perfect images are capped
    assert psnr(clean, estimate * 2, data_range=2.0) == pytest.approx(30.0)
    with pytest.raises(InputError):
        psnr(clean, estimate[:1])


def test_denoise_is_the_posterior_mean_reconstruction(vae, digits_data):
    x = digits_data.x[:30]
    out = denoise(vae, x, batch_size=7)
    with torch.no_grad():
        assert out.shape == x.shape and torch.allclose(out, vae.reconstruct(x).reshape(x.shape), atol=1e-6)
    assert denoise(vae, x.reshape(30, 64).double().numpy()).shape == (30, 64)  # float64 arrays too
    with pytest.raises(InputError):
        denoise(vae, torch.full((2, 64), float("nan")))


def test_denoising_vae_beats_the_noisy_input_and_the_plain_vae(vae, digits_data):
    test = load_dataset("digits", "test")
    model = _fit(VAE(64, 16, likelihood="gaussian", sigma=0.2, image_shape=(1, 8, 8), hidden_dims=(256,)),
                 digits_data, 30, corrupt="gaussian:0.5", lr=2e-3)
    noisy = corrupt(test.x, "gaussian:0.5", torch.Generator().manual_seed(0))
    before, after = psnr(test.x, noisy), psnr(test.x, denoise(model, noisy))
    assert after > before + 3, (before, after)
    assert after > psnr(test.x, denoise(vae, noisy))  # the VAE trained on clean digits only


# ---- the CLI ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dvae") / "run"
    assert main(["train", "--epochs", "3", "--latent-dim", "4", "--corrupt", "gaussian:0.3", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_train_corrupt_flag_reaches_the_trainer(dvae_run):
    assert json.loads((dvae_run / "train_config.json").read_text())["corrupt"] == "gaussian:0.3"


def test_cli_augment_writes_a_data_set_and_a_picture(dvae_run, tmp_path, capsys):
    out = tmp_path / "aug.npz"
    assert main(["augment", str(dvae_run), "--out", str(out), "--limit", "30", "--n-per-example", "2",
                 "--temperature", "0.5", "--include-original"]) == 0
    data = load_dataset(out)
    assert len(data) == 90 and data.x.shape[1:] == (1, 8, 8)
    assert torch.equal(data.y[30:], data.y[:30].repeat_interleave(2))
    assert out.with_suffix(".png").exists()
    printed = capsys.readouterr().out
    assert str(out) in printed and str(out.with_suffix(".png")) in printed


def test_cli_augment_with_unlabelled_data(dvae_run, tmp_path, capsys):
    labelled = tmp_path / "few.npz"
    digits = load_dataset("digits")
    save_npz(labelled, digits.x[:30], digits.y[:30])
    out = tmp_path / "more.npz"
    assert main(["augment", str(dvae_run), "--data", str(labelled), "--unlabelled", "digits", "--n-per-example", "0",
                 "--n-pseudo-per-class", "5", "--out", str(out)]) == 0
    data = load_dataset(out)
    assert 30 <= len(data) <= 50 and "unlabelled examples, labelled by spreading" in capsys.readouterr().out
    assert main(["augment", str(dvae_run), "--data", str(labelled), "--n-per-example", "0", "--out", str(out)]) == 2


def test_cli_augment_per_class_from_a_cvae(tmp_path, capsys):
    run = tmp_path / "cvae"
    assert main(["train", "--model", "cvae", "--epochs", "2", "--latent-dim", "4", "--out", str(run),
                 "--no-progress"]) == 0
    out = tmp_path / "gen.npz"
    assert main(["augment", str(run), "--out", str(out), "--n-per-class", "3"]) == 0
    with np.load(out) as f:
        assert f["x"].shape == (30, 1, 8, 8) and f["y"].tolist() == [c for c in range(10) for _ in range(3)]
    assert out.with_suffix(".png").exists()


def test_cli_denoise_writes_arrays_picture_and_psnr(dvae_run, tmp_path, capsys):
    out = tmp_path / "den"
    assert main(["denoise", str(dvae_run), "--limit", "40", "--noise", "salt-pepper:0.2", "--out", str(out),
                 "--save-arrays"]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "noisy input" in printed and str(out / "denoising.png") in printed
    denoised, noisy = np.load(out / "denoised.npy"), np.load(out / "noisy.npy")
    assert denoised.shape == noisy.shape == (40, 1, 8, 8)
    assert (out / "denoising.png").exists()
    # the user's own noisy images: cleaned as they are, no PSNR without a clean reference
    out2 = tmp_path / "own"
    assert main(["denoise", str(dvae_run), "--input", str(out / "noisy.npy"), "--out", str(out2)]) == 0
    assert "PSNR" not in capsys.readouterr().out
    assert np.load(out2 / "denoised.npy").shape == (40, 1, 8, 8) and (out2 / "denoising.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["augment", "{run}", "--out", "{tmp}/aug.txt"], ".npz"),
    (["augment", "{run}", "--out", "{tmp}/aug.npz", "--n-per-class", "3"], "conditional"),
    (["augment", "{run}", "--out", "{tmp}/aug.npz", "--n-per-example", "0"], "positive"),
    (["augment", "{run}", "--out", "{tmp}/aug.npz", "--temperature", "-1"], "temperature"),
    (["augment", "{tmp}/nothing", "--out", "{tmp}/aug.npz"], "No model"),
    (["denoise", "{run}", "--noise", "blur:2", "--out", "{tmp}/d"], "Unknown corruption"),
    (["denoise", "{run}", "--input", "{tmp}/missing.npy", "--out", "{tmp}/d"], ".npy"),
    (["denoise", "{run}", "--input", "{tmp}/x.npy", "--data", "digits", "--out", "{tmp}/d"], "not both"),
    (["train", "--corrupt", "gaussian", "--epochs", "1", "--out", "{tmp}/r"], "Unknown corruption"),
])
def test_cli_bad_input_exits_2_with_one_sentence(dvae_run, tmp_path, capsys, argv, message):
    argv = [a.replace("{run}", str(dvae_run)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "aug.npz").exists() and not (tmp_path / "aug.txt").exists()


def test_exports():
    assert vaekit.augment is augment and vaekit.denoise is denoise and vaekit.psnr is psnr
