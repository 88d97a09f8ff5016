"""Training checkpoints for exact resume: weights, optimizer state, RNG states and counters.

A checkpoint is a folder `checkpoint/` holding `state.safetensors` (every tensor) and
`state.json` (everything else), written atomically; no pickle is involved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from .distributions import InputError
from .atomic import atomic_dir
from .averaging import PREFIX as AVERAGE_PREFIX
from .io import save_tensors


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into named tensors and a JSON-able remainder."""
    tensors, plain = {}, {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["plain"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder, model, optimizer, counters: dict, generators: dict[str, torch.Generator],
                    average=None) -> None:
    """Write model + optimizer + RNG + counters (epoch, step, history...) to `folder`, and the
    weight average (a WeightAverage) when training keeps one."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update(average.state())
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    with atomic_dir(folder) as tmp:
        save_tensors(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps({"optimizer": opt_meta, "counters": counters}, indent=1))


def load_checkpoint(folder, model, optimizer, generators: dict[str, torch.Generator], average=None) -> dict:
    """Restore what save_checkpoint wrote; returns the counters dict. Anything that does not fit
    (a corrupt file, another model, edited counters) is an InputError, and nothing is restored.
    A weight `average` is restored too; from a checkpoint without one it starts at the weights."""
    folder = Path(folder)
    try:
        tensors = load_file(str(folder / "state.safetensors"))
        meta = json.loads((folder / "state.json").read_text())
    except FileNotFoundError:
        raise InputError(f"No checkpoint in {folder}: no epoch of this run was saved, so there is nothing to "
                         "resume; start it again with --overwrite.") from None
    except Exception as e:  # corrupt JSON or safetensors
        raise InputError(f"The checkpoint in {folder} is corrupt ({e}); start again with --overwrite.") from None
    counters = _check_counters(folder, meta)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise InputError(f"The checkpoint in {folder} belongs to a different model.") from None
    try:
        rng = {name: tensors[f"rng.{name}"] for name in ("torch", *generators)}
        if any(t.dtype != torch.uint8 or t.dim() != 1 for t in rng.values()):
            raise ValueError("a random-number state is not a byte vector")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        for name, gen in generators.items():
            gen.set_state(rng[name])
        torch.set_rng_state(rng["torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        if average is not None:
            if any(k.startswith(AVERAGE_PREFIX) for k in tensors):
                average.load_state(tensors)
            else:  # a run trained without an average so far: it starts at the restored weights
                average.restart()
    except Exception as e:  # edited or mismatched optimizer and RNG states
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        raise InputError(f"The checkpoint in {folder} is corrupt ({type(e).__name__}: {e}); start again with "
                         "--overwrite.") from None
    return counters


def _check_counters(folder: Path, meta) -> dict:
    """The counters of state.json, each of the type and range the Trainer writes."""
    try:
        counters = meta["counters"]
        meta["optimizer"]["param_groups"], meta["optimizer"]["plain"]
        ok = (isinstance(counters, dict)
              and all(_whole(counters.get(k)) for k in ("epoch", "step", "stale"))
              and isinstance(counters.get("best"), (int, float)) and not isinstance(counters.get("best"), bool)
              and isinstance(counters.get("history"), list)
              and all(isinstance(row, dict) for row in counters["history"])
              and len(counters["history"]) == counters["epoch"])
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise InputError(f"The checkpoint in {folder} has counters vaekit did not write (state.json); start again "
                         "with --overwrite.")
    return counters


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
