"""Small pieces every `vaekit` subcommand shares: printing paths, reading data and run folders."""

from __future__ import annotations

import json
from pathlib import Path

RUN_FILE = "run.json"


def say(path, what: str) -> None:
    """Print one written file: its role, then its path."""
    print(f"  {what:<16} {path}")


def load_data(source, split, data_dir, limit=None):
    from .data import load_dataset

    return load_dataset(source, split=split, data_dir=data_dir, limit=limit)


def run_info(folder) -> dict:
    """The run.json of a run folder, its `model/` folder or a pretrained name, or {} where there is
    none (or it is unreadable)."""
    from .io import pretrained_folder

    shipped = pretrained_folder(folder) if not Path(folder).exists() else None
    folder = run_folder(shipped or folder)
    try:
        info = json.loads((Path(folder) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def run_folder(path) -> Path:
    """The run folder of a run's `model/` folder (run.json sits beside it); any other path as it is."""
    from .io import CONFIG_NAME

    path = Path(path)
    if (path / CONFIG_NAME).exists() and (path.parent / RUN_FILE).exists():
        return path.parent
    return path


def run_data(args, split: str, limit=None):
    """The Dataset of --data, else the data the run in `args.run` was trained on, in `split`."""
    from .distributions import InputError

    info = run_info(args.run)
    source = args.data or info.get("data")
    if source is None:
        raise InputError("Give --data (a data set name or file): this model folder does not say what it was trained on.")
    return load_data(source, split, args.data_dir or info.get("data_dir"), limit)
