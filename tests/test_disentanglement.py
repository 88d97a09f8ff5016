"""Procedural dSprites and the disentanglement metrics on codes whose answer is known."""

import json

import numpy as np
import pytest
import torch

from vaekit.data import from_arrays, load_dataset, load_dsprites
from vaekit.data.dsprites import (FACTOR_NAMES, FACTOR_SIZES, POSITIONS, SCALES, all_factors, draw, factor_grid,
                                  split_indices)
from vaekit.disentanglement import (betavae_score, dci, dci_completeness, dci_disentanglement, factorvae_score,
                                    latent_factors, mig, scores)
from vaekit.errors import InputError


# ---- the generator ---------------------------------------------------------------------------

def test_factor_grid_has_one_image_per_combination():
    factors = all_factors()
    assert factors.shape == (737280, 5) == (np.prod(FACTOR_SIZES), len(FACTOR_NAMES))
    assert len(np.unique(factors, axis=0)) == 737280
    assert [len(np.unique(factors[:, k])) for k in range(5)] == list(FACTOR_SIZES)
    assert (factors[1] - factors[0]).tolist() == [0, 0, 0, 0, 1]  # the last factor varies fastest


def test_splits_partition_the_grid():
    train, test = split_indices("train"), split_indices("test")
    assert len(test) == 737280 // 20 and len(train) + len(test) == 737280
    assert not np.intersect1d(train, test).size


def _moments(image: torch.Tensor):
    """Area, centroid (x, y) and the orientation of the second moments of a binary (R, R) image."""
    rows, cols = torch.nonzero(image, as_tuple=True)
    x, y = cols.double(), rows.double()
    cov = torch.cov(torch.stack([x, y]))
    return len(x), x.mean().item(), y.mean().item(), 0.5 * np.arctan2(2 * cov[0, 1].item(), (cov[0, 0] - cov[1, 1]).item())


def test_position_moves_the_centroid_and_scale_the_area():
    images = draw(0, 1.0, 0.0, POSITIONS[[0, 31]], POSITIONS[[0, 31]], 64)  # (2, 2, 64, 64)
    area, x0, y0, _ = _moments(images[0, 0])
    _, x1, _, _ = _moments(images[1, 0])
    _, _, y1, _ = _moments(images[0, 1])
    assert x1 - x0 == pytest.approx(0.64 * 64, abs=1) and y1 - y0 == pytest.approx(0.64 * 64, abs=1)
    assert area == pytest.approx(16 * 16, rel=0.05)  # a square of side 2 * 0.125 * 64 pixels
    areas = [_moments(draw(1, s, 0.0, [0.5], [0.5], 64)[0, 0])[0] for s in SCALES]
    assert np.all(np.diff(areas) > 0)
    assert areas[-1] / areas[0] == pytest.approx(4, rel=0.1)  # area grows as scale squared


def test_factor_grid_picture_moves_one_factor_per_row():
    images, labels = factor_grid(32, steps=5)
    assert images.shape == (12, 5, 1, 32, 32) and labels[0] == "square: scale" and labels[-1] == "heart: y"
    areas = images[0].sum(dim=(1, 2, 3))  # the square's scale row grows
    assert torch.all(areas[1:] >= areas[:-1]) and areas[-1] > 3 * areas[0]


def test_orientation_rotates_the_second_moments():
    for theta in (0.3, 0.9, -0.6):
        *_, angle = _moments(draw(1, 1.0, theta, [0.5], [0.5], 64)[0, 0])  # the ellipse's long axis
        assert -angle == pytest.approx(theta, abs=0.05)  # image rows point down: the angle flips sign


