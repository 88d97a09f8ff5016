"""The weights shipped with vaekit: loadable by name, usable from the CLI, and reproducing their numbers."""

import json

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.io import PRETRAINED_DIR

NAMES = {"mnist-mlp": vaekit.VAE, "mnist-mlp-long": vaekit.VAE, "mnist-iwae": vaekit.VAE, "mnist-hvae": vaekit.HierarchicalVAE,
         "mnist-hvae-long": vaekit.HierarchicalVAE, "mnist-hvae-pixel": vaekit.HierarchicalVAE,
         "mnist-hvae-pixel7": vaekit.HierarchicalVAE}


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_and_samples(name):
    model = vaekit.load(name)
    assert type(model) is NAMES[name] and not model.training
    torch.manual_seed(0)
    x = model.sample(4)
    assert x.shape[0] == 4 and x.numel() == 4 * 784
    assert float(x.min()) >= 0 and float(x.max()) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_results_file_names_its_protocol(name):
    result = json.loads((PRETRAINED_DIR / name / "results.json").read_text())
    assert result["k"] == 5000 and result["name"] == name
    assert result["command"].startswith("vaekit train --data mnist --binarize")
    assert result["nelbo"] >= result["nll"] > 60


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_reproduce_their_check(name, mnist_dir):
    """The NLL recorded at export, re-estimated with the same protocol and seed."""
    check = json.loads((PRETRAINED_DIR / name / "results.json").read_text())["check"]
    report = vaekit.evaluate(name, "mnist", k=check["k"], limit=check["images"], data_dir=mnist_dir, progress=False)
    assert report["nll"] == pytest.approx(check["nll"], abs=2e-3)
    assert report["nelbo"] == pytest.approx(check["nelbo"], abs=2e-3)


def test_cli_samples_and_evaluates_a_pretrained_name(tmp_path, mnist_dir, capsys):
    assert main(["sample", "mnist-mlp", "--n", "16", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sample_seed0.png").exists()
    capsys.readouterr()
    assert main(["evaluate", "mnist-mlp", "--data-dir", str(mnist_dir), "--limit", "5", "--k", "10", "--json",
                 "--no-progress"]) == 0  # the data set (mnist) comes from the shipped run.json
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and report["nll"] <= report["nelbo"]


def test_mnist_best_is_the_lowest_nll_on_the_full_test_set():
    from vaekit.io import pretrained_aliases

    best = pretrained_aliases()["mnist-best"]
    rows = {n: json.loads((PRETRAINED_DIR / n / "results.json").read_text()) for n in NAMES}
    nll = {n: r["nll"] for n, r in rows.items() if r["n"] == 10000}  # only rows measured on all 10,000 compete
    assert nll[best] == min(nll.values())
    a, b = vaekit.load("mnist-best"), vaekit.load(best)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(vaekit.InputError, match="mnist-best.*mnist-mlp"):
        vaekit.load("mnist-nope")
