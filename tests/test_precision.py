"""Precision names: 'auto' resolves by hardware; bf16 asked for where it is emulated says so."""

import warnings

import pytest
import torch

import vaekit.precision as precision
from vaekit.errors import InputError

CPU = torch.device("cpu")


@pytest.mark.parametrize("fast, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_takes_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, fast, expected):
    monkeypatch.setattr(precision, "fast_bf16", lambda device: fast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'auto' never warns
        assert precision.resolve_precision("auto", CPU) == expected


def test_bf16_on_a_cpu_without_bf16_instructions_warns_and_is_kept(monkeypatch):
    monkeypatch.setattr(precision, "fast_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        assert precision.resolve_precision("bf16", CPU) == "bf16"
    monkeypatch.setattr(precision, "fast_bf16", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16", CPU) == "bf16"


def test_evaluate_warns_about_emulated_bf16(monkeypatch):
    import vaekit
    from vaekit.models import VAE

    monkeypatch.setattr(precision, "fast_bf16", lambda device: False)
    x = (torch.rand(4, 784) < 0.3).float()
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        vaekit.evaluate(VAE(784, 2), x, k=2, precision="bf16")


def test_fp16_off_cuda_is_an_input_error():
    with pytest.raises(InputError, match="needs a CUDA device"):
        precision.resolve_precision("fp16", CPU)


def test_the_cli_prints_the_warning_as_one_line(monkeypatch, tmp_path, capsys):
    from vaekit.cli.main import main
    from vaekit.models import VAE

    monkeypatch.setattr(precision, "fast_bf16", lambda device: False)
    VAE(64, 2).save_pretrained(tmp_path / "model")
    args = ["evaluate", str(tmp_path / "model"), "--data", "digits", "--k", "2", "--limit", "10", "--no-progress"]
    assert main([*args, "--precision", "bf16"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("vaekit: warning: This CPU has no bfloat16 instructions") and len(err) == 1