def test_load_dsprites_labels_subsets_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    keep = {"orientation": [0, 10], "x": range(0, 32, 8), "y": [5]}
    data = load_dsprites("all", 16, keep=keep)
    assert len(data) == 3 * 6 * 2 * 4 * 1 and data.x.shape[1:] == (1, 16, 16)
    assert data.factor_names == FACTOR_NAMES and torch.equal(data.y, data.factors[:, 0])
    assert set(data.factors[:, 3].tolist()) == {0, 8, 16, 24} and set(np.unique(data.x)) <= {0.0, 1.0}
    cached = tmp_path / "vaekit" / "dsprites" / "dsprites-16.npy"
    assert cached.is_file()
    again = load_dsprites("all", 16, keep=keep)  # read back from the cache
    assert torch.equal(again.x, data.x)
    first = data.factors[0].tolist()
    assert torch.equal(data.x[0, 0], draw(first[0], SCALES[first[1]], 0.0, POSITIONS[[0]], POSITIONS[[5]], 16)[0, 0].float())
    assert data.subset([1, 2]).factors.shape == (2, 5)
    with pytest.raises(InputError, match="no factor"):
        load_dsprites("all", 16, keep={"colour": [0]})
    with pytest.raises(InputError, match="indices 0..39"):
        load_dsprites("all", 16, keep={"orientation": [40]})
    with pytest.raises(InputError, match="resolution"):
        load_dsprites("all", 20)
    with pytest.raises(InputError, match="dSprites' whole grid"):
        load_dataset("digits", split="all")


def test_npz_factors_are_read_and_checked(tmp_path):
    x = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    f = np.array([[0, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 0]])
    np.savez(tmp_path / "a.npz", x=x, factors=f, factor_names=np.array(["colour", "size"]))
    data = load_dataset(tmp_path / "a.npz")
    assert data.factor_names == ("colour", "size") and data.factors.tolist() == f.tolist()
    with pytest.raises(InputError, match="one row of factor indices"):
        from_arrays(x, factors=f[:3])
    with pytest.raises(InputError, match="discretize"):
        from_arrays(x, factors=f + 0.5)
    with pytest.raises(InputError, match="one name per factor"):
        from_arrays(x, factors=f, factor_names=["a"])


# ---- the metrics on known cases ----------------------------------------------------------------

SIZES = (3, 6, 10, 8)


@pytest.fixture(scope="module")
def synthetic():
    """Factors on a full grid and three kinds of codes: each a copy of one factor, each a sum of two, noise."""
    grids = np.meshgrid(*(np.arange(n) for n in SIZES), indexing="ij")
    factors = np.stack([g.ravel() for g in grids], 1)  # (1440, 4)
    rng = np.random.default_rng(0)
    unit = (factors - (np.array(SIZES) - 1) / 2) / np.array(SIZES)  # each factor on a comparable scale
    copies = np.concatenate([unit + 0.01 * rng.standard_normal(unit.shape),
                             1e-3 * rng.standard_normal((len(unit), 2))], 1)  # two collapsed codes beside
    mixed = unit + np.roll(unit, 1, axis=1) + 0.01 * rng.standard_normal(unit.shape)
    noise = rng.standard_normal((len(unit), 6))
    return factors, copies, mixed, noise


def test_mig_orders_copies_mixtures_and_noise(synthetic):
    factors, copies, mixed, noise = synthetic
    got = [mig(c, factors)["mig"] for c in (copies, mixed, noise)]
    assert got[0] > 0.95 and 0.1 < got[1] < 0.6 and got[2] < 0.05


def test_factorvae_score_orders_and_prunes(synthetic):
    factors, copies, mixed, noise = synthetic
    best = factorvae_score(copies, factors)
    assert best["factorvae"] == 1.0 and best["active_dims"] == 4  # the collapsed codes are pruned
    assert 0.4 < factorvae_score(mixed, factors)["factorvae"] < 0.9
    assert factorvae_score(noise, factors)["factorvae"] < 0.4  # chance: 1 / 4
    assert factorvae_score(np.zeros((len(factors), 3)), factors)["active_dims"] == 0


def test_betavae_score_separates_information_from_noise(synthetic):
    factors, copies, _, noise = synthetic
    assert betavae_score(copies, factors, num_train=2000, num_eval=1000)["betavae"] > 0.98
    assert betavae_score(noise, factors, num_train=2000, num_eval=1000)["betavae"] < 0.4


