"""AnomalyDetector (scikit-learn style), its pictures, image folders, and `vaekit anomaly fit/score`."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from vaekit import AnomalyDetector, InputError, detect_anomaly
from vaekit.applications import save_error_maps
from vaekit.cli import main
from vaekit.data import load_dataset, load_image_folder


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target  # (1797, 8, 8) in [0, 1]


@pytest.fixture(scope="module")
def fitted(digits):
    """A detector of the digit 0 (normal) fitted on 8x8 images; everything else is anomalous."""
    x, y = digits
    return AnomalyDetector(latent_dim=4, epochs=40, contamination=0.1).fit(x[y == 0])


@pytest.fixture(scope="module")
def table():
    """Correlated Gaussian rows (normal) in 6 features of very different scales, and rows breaking the correlation."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 2))
    mix = np.array([[1, 0.5, -1, 2, 0, 1], [0, 1, 1, -1, 2, 0.5]])
    scales = np.array([1, 10, 100, 0.1, 1, 1000])
    normal = (z @ mix + 0.1 * rng.normal(size=(600, 6))) * scales + 50
    odd = normal[:50].copy()
    odd[:, 2] += 2 * scales[2] * np.sign(rng.normal(size=50))  # feature 2 off its usual relation
    return normal[:500], normal[500:], odd


@pytest.fixture(scope="module")
def table_detector(table):
    return AnomalyDetector(latent_dim=2, epochs=50, target_fpr=0.1).fit(table[0])


# ---- the estimator ----------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["elbo", "nll", "recon"])
def test_scores_separate_other_digits(fitted, digits, score):
    x, y = digits
    det = clone(fitted).set_params(scoring=score)
    det.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})  # same model, other score
    scores = det.anomaly_score(x)
    assert scores.shape == (len(x),) and np.isfinite(scores).all()
    assert roc_auc_score(y != 0, scores) > 0.95


def test_sklearn_conventions(fitted, digits):
    x, y = digits
    s = fitted.score_samples(x)
    np.testing.assert_allclose(s, -fitted.anomaly_score(x))
    np.testing.assert_allclose(fitted.decision_function(x), s - fitted.offset_)
    assert fitted.offset_ == -fitted.threshold_
    pred = fitted.predict(x)
    assert set(np.unique(pred)) == {-1, 1}
    np.testing.assert_array_equal(pred == -1, fitted.decision_function(x) < 0)
    assert (pred[y != 0] == -1).mean() > 0.9  # most other digits are flagged
    train_flagged = (fitted.predict(x[y == 0]) == -1).mean()
    assert abs(train_flagged - 0.1) < 0.03  # contamination: that share of the training data is above the threshold
    assert fitted.n_features_in_ == 64 and fitted.image_shape_ == (1, 8, 8) and fitted.likelihood_ == "gaussian"
    assert fitted.sigma_ == 0.1
    assert fitted.mean_ is None and isinstance(fitted.model_, torch.nn.Module)


def test_scores_are_deterministic_and_leave_the_global_rng_alone(fitted, digits):
    x, _ = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = fitted.anomaly_score(x[:50])
    np.testing.assert_array_equal(a, fitted.anomaly_score(x[:50]))
    assert torch.equal(torch.rand(3), expected)
    for scoring in ("elbo", "nll"):  # an example's score does not depend on the others in X, nor their order
        det = clone(fitted).set_params(scoring=scoring)
        det.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        whole = det.anomaly_score(x[:300])
        np.testing.assert_allclose(det.anomaly_score(x[:300][::-1])[::-1], whole, rtol=1e-5)
        np.testing.assert_allclose(det.anomaly_score(x[7:8]), whole[7:8], rtol=1e-5)


