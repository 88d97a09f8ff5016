"""`report.html`: one self-contained page per run (or several runs side by side), viewable offline.

    from vaekit.report import write_report
    write_report(["runs/digits-vae"], "runs/digits-vae/report.html")

It holds the settings, a metrics table (last and best epoch), the pictures the run wrote (inlined
as base64, so the file stands alone), the evaluation where one exists, and a short model card:
data, objective, how long it trained, how to load it.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import InputError
from .runs import best_epoch, read_history, run_info

PICTURES = ("loss_curve.png", "samples.png", "reconstructions.png", "interpolation.png", "codebook_usage.png")
EVALUATION_KEYS = (("nll", "test NLL (nats)"), ("nelbo", "negative ELBO (nats)"), ("bpd", "bits per dimension"),
                   ("recon_error", "reconstruction squared error"), ("kl", "KL (nats)"),
                   ("active_units", "active units"))
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.runs { display: flex; gap: 2em; flex-wrap: wrap; }
.run { flex: 1 1 420px; min-width: 320px; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0.1em 0.3em; }
"""


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _table(rows) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _number(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def run_section(run: Path) -> str:
    """The HTML of one run: model card, metrics, evaluation, settings, pictures."""
    run = Path(run)
    if not (run / "model" / "config.json").exists():
        raise InputError(f"{run} is not a run folder (it has no model/); give folders written by vaekit train.")
    info = run_info(run)
    settings = info.get("args", {}) if isinstance(info.get("args"), dict) else {}
    config = _json(run / "model" / "config.json")
    history = read_history(run)
    best, key = best_epoch(history)
    best = best or {}
    seconds = sum(row.get("seconds", 0) for row in history)
    card = [
        ("model", config.get("model_type")),
        ("data", info.get("data")),
        ("objective", f"{settings.get('objective', 'elbo')}, KL weight {settings.get('beta') or 1}"),
        ("likelihood", config.get("config", {}).get("likelihood")),
        ("latent dimensions", config.get("config", {}).get("latent_dim", "from the architecture")),
        ("trained", f"{len(history)} epochs, {seconds:.0f} s" if history else "no epochs recorded"),
        ("model/ holds", f"epoch {best.get('epoch')} ({key} {best.get(key, float('nan')):.2f})" if best else "-"),
        ("load it", f'vaekit.load("{run}")'),
        ("vaekit", config.get("vaekit_version")),
    ]
    parts = [f"<div class='run'><h2>{html.escape(run.name)}</h2>", _table(card)]
    if history:
        last = history[-1]
        names = [k for k in last if k.startswith(("train_", "val_"))]
        head = "".join(f"<th>{html.escape(n)}</th>" for n in ["epoch", *names])
        rows = "".join("<tr>" + "".join(f"<td>{_number(r.get(n, ''))}</td>" for n in ["epoch", *names]) + "</tr>"
                       for r in ([best, last] if best is not last else [last]))
        parts.append(f"<h3>metrics (best and last epoch)</h3><table><tr>{head}</tr>{rows}</table>")
    evaluation = _json(run / "evaluation.json")
    if evaluation:
        rows = [(label, _number(evaluation[k]) + (f" ± {evaluation[k + '_se']:.3f}" if evaluation.get(k + "_se") else ""))
                for k, label in EVALUATION_KEYS if evaluation.get(k) is not None]
        rows.append(("on", f"{evaluation.get('n')} examples of {evaluation.get('data')}, k = {evaluation.get('k')}"))
        parts.append("<h3>evaluation</h3>" + _table(rows))
    for name in PICTURES:
        path = run / name
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<h3>{html.escape(name[:-4].replace('_', ' '))}</h3>"
                         f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    if settings:
        parts.append("<h3>settings (run.json)</h3>" + _table(sorted(settings.items())))
    parts.append("</div>")
    return "\n".join(parts)


def render(runs) -> str:
    """The page for one or more run folders, side by side."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise InputError("Give at least one run folder to report on.")
    title = "vaekit report: " + ", ".join(r.name for r in runs)
    body = "\n".join(run_section(r) for r in runs)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><div class='runs'>{body}</div>"
            "</body></html>\n")


def write_report(runs, path) -> Path:
    """Write the report page of `runs` to `path` (atomically) and return the path."""
    path = Path(path)
    atomic_write_bytes(path, render(runs).encode())
    return path
