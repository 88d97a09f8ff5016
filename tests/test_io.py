"""Saved models: exact round trips, and one clear error for every broken or foreign folder."""

import json

import pytest
import torch

import vaekit
from vaekit import InputError


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = vaekit.ConvVAE(4, image_size=8, channels=(8, 16), fc_dim=32).eval()
    model.save_pretrained(tmp_path / "m")
    return model, tmp_path / "m"


def test_folder_holds_config_and_safetensors_only(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model_type"] == "conv" and meta["config"]["latent_dim"] == 4
    assert meta["vaekit_version"] == vaekit.__version__


def test_round_trip_identical_outputs(saved):
    model, folder = saved
    loaded = vaekit.load(folder)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(model.encode(x)[0], loaded.encode(x)[0])
    z = torch.randn(3, 4)
    assert torch.equal(model.decode(z), loaded.decode(z))


def test_saving_again_replaces_atomically(saved, monkeypatch):
    model, folder = saved
    before = (folder / "model.safetensors").read_bytes()
    import vaekit.io as io

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io, "save_file", broken)
    with pytest.raises(OSError):
        model.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before  # the old save is untouched
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left behind


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]), "corrupt"),
    (lambda f: (f / "config.json").write_text("{not json"), "corrupt"),
    (lambda f: (f / "config.json").unlink(), "not a saved model"),
])
def test_broken_folders_give_one_clear_error(saved, damage, message):
    _, folder = saved
    damage(folder)
    with pytest.raises(InputError, match=message):
        vaekit.load(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="No model at"):
        vaekit.load(tmp_path / "nothing")


def test_weights_of_another_model_are_refused(saved, tmp_path):
    _, folder = saved
    other = vaekit.VAE(64, 4)
    other.save_pretrained(tmp_path / "other")
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="do not fit"):
        vaekit.load(folder)
    with pytest.raises(InputError, match="not the 'conv' model"):
        vaekit.load(tmp_path / "other", expect="conv")


def test_saved_files_have_ordinary_permissions(saved):
    import os
    import stat

    _, folder = saved
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o666 & ~mask


def test_saved_files_have_ordinary_permissions(tmp_path):
    """Temporary files are private while written; what is saved is readable like any other file."""
    import os

    from vaekit.checkpoint import save_checkpoint

    mask = os.umask(0o022)
    try:
        model = vaekit.VAE(8, 2, hidden_dims=(4,))
        model.save_pretrained(tmp_path / "m")
        optimizer = torch.optim.Adam(model.parameters())
        save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 1}, {})
    finally:
        os.umask(mask)
    for path in [*(tmp_path / "m").iterdir(), *(tmp_path / "ckpt").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o644, path
