"""The saved-model format: folders of `config.json` + `model.safetensors`. Nothing is unpickled.

This module knows files, not model classes (`vaekit.loading.load` rebuilds models).

Every write goes through `vaekit.atomic`, so a crash never leaves a half-written model where a
good one was, and a reader never sees one.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from .atomic import atomic_dir, set_ordinary_permissions
from .errors import InputError
from .version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
ALIASES_NAME = "aliases.json"
PRIORS_DIR = "priors"  # fitted priors of a model, each a folder of this same format
SAMPLING_PRIOR = "sampling_prior"  # config.json's key naming the prior samples come from


def model_config(model) -> dict:
    """What config.json holds: the model type, its constructor config, the library version and
    the fitted prior it samples from, if any."""
    meta = {"model_type": model.model_type, "config": model.config_dict(), "vaekit_version": __version__}
    prior = getattr(model, "fitted_prior", None)
    if prior is not None:
        meta[SAMPLING_PRIOR] = prior.model_type
    return meta


def save_pretrained(model, folder) -> Path:
    """Write `model` to `folder` as config.json + model.safetensors, with its fitted prior in
    priors/ (replacing the folder atomically)."""
    with atomic_dir(folder) as tmp:
        write_module(model, tmp)
    return Path(folder)


def write_module(module, folder: Path) -> None:
    """config.json + model.safetensors of `module` (and its fitted prior) into a new folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    (folder / CONFIG_NAME).write_text(json.dumps(model_config(module), indent=2) + "\n")
    save_tensors(state, folder / WEIGHTS_NAME)
    prior = getattr(module, "fitted_prior", None)
    if prior is not None:
        write_module(prior, folder / PRIORS_DIR / prior.model_type)


def save_tensors(tensors: dict, path) -> None:
    """safetensors.save_file with ordinary file permissions (it creates the file private)."""
    save_file(tensors, str(path))
    set_ordinary_permissions(path)


def pretrained_aliases() -> dict[str, str]:
    """Names that stand for a shipped model, e.g. {"mnist-best": "mnist-mlp"} (pretrained/aliases.json)."""
    try:
        return json.loads((PRETRAINED_DIR / ALIASES_NAME).read_text())
    except (OSError, ValueError):
        return {}


def pretrained_names() -> list[str]:
    """Every name vaekit.load accepts for shipped weights, aliases included."""
    names = [d.name for d in PRETRAINED_DIR.iterdir() if d.is_dir()] if PRETRAINED_DIR.is_dir() else []
    return sorted(names + list(pretrained_aliases()))


def pretrained_folder(name) -> Path | None:
    """The folder of shipped weights called `name` (directly or through an alias), else None."""
    name = pretrained_aliases().get(str(name), str(name))
    folder = PRETRAINED_DIR / name
    return folder if name and folder.is_dir() else None


def resolve_model_folder(path) -> Path:
    """A model folder from a model folder, a run folder (its `model/`) or a pretrained name."""
    p = Path(path)
    shipped = pretrained_folder(path) if not p.exists() else None
    if shipped is not None:
        return shipped
    if (p / "model" / CONFIG_NAME).exists():
        return p / "model"
    if not p.exists():
        names = pretrained_names()
        hint = f" or a pretrained name ({', '.join(names)})" if names else ""
        raise InputError(f"No model at {path}: give a folder written by save_pretrained, a run folder{hint}.")
    if not (p / CONFIG_NAME).exists():
        raise InputError(f"{p} holds no {CONFIG_NAME}: it is not a saved model or run folder.")
    return p
