"""Fitted priors in a model folder: `priors/<kind>/` (config.json + model.safetensors, the model
format) beside the model's own files, and `sampling_prior` in its config.json naming the one that
`vaekit.load` attaches."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_dir, atomic_write_bytes
from ..errors import InputError
from ..io import CONFIG_NAME, PRIORS_DIR, SAMPLING_PRIOR, write_module
from .diffusion import LatentDiffusion
from .gmm import GaussianMixturePrior

PRIOR_KINDS = {cls.model_type: cls for cls in (GaussianMixturePrior, LatentDiffusion)}
STANDARD = "standard"  # the model's own p(z), N(0, I) for a VAE


def check_kind(kind: str) -> str:
    if kind not in PRIOR_KINDS:
        raise InputError(f"Unknown prior {kind!r}; choose one of {', '.join(PRIOR_KINDS)}.")
    return kind


def saved_priors(folder) -> list[str]:
    """Names of the priors saved in a model folder."""
    root = Path(folder) / PRIORS_DIR
    return sorted(d.name for d in root.iterdir() if d.name in PRIOR_KINDS and d.is_dir()) if root.is_dir() else []


def default_prior(folder) -> str | None:
    """The prior the model folder's config.json names for sampling, or None."""
    try:
        name = json.loads((Path(folder) / CONFIG_NAME).read_text()).get(SAMPLING_PRIOR)
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def load_prior(folder, name: str):
    """The prior `name` saved in model folder `folder`."""
    from ..loading import load_module

    check_kind(name)
    where = Path(folder) / PRIORS_DIR / name
    if not where.is_dir():
        have = saved_priors(folder)
        raise InputError(f"{folder} has no {name} prior" + (f" (it has: {', '.join(have)})" if have else "") +
                         f"; fit one with `vaekit prior fit RUN --kind {name}`.")
    return load_module(where, PRIOR_KINDS, "prior", expect=name)


def attach_saved_prior(model, folder, which: str = "saved"):
    """Give `model` the prior `which` of its folder: "saved" (the one config.json names, if any),
    "standard" (none), or a prior's name. Returns the model."""
    if which == STANDARD or not hasattr(model, "use_prior"):
        if which not in ("saved", STANDARD):
            raise InputError(f"A {model.model_type} model samples through its own prior; --prior does not apply.")
        return model
    name = default_prior(folder) if which == "saved" else which
    if name is not None:
        model.use_prior(load_prior(folder, name))
    return model


def save_prior(prior, folder, make_default: bool = True) -> Path:
    """Write `prior` into model folder `folder` as priors/<kind>/ (atomically) and, with
    `make_default`, name it in config.json as the prior to sample from. Returns its folder."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise InputError(f"{folder} is not a model folder (it has no {CONFIG_NAME}).")
    where = folder / PRIORS_DIR / prior.model_type
    with atomic_dir(where) as tmp:
        write_module(prior, tmp)
    if make_default:
        meta = json.loads((folder / CONFIG_NAME).read_text())
        meta[SAMPLING_PRIOR] = prior.model_type
        atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return where