def test_fit_predict_clone_and_params(digits):
    x, y = digits
    det = AnomalyDetector(latent_dim=2, epochs=2, contamination=0.2, seed=3)
    assert det.get_params()["contamination"] == 0.2 and det.get_params()["model"] == "vae"
    twin = clone(det)
    assert twin.get_params() == det.get_params() and not hasattr(twin, "model_")
    with pytest.raises(NotFittedError):
        det.predict(x[:5])
    pred = det.fit_predict(x[y == 1])
    assert pred.shape == ((y == 1).sum(),) and set(np.unique(pred)) <= {-1, 1}
    assert abs((pred == -1).mean() - 0.2) < 0.05
    again = clone(det).fit(x[y == 1])  # same seed, same data: the same detector
    np.testing.assert_allclose(again.anomaly_score(x[:20]), det.anomaly_score(x[:20]), rtol=1e-5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        again.fit(x[y == 1] * 16)  # pixel values 0..16: not the units of the default sigma
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        clone(det).set_params(likelihood="bernoulli").fit(x[y == 1] * 16)  # nor a Bernoulli's
    with pytest.raises(NotFittedError):  # a failed refit leaves no stale state behind
        again.predict(x[:5])


def test_inside_a_pipeline(digits):
    x, y = digits
    flat = x.reshape(len(x), -1)
    pipe = Pipeline([("pca", PCA(n_components=10, random_state=0)), ("vae", AnomalyDetector(latent_dim=2, epochs=30))])
    pipe.fit(flat[y == 0])
    assert roc_auc_score(y != 0, -pipe.score_samples(flat)) > 0.9
    assert set(np.unique(pipe.predict(flat))) == {-1, 1}
    assert pipe.decision_function(flat).shape == (len(flat),)
    assert pipe.named_steps["vae"].likelihood_ == "gaussian-learned"  # PCA output is a table
    clone(pipe).fit(flat[y == 1][:50])


def test_table_is_standardized_with_a_gaussian(table_detector, table):
    normal, held_out, odd = table
    det = table_detector
    assert det.image_shape_ is None and det.likelihood_ == "gaussian-learned" and det.sigma_ is None
    assert det._trim() == 0.05 and math.isclose(det.model_.lik.min_log_sigma, -2.0)  # the table defaults
    np.testing.assert_allclose(det.mean_, normal.mean(0))
    np.testing.assert_allclose(det.scale_, normal.std(0))
    scores = det.anomaly_score(np.r_[held_out, odd])
    assert roc_auc_score(np.r_[np.zeros(len(held_out)), np.ones(len(odd))], scores) > 0.95
    errors = det.error_map(odd)
    assert errors.shape == odd.shape and (errors >= 0).all()
    assert np.bincount(errors.argmax(1), minlength=6).argmax() == 2  # the broken feature explains the score
    rec = det.reconstruct(normal[:5])
    assert rec.shape == (5, 6) and np.abs(rec - normal[:5]).mean(0)[5] > 1  # back in the data's units


def test_target_fpr_uses_held_out_normal_data(table_detector, table):
    det = table_detector
    assert len(det.calibration_scores_) == 100  # validation_fraction 0.2 of 500
    assert abs((det.calibration_scores_ > det.threshold_).mean() - 0.1) < 0.02
    _, held_out, _ = table
    det2 = clone(det)
    det2.__dict__.update({k: v for k, v in det.__dict__.items() if k.endswith("_")})
    det2.calibrate(held_out, target_fpr=0.25)
    assert abs((det2.predict(held_out) == -1).mean() - 0.25) < 0.03
    assert det2.threshold_ < det.threshold_


def test_image_error_map_points_at_the_damage(fitted, digits):
    x, y = digits
    zero = x[y == 0][:1].copy()
    errors_before = fitted.error_map(zero)
    zero[0, 3:5, 3:5] = 1.0  # a blot in the hole of the 0
    errors = fitted.error_map(zero)
    assert errors.shape == (1, 1, 8, 8) and (errors > -1e-5).all()
    top = np.unravel_index(errors[0, 0].argmax(), (8, 8))
    assert 3 <= top[0] <= 4 and 3 <= top[1] <= 4
    assert errors.sum() > errors_before.sum() and fitted.anomaly_score(zero)[0] > fitted.threshold_


def test_conv_model_on_images(digits):
    x, y = digits
    det = AnomalyDetector(model="conv", latent_dim=4, epochs=3, scoring="recon").fit(x[y == 3][:60])
    assert det.model_.model_type == "conv"
    assert det.error_map(x[:4]).shape == (4, 1, 8, 8) and det.reconstruct(x[:4]).shape == (4, 1, 8, 8)
    assert "val_loss" in det.history_[-1]  # a held-out share picks the best epoch
    flat = AnomalyDetector(latent_dim=2, epochs=1, image_shape=(8, 8), validation_fraction=0)
    flat.fit(x[:40].reshape(40, 64))
    assert flat.image_shape_ == (1, 8, 8) and flat.likelihood_ == "gaussian"
    assert "val_loss" not in flat.history_[-1] and len(flat.calibration_scores_) == 40


@pytest.mark.parametrize("make, message", [
    (lambda x: AnomalyDetector(scoring="bogus").fit(x), "Unknown scoring"),
    (lambda x: AnomalyDetector(model="vqvae").fit(x), "Unknown model"),
    (lambda x: AnomalyDetector(contamination=0.7).fit(x), "contamination"),
    (lambda x: AnomalyDetector(target_fpr=1.5).fit(x), "target_fpr"),
    (lambda x: AnomalyDetector(target_fpr=0.1, validation_fraction=0).fit(x), "held-out"),
    (lambda x: AnomalyDetector(validation_fraction=1).fit(x), "validation_fraction"),
    (lambda x: AnomalyDetector(patience=-1).fit(x), "patience"),
    (lambda x: AnomalyDetector(trim=1.0).fit(x), "trim must lie"),
    (lambda x: AnomalyDetector(model="conv").fit(x.reshape(len(x), -1)), "needs images"),
    (lambda x: AnomalyDetector(image_shape=(7, 7)).fit(x.reshape(len(x), -1)), "image_shape"),
    (lambda x: AnomalyDetector().fit(x[:, 0, 0]), "1-D"),
    (lambda x: AnomalyDetector().fit(np.where(x > 0.5, np.nan, x)), "NaN"),
])
def test_bad_settings_and_data_raise_one_sentence(digits, make, message):
    x, _ = digits
    with pytest.raises(InputError, match=message):
        make(x[:20])


def test_bad_data_for_a_fitted_detector(fitted, digits):
    x, _ = digits
    with pytest.raises(InputError, match="X has 10 features, but AnomalyDetector is expecting 64 features"):
        fitted.predict(np.zeros((3, 10)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        fitted.score_samples(x[:3] * 16)


def test_save_and_load(fitted, digits, tmp_path):
    x, _ = digits
    fitted.save(tmp_path / "det")
    assert (tmp_path / "det" / "detector.json").exists() and (tmp_path / "det" / "model" / "model.safetensors").exists()
    back = AnomalyDetector.load(tmp_path / "det")
    assert back.get_params() == fitted.get_params()
    assert back.threshold_ == fitted.threshold_ and back.image_shape_ == fitted.image_shape_
    np.testing.assert_allclose(back.anomaly_score(x[:30]), fitted.anomaly_score(x[:30]), rtol=1e-6)
    np.testing.assert_array_equal(back.predict(x[:30]), fitted.predict(x[:30]))
    fitted.model_.save_pretrained(tmp_path / "just-a-model")
    with pytest.raises(InputError, match="not a saved anomaly detector"):
        AnomalyDetector.load(tmp_path / "just-a-model")
    (tmp_path / "det" / "detector.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt"):
        AnomalyDetector.load(tmp_path / "det")


def test_table_detector_round_trip_keeps_standardization(table_detector, table, tmp_path):
    _, held_out, odd = table
    back = AnomalyDetector.load(table_detector.save(tmp_path / "tab"))
    np.testing.assert_allclose(back.scale_, table_detector.scale_)
    np.testing.assert_allclose(back.anomaly_score(odd), table_detector.anomaly_score(odd), rtol=1e-6)


def test_a_table_detector_saved_before_trim_and_min_sigma_loads_as_it_was(table_detector, table, tmp_path):
    """detector.json without `trim` and a model config.json without `min_sigma`: an untrimmed
    detector whose decoder keeps the old e^-6 floor."""
    _, _, odd = table
    folder = table_detector.save(tmp_path / "old")
    state = json.loads((folder / "detector.json").read_text())
    del state["params"]["trim"]
    (folder / "detector.json").write_text(json.dumps(state))
    meta = json.loads((folder / "model" / "config.json").read_text())
    del meta["config"]["min_sigma"]
    (folder / "model" / "config.json").write_text(json.dumps(meta))
    back = AnomalyDetector.load(folder)
    assert back.trim == 0.0 and math.isclose(back.model_.lik.min_log_sigma, -6.0)
    assert np.isfinite(back.anomaly_score(odd)).all()


def test_pictures(fitted, table_detector, digits, table, tmp_path):
    x, y = digits
    path = save_error_maps(fitted, x[:100], tmp_path / "flagged.png", n=5)
    assert path.exists() and path.stat().st_size > 1000
    path = save_error_maps(table_detector, table[2], tmp_path / "features.png", n=6, feature_names=list("abcdef"))
    assert path.exists() and path.stat().st_size > 1000
    with pytest.raises(InputError, match="feature names"):
        save_error_maps(table_detector, table[2], tmp_path / "bad.png", feature_names=["a"])


def test_chapter_detect_anomaly_still_works(fitted, digits):
    x, _ = digits
    flags, error = detect_anomaly(torch.as_tensor(x[:10]).reshape(10, -1), fitted.model_, threshold=1.0)
    assert flags.shape == (10,) and error.shape == (10,) and flags.dtype == torch.bool


# ---- image folders ----------------------------------------------------------------------------
def test_image_folder(tmp_path, digits):
    from matplotlib.image import imsave

    x, _ = digits
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(4):
        rgb = np.repeat(x[i][..., None], 3, axis=2)
        imsave(folder / f"img{i}.png", rgb)
    (folder / "notes.txt").write_text("not an image")
    ds = load_image_folder(folder)
    assert ds.x.shape == (4, 1, 8, 8) and ds.y is None
    np.testing.assert_allclose(ds.x[:, 0].numpy(), x[:4], atol=1 / 255)
    assert load_dataset(str(folder)).x.shape == (4, 1, 8, 8)
    imsave(folder / "img9.png", np.zeros((9, 8)))
    with pytest.raises(InputError, match="one size"):
        load_image_folder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .png"):
        load_image_folder(tmp_path / "empty")


# ---- the command line -------------------------------------------------------------------------
def test_cli_fit_and_score_images(tmp_path, digits, capsys):
    x, y = digits
    np.save(tmp_path / "zeros.npy", (x[y == 0] * 255).astype(np.uint8))  # pixel values 0..255
    np.savez(tmp_path / "mixed.npz", x=x[:120], y=y[:120])
    run = tmp_path / "run"
    assert main(["anomaly", "fit", str(tmp_path / "zeros.npy"), "--out", str(run), "--epochs", "30",
                 "--latent-dim", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("detector/detector.json", "detector/model/config.json", "run.json", "loss_curve.png",
                 "scores_histogram.png"):
        assert (run / name).exists(), name
    assert "Threshold" in out and str(run / "scores_histogram.png") in out
    assert main(["anomaly", "score", str(run), str(tmp_path / "mixed.npz"), "--out", str(tmp_path / "scored"),
                 "--normal-label", "0"]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "flagged" in out
    rows = list(csv.DictReader(open(tmp_path / "scored" / "scores.csv")))
    assert len(rows) == 120 and set(rows[0]) == {"index", "score", "anomaly", "label"}
    flagged = [int(r["anomaly"]) for r in rows]
    labels = [int(r["label"]) for r in rows]
    assert np.mean([f for f, lab in zip(flagged, labels) if lab != 0]) > 0.8
    for name in ("scores_histogram.png", "flagged.png"):
        assert (tmp_path / "scored" / name).stat().st_size > 1000
    assert main(["anomaly", "fit", str(tmp_path / "zeros.npy"), "--out", str(run), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_table_from_csv(tmp_path, table, capsys):
    normal, held_out, odd = table
    header = "a,b,c,d,e,f"
    np.savetxt(tmp_path / "normal.csv", normal[:300], delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "new.csv", np.r_[held_out[:20], odd[:5]], delimiter=",", header=header, comments="")
    run = tmp_path / "tab"
    assert main(["anomaly", "fit", str(tmp_path / "normal.csv"), "--out", str(run), "--epochs", "60",
                 "--latent-dim", "2", "--target-fpr", "0.05", "--score", "recon", "--no-progress", "--trim", "0"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["args"]["target_fpr"] == 0.05 and AnomalyDetector.load(run).trim == 0
    capsys.readouterr()
    assert main(["anomaly", "score", str(run), str(tmp_path / "new.csv")]) == 0
    scored = run / "score-new"
    rows = list(csv.DictReader(open(scored / "scores.csv")))
    assert len(rows) == 25 and sum(int(r["anomaly"]) for r in rows[20:]) >= 3
    assert (scored / "flagged.png").exists() and str(scored / "scores.csv") in capsys.readouterr().out


def test_cli_scores_an_image_folder_by_file_name(tmp_path, digits):
    from matplotlib.image import imsave

    x, y = digits
    det = AnomalyDetector(latent_dim=2, epochs=5).fit(x[y == 0])
    det.save(tmp_path / "det")
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        imsave(folder / f"p{i}.png", x[i], cmap="gray", vmin=0, vmax=1)
    assert main(["anomaly", "score", str(tmp_path / "det"), str(folder), "--out", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "scores.csv")))
    assert [r["file"] for r in rows] == ["p0.png", "p1.png", "p2.png"]


@pytest.mark.parametrize("argv, message", [
    (["anomaly", "score", "{tmp}"], "not a saved anomaly detector"),
    (["anomaly", "fit", "digits", "--contamination", "0.9", "--out", "{tmp}/x"], "contamination"),
    (["anomaly", "fit", "digits", "--trim", "1.5", "--out", "{tmp}/x"], "trim must lie"),
    (["anomaly", "fit", "digits", "--contamination", "0.1", "--target-fpr", "0.1", "--out", "{tmp}/x"], "not both"),
    (["anomaly", "fit", "{tmp}/missing.npy"], "does not exist"),
    (["anomaly", "fit", "digits", "--normal-label", "12", "--out", "{tmp}/x"], "label 12"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([AnomalyDetector(epochs=2, latent_dim=2, n_samples=2)])
def test_scikit_learn_estimator_checks(estimator, check):
    """scikit-learn's own checks of an outlier detector, all of them (deterministic scores
    independent of batching included)."""
    check(estimator)


def test_pyod_conventions():
    from vaekit.applications import PyODDetector

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(200, 5)), rng.normal(6, 1, size=(10, 5))]
    det = PyODDetector(epochs=30, latent_dim=2, contamination=0.05).fit(X)
    assert det.decision_scores_.shape == (210,) and set(det.labels_) <= {0, 1}
    assert det.labels_[200:].mean() > det.labels_[:200].mean()  # the far rows are the outliers
    scores = det.decision_function(X)
    assert np.allclose(scores, det.decision_scores_) and scores[200:].mean() > scores[:200].mean()
    proba = det.predict_proba(X)
    assert proba.shape == (210, 2) and np.allclose(proba.sum(1), 1) and set(det.predict(X)) <= {0, 1}


@pytest.mark.parametrize("make, message", [
    (lambda X: X[:1], "at least"),
    (lambda X: np.where(np.eye(len(X), X.shape[1], dtype=bool), np.nan, X), "NaN"),
    (lambda X: X.astype(object).__setitem__((0, 0), "abc") or X.astype(object), None),
])
def test_bad_tables_get_one_sentence(make, message):
    X = np.random.default_rng(0).normal(size=(40, 4))
    bad = make(X.copy())
    if message is None:  # a string among the numbers
        bad = X.astype(object)
        bad[0, 0] = "abc"
        message = "numbers"
    with pytest.raises(InputError, match=message):
        AnomalyDetector(epochs=1).fit(bad)


def test_constant_columns_train_and_another_width_is_refused():
    X = np.random.default_rng(0).normal(size=(60, 4))
    X[:, 2] = 3.0  # a constant column
    det = AnomalyDetector(epochs=2, latent_dim=2).fit(X)
    assert np.isfinite(det.anomaly_score(X)).all()
    with pytest.raises(InputError, match="features"):
        det.anomaly_score(X[:, :3])


def test_a_nearly_constant_column_keeps_scores_finite():
    """A value far outside an almost-always-zero training column scores finite, and far below normal rows."""
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(200, 5))
    normal[:, 0] = 0.0
    normal[0, 0] = 0.05  # std about 0.0035: a value of 1 is about 280 standard deviations out
    det = AnomalyDetector(epochs=2, seed=0).fit(normal)
    odd = normal[:20].copy()
    odd[:, 0] = 1.0
    scores = det.score_samples(odd)
    assert np.isfinite(scores).all() and scores.max() < det.score_samples(normal[:20]).min()
