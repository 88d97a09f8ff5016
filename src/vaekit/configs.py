"""One schema check for every config dataclass (model configs, TrainConfig, TrainSpec).

Each field's value must match its annotation (int, float, bool, str, None, tuple[int, ...],
unions of those) and, by the field's name, a range: sizes are whole numbers from 1 to
MAX_SIZE, weights and rates are finite, a standard deviation is positive. A config from a file
(config.json, run.json) is therefore refused with one sentence before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

from .errors import InputError

MAX_SIZE = 65536  # the largest width, channel count, code count or latent size a config may ask for
MAX_EXAMPLE_VALUES = 2**26  # values per example (input_dim, C * H * W): 64 M

# fields that are sizes (1 to MAX_SIZE), whole numbers >= 1, or counts that may be 0
SIZES = {"latent_dim", "fc_dim", "num_codes", "code_dim", "latent_channels", "hidden_channels", "prior_channels",
         "prior_layers", "prior_kernel", "num_classes", "in_channels", "image_size", "image_shape", "hidden_dims",
         "channels", "groups_per_scale", "components", "width", "timesteps", "sample_steps"}
WHOLE = {"input_dim", "batch_size", "k", "dataset_size"}
COUNTS = {"flow_length", "flow_hidden", "res_blocks", "cells_per_group", "epochs", "patience", "prior_epochs",
          "limit", "seed", "blocks"}
POSITIVE = {"sigma", "min_sigma", "lr"}  # finite and > 0
NON_NEGATIVE = {"beta", "alpha", "gamma", "commitment", "free_bits", "warmup_epochs", "grad_clip",
                "dead_code_threshold"}  # finite and >= 0
UNIT = {"decay", "val_fraction", "ema", "trim"}  # in [0, 1)


def validate(config, flags: bool = False) -> None:
    """Raise InputError naming the first field of `config` whose value does not fit (as a
    command-line flag, --latent-dim, when `flags`)."""
    hints = typing.get_type_hints(type(config))
    name = type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        where = "--" + f.name.replace("_", "-") if flags else f"{name}.{f.name}"
        if not _fits(value, hints[f.name]):
            raise InputError(f"{where} = {value!r} is not a valid {_describe(hints[f.name])}.")
        _check_range(where, f.name, value)


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # annotations this schema does not know are checked by the config itself


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None").replace("<class '", "").replace("'>", "")


def _check_range(owner: str, field: str, value) -> None:
    """owner: how the field is named in messages (Config.field or --flag)."""
    if value is None or isinstance(value, (str, bool)):
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError(f"{owner} must be a finite number, not {v!r}.")
    if field in SIZES and any(v < 1 or v > MAX_SIZE for v in values):
        raise InputError(f"{owner} = {value!r}: sizes must be whole numbers from 1 to {MAX_SIZE}.")
    if field in WHOLE and any(v < 1 for v in values):
        raise InputError(f"{owner} = {value!r} must be 1 or more.")
    if field in COUNTS and any(v < 0 for v in values):
        raise InputError(f"{owner} = {value!r} must be 0 or more.")
    if field in POSITIVE and any(v <= 0 for v in values):
        raise InputError(f"{owner} = {value!r} must be a positive number.")
    if field in NON_NEGATIVE and any(v < 0 for v in values):
        raise InputError(f"{owner} = {value!r} must be 0 or more.")
    if field in UNIT and any(not 0 <= v < 1 for v in values):
        raise InputError(f"{owner} = {value!r} must lie in [0, 1).")
    if field in ("input_dim",) and value > MAX_EXAMPLE_VALUES:
        raise InputError(f"{owner} = {value!r} exceeds {MAX_EXAMPLE_VALUES} values per example.")
