"""The `vaekit` command as a user meets it: files written, paths printed, exit code 2 on bad input."""

import subprocess
import sys

import pytest

from vaekit.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "3", "--out", str(out), "--no-progress", "--latent-dim", "4"]) == 0
    return out


def test_train_writes_a_run_folder(run):
    for name in ("model/config.json", "model/model.safetensors", "metrics.jsonl", "loss_curve.png",
                 "samples.png", "reconstructions.png", "interpolation.png", "run.json", "checkpoint/state.json"):
        assert (run / name).exists(), name


def test_existing_run_is_refused(run, capsys):
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_continues_to_more_epochs(run):
    assert main(["train", "--out", str(run), "--resume", "--epochs", "4", "--no-progress"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


def test_ema_flag_reaches_the_trainer(tmp_path, monkeypatch):
    import vaekit.train

    seen = []
    real = vaekit.train.Trainer.__init__

    def spy(self, model, config=None, *args, **kwargs):
        seen.append(config.ema)
        real(self, model, config, *args, **kwargs)

    monkeypatch.setattr(vaekit.train.Trainer, "__init__", spy)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--ema", "0.9", "--fit-prior", "none", "--out", str(out), "--no-progress"]) == 0
    assert seen == [0.9]
    import json
    assert json.loads((out / "run.json").read_text())["args"]["ema"] == 0.9


def test_init_he_starts_the_decoder_at_the_data_mean_and_is_saved(tmp_path, monkeypatch):
    import torch
    import vaekit
    import vaekit.train
    from vaekit.data import load_dataset

    started = []
    real = vaekit.train.Trainer.fit

    def spy(self, train, *args, **kwargs):
        started.append(self.model.decoder[-1].bias.detach().clone())  # before the first step
        return real(self, train, *args, **kwargs)

    monkeypatch.setattr(vaekit.train.Trainer, "fit", spy)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--init", "he", "--val-fraction", "0", "--fit-prior", "none",
                 "--out", str(out), "--no-progress"]) == 0
    digits = load_dataset("digits", "train")
    mean = vaekit.load(out).check_input(digits.x).mean(0)  # gaussian likelihood: the bias is the mean itself
    assert torch.allclose(started[0], mean, atol=1e-5)
    assert vaekit.load(out).config.init == "he"
    with pytest.raises(SystemExit) as bad:
        main(["train", "--epochs", "1", "--init", "glorot", "--out", str(tmp_path / "bad"), "--no-progress"])
    assert bad.value.code == 2


def test_init_from_starts_at_the_saved_weights(run, tmp_path, monkeypatch, capsys):
    import torch
    import vaekit
    import vaekit.train

    started = []
    real = vaekit.train.Trainer.fit

    def spy(self, train, *args, **kwargs):
        started.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})  # before the first step
        return real(self, train, *args, **kwargs)

    monkeypatch.setattr(vaekit.train.Trainer, "fit", spy)
    saved = vaekit.load(run / "model").state_dict()
    out = tmp_path / "warm"
    assert main(["train", "--epochs", "1", "--latent-dim", "4", "--init-from", str(run), "--fit-prior", "none",
                 "--out", str(out), "--no-progress"]) == 0
    assert started[0].keys() == saved.keys()
    assert all(torch.equal(started[0][k], saved[k]) for k in saved)
    assert not torch.equal(vaekit.load(out).state_dict()["decoder.0.weight"], saved["decoder.0.weight"])  # trained on
    capsys.readouterr()
    for argv, says in ((["--latent-dim", "8"], "(latent_dim)"), (["--model", "conv", "--latent-dim", "4"], "a ConvVAE")):
        assert main(["train", "--epochs", "1", "--init-from", str(run), "--out", str(tmp_path / "bad"),
                     "--no-progress", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "give the" in err
        assert not (tmp_path / "bad").exists()
    assert main(["train", "--epochs", "1", "--init-from", str(tmp_path / "nothing"), "--out", str(tmp_path / "bad"),
                 "--no-progress"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command, picture", [
    (["sample", "--n", "16"], "sample_seed0.png"),  # not the run's own samples.png
    (["reconstruct", "--n", "8"], "reconstruct.png"),
    (["interpolate", "--pairs", "2", "--method", "slerp"], "interpolation_slerp.png"),
    (["traverse", "--dims", "0", "1"], "traversal.png"),
])
def test_commands_on_a_run(run, tmp_path, capsys, command, picture):
    assert main([command[0], str(run), "--out", str(tmp_path), *command[1:]]) == 0
    assert (tmp_path / picture).exists()
    assert str(tmp_path / picture) in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "no-such-set", "--epochs", "1"], "no-such-set"),
    (["train", "--model", "nope", "--epochs", "1"], "Unknown model"),
    (["train", "--data", "{missing}", "--epochs", "1"], "missing"),
    (["sample", "{missing}"], "No model"),
    (["train", "--ema", "1.5", "--epochs", "1"], "ema"),
])
def test_bad_input_exits_2_with_one_sentence(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{missing}", str(tmp_path / "missing.npz")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_out_of_range_values_with_bernoulli(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 10)).astype("float32") * 5)
    argv = ["train", "--data", str(tmp_path / "x.npy"), "--likelihood", "bernoulli", "--epochs", "1",
            "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "vaekit.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--latent-dim" in out.stdout and "--resume" in out.stdout
