"""The command line as a new user meets it: one test per defect a user study found."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main

VAEKIT = [sys.executable, "-m", "vaekit.cli"]
QUICK = ["--epochs", "2", "--no-progress"]


def _real(args, cwd=None, env=None, **kwargs):
    """The real `vaekit` command in a fresh process."""
    return subprocess.run([*VAEKIT, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, **kwargs)


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()  # raw scale: values up to about 4,000
    path = tmp_path_factory.mktemp("table") / "cancer.csv"
    header = ",".join([*data.feature_names, "label"])
    np.savetxt(path, np.c_[data.data, data.target], delimiter=",", header=header, comments="")
    return path, data.data


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    assert main(["train", "--out", str(out), "--epochs", "3", "--no-progress", "--limit", "300"]) == 0
    return out


# 1. tables
def test_a_raw_scale_csv_trains_samples_and_pictures_in_its_own_units(table_csv, tmp_path):
    path, raw = table_csv
    out = tmp_path / "run"
    done = _real(["train", "--data", str(path), "--out", str(out), "--epochs", "20", "--no-progress"])
    assert done.returncode == 0, done.stderr
    assert (out / "standardization.json").exists() and (out / "samples.png").exists()
    assert "Traceback" not in done.stderr
    sampled = _real(["sample", str(out), "--n", "400", "--save", str(tmp_path / "s.npz")])
    assert sampled.returncode == 0, sampled.stderr
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (400, 30)
    # in the data's own units: the biggest feature's mean is in the hundreds, as in the data
    big = raw.mean(0).argmax()
    assert 0.5 < x[:, big].mean() / raw[:, big].mean() < 2


# 2. no stub folders; interrupts say what was saved
def test_failed_runs_leave_no_stub_folder_and_the_fix_just_works(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--device", "gpu", *QUICK]) == 2
    assert main(["train", "--out", str(out), "--lr", "10", *QUICK]) == 2
    assert not out.exists()
    capsys.readouterr()
    assert main(["train", "--out", str(out), *QUICK]) == 0  # the corrected command, no --overwrite needed


def test_an_interrupt_says_what_was_saved(tmp_path, capsys, monkeypatch):
    from vaekit.train import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK]) == 130
    err = capsys.readouterr().err
    assert "no epoch was saved" in err and "--resume" not in err and not out.exists()


# 3. a busy CPU
def test_threads_flag_environment_and_per_epoch_lines_without_a_terminal(tmp_path):
    done = _real(["train", "--out", str(tmp_path / "a"), "--epochs", "2", "--threads", "1", "--limit", "200"])
    assert done.returncode == 0, done.stderr
    assert "1 CPU thread (--threads)" in done.stdout
    assert "epoch 2/2: train_loss" in done.stdout  # no terminal: a plain line per epoch
    bad = _real(["train", "--out", str(tmp_path / "b"), *QUICK], env={"VAEKIT_THREADS": "many"})
    assert bad.returncode == 2 and "VAEKIT_THREADS" in bad.stderr


# 4. commands on a run keep the run's pictures
def test_sample_and_reconstruct_keep_the_runs_pictures(digits_run, tmp_path, capsys):
    before = {name: (digits_run / name).read_bytes() for name in ("samples.png", "reconstructions.png")}
    assert main(["sample", str(digits_run), "--n", "8", "--save", str(tmp_path / "x.npy")]) == 0
    assert main(["reconstruct", str(digits_run), "--n", "4"]) == 0
    for name, data in before.items():
        assert (digits_run / name).read_bytes() == data
    assert np.load(tmp_path / "x.npy").shape[0] == 8
    assert main(["sample", str(digits_run), "--label", "3"]) == 2
    assert "--label applies to conditional models" in capsys.readouterr().err


# 5. flags that had silent wrong effects
def test_epochs_zero_and_resume_changes_are_explicit(digits_run, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "z"), "--epochs", "0"]) == 2
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--batch-size", "64", "--epochs", "4"]) == 2
    assert "--batch-size was 128 there" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress"]) == 0
    assert "already has 3 epochs" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--epochs", "4", "--lr", "0.0005", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Resuming with --epochs 4, --lr 0.0005" in printed and "model/ holds epoch" in printed
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


def test_early_stopping_is_said_without_a_progress_bar(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "60", "--patience", "1", "--lr", "0.02",
                 "--no-progress", "--limit", "200"]) == 0
    assert "Early stopping after epoch" in capsys.readouterr().out


# 6. one sentence, exit 2, no tracebacks
@pytest.mark.parametrize("args, message", [
    (["train", "--device", "gpu"], "Unknown device"),
    (["train", "--latent-dim", "0"], "--latent-dim"),
    (["train", "--lr", "-1"], "--lr"),
    (["sample", "mnist-mlp", "--n", "-3"], "--n must be 1 or more"),
])
def test_bad_flags_get_one_sentence_from_the_real_command(args, message, tmp_path):
    done = _real([*args, *([] if args[0] != "train" else ["--out", str(tmp_path / "r"), "--epochs", "1"])])
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_a_gpu_is_one_sentence(tmp_path):
    done = _real(["train", "--device", "cuda", "--out", str(tmp_path / "r"), "--epochs", "1"])
    assert done.returncode == 2 and "no CUDA device" in done.stderr


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    done = subprocess.run(f"{sys.executable} -m vaekit.cli train --help | head -1", shell=True, capture_output=True,
                          text=True)
    assert "Traceback" not in done.stderr and done.stdout.startswith("usage")


def test_python_inputs_a_user_passes(digits_data):
    model = vaekit.VAE(64, 4, hidden_dims=(16,))
    x = digits_data.x[:10].numpy().reshape(10, 64).astype(np.float64)
    flags, errors = vaekit.detect_anomaly(x, model, 50.0)
    assert flags.shape == errors.shape == (10,)
    with pytest.raises(vaekit.InputError, match="order of the arguments"):
        vaekit.detect_anomaly(model, x, 50.0)
    with pytest.raises(vaekit.InputError, match=r"\[0, 1\]"):
        model.loss(torch.from_numpy(x) * 5)


# 7. defaults that make informative pictures
def test_likelihood_defaults_follow_the_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    colour = tmp_path / "colour.npz"
    np.savez(colour, x=rng.random((60, 3, 8, 8)).astype(np.float32))
    assert main(["train", "--data", str(colour), "--out", str(tmp_path / "c"), *QUICK]) == 0
    assert "gaussian (sigma 0.1) likelihood" in capsys.readouterr().out
    wide = tmp_path / "wide.npy"
    np.save(wide, (rng.random((60, 1, 8, 8)) * 4 - 2).astype(np.float32))
    assert main(["train", "--data", str(wide), "--out", str(tmp_path / "w"), *QUICK]) == 0
    assert "gaussian (sigma 1) likelihood" in capsys.readouterr().out


def test_traverse_shows_the_most_used_dimensions_and_cvae_samples_are_grouped(digits_run):
    from vaekit.latent import active_dims
    from vaekit.runs import demo_labels

    model = vaekit.load(digits_run)
    data = vaekit.data.load_dataset("digits", split="test")
    dims, kls = active_dims(model, data.x, k=3, with_kl=True)
    assert kls == sorted(kls, reverse=True) and kls[0] > 0.01
    assert main(["traverse", str(digits_run)]) == 0
    labels = demo_labels(vaekit.CVAE(64, 4, 10), 64)
    assert labels.tolist() == sorted(labels.tolist()) and set(labels.tolist()) == set(range(10))


# 8. augment's file trains
def test_augmented_examples_train(digits_run, tmp_path):
    out = tmp_path / "extra.npz"
    assert main(["augment", str(digits_run), "--out", str(out), "--limit", "40", "--n-per-example", "3"]) == 0
    x = np.load(out)["x"]
    assert x.min() >= 0 and x.max() <= 1
    assert main(["train", "--data", str(out), "--out", str(tmp_path / "again"), *QUICK]) == 0


# 9. the README
def test_readme_states_the_torch_range_of_the_package():
    root = Path(__file__).resolve().parents[1]
    assert "torch>=2.3" in (root / "README.md").read_text() and '"torch>=2.3"' in (root / "pyproject.toml").read_text()


# 10. honest measurement
def test_evaluate_says_what_it_scored_and_where_its_report_went(digits_run, tmp_path, capsys):
    rows = tmp_path / "rows.npy"
    np.save(rows, vaekit.data.load_dataset("digits").x[:30].numpy())
    assert main(["evaluate", str(digits_run), "--data", str(rows), "--k", "5", "--no-progress"]) == 0
    assert "has no test split" in capsys.readouterr().err
    os.chmod(digits_run, 0o555)
    try:
        if not os.access(digits_run, os.W_OK):  # root writes anywhere; the message is checked where it applies
            assert main(["evaluate", str(digits_run), "--k", "5", "--no-progress"]) == 0
            assert "No evaluation.json written" in capsys.readouterr().out
    finally:
        os.chmod(digits_run, 0o755)


def test_denoise_writes_no_arrays_unless_asked(digits_run, tmp_path):
    out = tmp_path / "den"
    assert main(["denoise", str(digits_run), "--limit", "20", "--out", str(out)]) == 0
    assert (out / "denoising.png").exists() and not (out / "denoised.npy").exists()


# what peers have
def test_version_info_runs_and_from_pretrained(digits_run, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"vaekit {vaekit.__version__}"
    assert main(["info", str(digits_run)]) == 0
    info = capsys.readouterr().out
    assert "best_epoch" in info and "vae" in info
    assert main(["runs", str(digits_run.parent)]) == 0
    assert "run" in capsys.readouterr().out
    assert type(vaekit.VAE.from_pretrained(digits_run)) is vaekit.VAE
    with pytest.raises(vaekit.InputError, match="not the 'conv'"):
        vaekit.ConvVAE.from_pretrained(digits_run)


def test_run_layer_is_callable_from_python(tmp_path):
    from vaekit.runs import TrainSpec, train

    run = train(TrainSpec(out=str(tmp_path / "py"), epochs=2, limit=200, no_progress=True), say=lambda *_: None)
    assert run.history and run.files["samples"].exists() and isinstance(run.model, vaekit.VAE)
    assert json.loads((tmp_path / "py" / "run.json").read_text())["args"]["epochs"] == 2
