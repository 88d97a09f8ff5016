"""Rebuilding a saved model from its folder, run folder or pretrained name.

Nothing is trusted before it is checked: config.json must name a registered family and give
every config field a value of the right type and range; the tensors the safetensors header
declares must be exactly the ones that model has, so no allocation exceeds what the weights file
holds. Both files are read from one snapshot of the folder; a folder that a writer replaces
while it is read is read again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from .errors import InputError
from .io import CONFIG_NAME, WEIGHTS_NAME, resolve_model_folder
from .models.registry import families

READ_ATTEMPTS = 20  # reads of a folder that keeps being replaced while it is read
MAX_CONFIG_BYTES = 1 << 20
ELEMENT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def load(path, map_location: str | torch.device = "cpu", expect: str | type | None = None, prior: str = "saved"):
    """Rebuild a saved model: from a model folder, a run folder, or a pretrained name.

    `expect` (a model type name or class) makes loading a different kind of model an error.
    `prior`: which fitted prior (`vaekit.priors`) samples come from: "saved" (the one the folder
    names, if any), "standard" (none: the model's own p(z)), or a prior's name ("gmm", "diffusion").
    """
    from .priors.store import attach_saved_prior

    folder = resolve_model_folder(path)
    classes = {name: f.cls for name, f in families().items()}
    model = load_module(folder, classes, "model", map_location, expect)
    return attach_saved_prior(model, folder, prior)


def load_module(folder: Path, classes, what: str, map_location="cpu", expect=None):
    """Rebuild the module saved in `folder` (config.json + model.safetensors) from `classes`, a
    mapping of model_type to class; `what` names it in messages ("model", "prior", ...)."""
    folder = Path(folder)
    for attempt in range(READ_ATTEMPTS):
        try:
            config_bytes, weights = _snapshot(folder)
            return _build(folder, config_bytes, weights, map_location, expect, classes, what)
        except _Replaced:
            time.sleep(0.005 * (attempt + 1))
    raise InputError(f"{folder} kept being rewritten while it was read; try again when its writer has finished.")


class _Replaced(Exception):
    """The folder changed under the reader."""


def _snapshot(folder: Path) -> tuple[bytes, bytes]:
    """config.json and model.safetensors as bytes, both from the same version of the folder."""
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        raise _Replaced from None
    except OSError as e:
        raise InputError(f"Cannot read {folder} ({e.strerror}).") from None
    try:
        before = os.fstat(dfd).st_ino
        with ExitStack() as files:  # every descriptor owned by one file object, closed once
            opened = []
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                try:
                    opened.append(files.enter_context(os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dfd), "rb")))
                except FileNotFoundError:
                    try:
                        replaced = os.stat(folder).st_ino != before
                    except FileNotFoundError:
                        replaced = True
                    if replaced:
                        raise _Replaced from None
                    raise InputError(f"{folder} has no {name}; the save was incomplete, re-save the model.") from None
                except OSError as e:  # a folder where a file belongs, no permission, ...
                    raise InputError(f"Cannot read {folder / name} ({e.strerror}).") from None
            config, weights = opened
            if os.fstat(config.fileno()).st_size > MAX_CONFIG_BYTES:
                raise InputError(f"{folder / CONFIG_NAME} is larger than any model's config ({MAX_CONFIG_BYTES} bytes).")
            return config.read(), weights.read()
    finally:
        os.close(dfd)


def _build(folder: Path, config_bytes: bytes, weights: bytes, map_location, expect, classes, what):
    cls, config = _read_config(folder, config_bytes, expect, classes, what)
    header = _read_header(folder / WEIGHTS_NAME, weights)
    with torch.device("meta"):  # shapes only: nothing is allocated
        probe = cls(config=config)
    wanted = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    given = {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__"}
    if wanted != given:
        differ = sorted(set(wanted) ^ set(given)) or sorted(k for k in wanted if wanted[k] != given[k])
        raise InputError(f"The weights in {folder / WEIGHTS_NAME} do not fit the model its config.json describes "
                         f"({differ[0]} differs).")
    model = cls(config=config)
    try:
        state = load_safetensors(weights)
    except Exception as e:  # safetensors raises its own error type, which moved between versions
        raise InputError(f"{folder / WEIGHTS_NAME} is corrupt or truncated ({e}); re-save the model.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise InputError(f"The weights in {folder / WEIGHTS_NAME} do not fit the model its config.json describes.") from None
    return model.to(map_location).eval()


def _read_config(folder: Path, raw: bytes, expect, classes, what: str):
    """(model class, validated config) from config.json's bytes."""
    where = folder / CONFIG_NAME
    try:
        meta = json.loads(raw.decode("utf-8"))
        kind, fields = meta["model_type"], meta["config"]
        if not isinstance(kind, str) or not isinstance(fields, dict):
            raise TypeError("model_type must be a string and config an object")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{where} is corrupt ({e}); re-save the model.") from None
    cls = classes.get(kind)
    if cls is None:
        raise InputError(f"{folder} holds a {what} of unknown type {kind!r}; known: {', '.join(classes)}.")
    want = expect.model_type if isinstance(expect, type) else expect
    if want is not None and kind != want:
        raise InputError(f"{folder} holds a {kind!r} {what}, not the {want!r} {what} asked for.")
    names = [f.name for f in dataclasses.fields(cls.config_class)]
    fields = {**getattr(cls.config_class, "added_fields", {}), **fields}  # what files older than a field meant
    missing = [n for n in names if n not in fields]
    if missing:
        raise InputError(f"{where} does not give {', '.join(missing)} for its {kind!r} model; re-save the model.")
    try:
        config = cls.config_class(**fields)
    except TypeError as e:
        raise InputError(f"{where} does not describe a {kind!r} model ({e}).") from None
    except (ValueError, AttributeError) as e:
        if isinstance(e, InputError):
            raise InputError(f"{where}: {e}") from None
        raise InputError(f"{where} holds a value its {kind!r} config cannot take ({e}).") from None
    from .configs import validate

    try:
        validate(config)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return cls, config


def _read_header(path: Path, raw: bytes) -> dict:
    """The safetensors header of `raw`, checked against the bytes that follow it."""
    try:
        if len(raw) < 8:
            raise ValueError("shorter than its header")
        (size,) = struct.unpack("<Q", raw[:8])
        if size > len(raw) - 8:
            raise ValueError("the header runs past the end of the file")
        header = json.loads(raw[8:8 + size].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        data = len(raw) - 8 - size
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            count = 1
            for d in entry["shape"]:
                count *= int(d)
            if entry["dtype"] not in ELEMENT_BYTES or not 0 <= start <= end <= data or \
                    end - start != count * ELEMENT_BYTES[entry["dtype"]]:
                raise ValueError(f"tensor {key} does not fit the file")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{path} is corrupt or truncated ({e}); re-save the model.") from None
    return header
