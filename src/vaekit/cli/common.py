"""Small pieces the `vaekit` subcommands share: printing paths, reading data and run folders."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..runs import RUN_FILE, run_folder, run_info  # noqa: F401  (the run layer reads run folders)


def say(path, what: str) -> None:
    """Print one written file: its role, then its path."""
    print(f"  {what:<16} {path}")


def load_data(source, split, data_dir, limit=None):
    from ..data import load_dataset

    return load_dataset(source, split=split, data_dir=data_dir, limit=limit)


def run_data(args, split: str, limit=None):
    """The Dataset of --data, else the data the run in `args.run` was trained on, in `split`."""
    info = run_info(args.run)
    source = args.data or info.get("data")
    if source is None:
        raise InputError("Give --data (a data set name or file): this model folder does not say what it was trained on.")
    return load_data(source, split, args.data_dir or info.get("data_dir"), limit)


def out_dir(args) -> Path:
    """The folder for a command's pictures: --out, else the run folder, else the current folder."""
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if (run / "model").is_dir() else Path("."))
    out.mkdir(parents=True, exist_ok=True)
    return out
