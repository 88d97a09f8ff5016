"""`vaekit info RUN` (what a run or model is and how it did) and `vaekit runs [FOLDER]` (a table of runs)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from . import args as flags
from ..runs import best_epoch, read_history
from .common import run_folder, run_info

EVALUATION_FILE = "evaluation.json"


def _evaluation(run: Path) -> dict:
    try:
        report = json.loads((run / EVALUATION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def describe(path) -> dict:
    """What `vaekit info` shows, as a dict: model, size, data, epochs, best epoch, evaluation."""
    from ..loading import load

    model = load(path)
    run = run_folder(path) if Path(str(path)).exists() else None
    info = run_info(path)
    history = read_history(run) if run is not None else []
    best, key = best_epoch(history)
    report = _evaluation(run) if run is not None else {}
    return {
        "model": model.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "latent_dim": getattr(model, "latent_dim", None),
        "likelihood": model.lik.name,
        "data": info.get("data"),
        "epochs": len(history) or None,
        "best_epoch": best["epoch"] if best else None,
        f"best_{key}": best[key] if best else None,
        "nll": report.get("nll"),
        "nelbo": report.get("nelbo"),
        "evaluated_on": f"{report.get('n')} {report.get('data') or ''} examples, k={report.get('k')}" if report else None,
    }


def cmd_info(args) -> None:
    for key, value in describe(args.run).items():
        if value is not None:
            print(f"  {key:<14} {value:.3f}" if isinstance(value, float) else f"  {key:<14} {value}")


def cmd_runs(args) -> None:
    root = Path(args.folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the folder that holds your run folders (default runs).")
    rows = []
    for run in sorted(p for p in root.iterdir() if (p / "model" / "config.json").exists()):
        try:
            d = describe(run)
        except InputError as e:
            rows.append((run.name, "unreadable", str(e)[:40], "", "", ""))
            continue
        best = d.get("best_val_loss", d.get("best_train_loss"))
        rows.append((run.name, d["model"], str(d["data"] or ""), str(d["epochs"] or ""),
                     f"{best:.2f}" if best is not None else "", f"{d['nll']:.2f}" if d["nll"] is not None else ""))
    if not rows:
        print(f"No run folders in {root}.")
        return
    header = ("run", "model", "data", "epochs", "best loss", "test NLL")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def add_parsers(sub) -> None:
    p = sub.add_parser("info", help="what a run or saved model is, and how it did")
    flags.run(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("runs", help="a table of the run folders in a folder (default runs/)")
    p.add_argument("folder", nargs="?", default="runs", help="the folder holding run folders (default runs)")
    p.set_defaults(func=cmd_runs)