def test_dci_limits_and_ordering(synthetic):
    factors, copies, mixed, noise = synthetic
    got = [dci(c, factors, num_train=1000, num_test=400) for c in (copies, mixed, noise)]
    assert got[0]["disentanglement"] > 0.9 and got[0]["completeness"] > 0.9 and got[0]["informativeness"] > 0.95
    assert 0.2 < got[1]["disentanglement"] < 0.8 and got[1]["informativeness"] > 0.6
    assert got[2]["disentanglement"] < 0.15 and got[2]["informativeness"] < 0.45


def test_dci_closed_forms():
    assert dci_disentanglement(np.eye(3)) == pytest.approx(1) and dci_completeness(np.eye(3)) == pytest.approx(1)
    assert dci_disentanglement(np.ones((3, 3))) == pytest.approx(0, abs=1e-9)
    one_code_for_all = np.array([[1.0, 1.0], [0.0, 0.0]])  # code 0 explains both factors: complete, not disentangled
    assert dci_completeness(one_code_for_all) == pytest.approx(1, abs=1e-6)
    assert dci_disentanglement(one_code_for_all) == pytest.approx(0, abs=1e-6)


def test_latent_factors_and_input_checks(synthetic):
    factors, copies, *_ = synthetic
    info = np.array(mig(copies, factors)["mutual_information"])
    named = latent_factors(info, ["a", "b", "c", "d"], copies.std(axis=0))
    assert [d["factor"] for d in named] == ["a", "b", "c", "d", None, None]
    with pytest.raises(InputError, match="2 or more latent"):
        mig(copies[:, :1], factors)
    with pytest.raises(InputError, match="same"):
        mig(copies[:10], factors)
    with pytest.raises(InputError, match="Unknown disentanglement metric"):
        scores(copies, factors, ["sap"])


# ---- from a trained model, and from the command line -------------------------------------------

@pytest.fixture(scope="module")
def sprites_run(tmp_path_factory):
    """A small VAE trained for one epoch on a 16 x 16 dSprites subset saved as a user's .npz file."""
    from vaekit.cli import main

    folder = tmp_path_factory.mktemp("sprites")
    data = load_dsprites("all", 16, keep={"orientation": [0], "x": range(0, 32, 4), "y": range(0, 32, 4)})
    np.savez(folder / "sprites.npz", x=data.x.numpy(), factors=data.factors.numpy(),
             factor_names=np.array(data.factor_names))
    out = folder / "run"
    assert main(["train", "--data", str(folder / "sprites.npz"), "--epochs", "1", "--latent-dim", "3", "--out", str(out),
                 "--no-progress", "--fit-prior", "none", "--val-fraction", "0"]) == 0
    return out


def test_disentanglement_command_writes_scores_and_labelled_traversal(sprites_run, capsys):
    from vaekit.cli import main

    assert main(["disentanglement", str(sprites_run), "--metrics", "mig,factorvae,dci", "--dci-train", "200"]) == 0
    printed = capsys.readouterr().out
    assert "MIG" in printed and "traversal_factors.png" in printed
    result = json.loads((sprites_run / "disentanglement.json").read_text())
    assert set(result) >= {"mig", "factorvae", "dci", "latent_factors"} and "betavae" not in result
    assert 0 <= result["mig"]["mig"] <= 1 and len(result["latent_factors"]) == 3
    assert result["factor_names"] == list(FACTOR_NAMES) and result["examples"] == 1152
    assert (sprites_run / "traversal_factors.png").stat().st_size > 0


def test_disentanglement_command_refuses_bad_input(sprites_run, capsys):
    from vaekit.cli import main

    assert main(["disentanglement", str(sprites_run), "--metrics", "sap"]) == 2
    assert "--metrics takes" in capsys.readouterr().err
    assert main(["disentanglement", str(sprites_run), "--data", "digits"]) == 2  # no factors (and another shape)
    assert "error:" in capsys.readouterr().err
