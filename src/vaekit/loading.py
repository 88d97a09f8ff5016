"""Rebuilding a saved model from its folder, run folder or pretrained name."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import InputError
from .io import CONFIG_NAME, WEIGHTS_NAME, read_config, resolve_model_folder
from .models.registry import FAMILIES, family


def load(path, map_location: str | torch.device = "cpu", expect: str | type | None = None):
    """Rebuild a saved model: from a model folder, a run folder, or a pretrained name.

    `expect` (a model type name or class) makes loading a different kind of model an error.
    """
    folder = resolve_model_folder(path)
    meta = read_config(folder)
    kind = meta["model_type"]
    try:
        cls = family(kind).cls
    except InputError:
        raise InputError(f"{folder} holds a model of unknown type {kind!r}; known: {', '.join(FAMILIES)}.") from None
    want = expect.model_type if isinstance(expect, type) else expect
    if want is not None and kind != want:
        raise InputError(f"{folder} holds a {kind!r} model, not the {want!r} model asked for.")
    try:
        config = cls.config_class(**meta["config"])
    except TypeError as e:
        raise InputError(f"{Path(folder) / CONFIG_NAME} does not describe a {kind!r} model ({e}).") from None
    model = cls(config=config)
    weights = Path(folder) / WEIGHTS_NAME
    if not weights.exists():
        raise InputError(f"{folder} has no {WEIGHTS_NAME}; the save was incomplete, re-save the model.")
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as e:  # safetensors raises its own error type, which moved between versions
        raise InputError(f"{weights} is corrupt or truncated ({e}); re-save the model.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise InputError(f"The weights in {weights} do not fit the model its config.json describes.") from None
    return model.to(map_location).eval()
