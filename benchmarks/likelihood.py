"""The MNIST likelihood table: importance-sampled test NLL (k = 5000) of the benchmark models.

    python benchmarks/likelihood.py --data-dir ../shared/data/mnist --train --export --write-results
    python benchmarks/likelihood.py --data-dir ../shared/data/mnist                  # re-check the shipped weights
    python benchmarks/likelihood.py --data-dir ../shared/data/mnist --only mnist-mlp --limit 1000
    python benchmarks/likelihood.py --data-dir ../shared/data/mnist --k 1000 --limit 10000 --precision bf16 --record

Each row of TABLE is one `vaekit train` command on dynamically binarized MNIST (all 60,000
training images, pixels resampled every epoch, Adam with a cosine learning rate, bf16 autocast).
The rows `mnist-hvae`, `mnist-hvae-long` (the first trained on for a second cosine cycle, 2.4
hours in all), `mnist-hvae-pixel` and `mnist-hvae-pixel7` (an autoregressive pixel decoder with a
5 x 5 and a 7 x 7 window) are the candidates for the
best model trainable in 2.5 hours on the project's 2-core CPU; `mnist-best` is an alias (src/vaekit/pretrained/aliases.json, written by --export) of the row
with the lowest NLL among those measured on all 10,000 test images (a hierarchical row's k = 5000
evaluation takes hours: likelihood_parts.py measures it in resumable parts). Every row also
reports its NLL on the first 500.
--train runs the commands whose run folder (RUNS/NAME) is missing; without it the rows are read
from RUNS/NAME, else from the weights shipped with vaekit (vaekit.load(NAME)). Each model is then
evaluated with vaekit.evaluate on the test set binarized once with seed 0 (Burda et al.): k = 5000,
all 10,000 images unless the row (or --limit) says fewer. --export writes the trained weights
into src/vaekit/pretrained/NAME with a results.json; --write-results replaces the table section
of benchmarks/RESULTS.md. A run with another --k (NVAE's protocol is k = 1000) fills the table's
second NLL column instead of the first; --record saves the measurement into the shipped
results.json without touching the weights. Prints one JSON line per model, then the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import vaekit
from vaekit.atomic import atomic_write_bytes
from vaekit.io import ALIASES_NAME, PRETRAINED_DIR

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- likelihood-table:start -->", "<!-- likelihood-table:end -->"
COMMON = ["--data", "mnist", "--binarize", "--val-fraction", "0", "--precision", "bf16", "--lr-schedule", "cosine"]

# name: (vaekit train options, test images evaluated (None: all), target NLL, anchor)
TABLE = {
    "mnist-mlp": (["--model", "vae", "--epochs", "500"], None, 86.5,
                  "IWAE paper, 1-layer VAE: 86.76"),
    "mnist-mlp-long": (["--model", "vae", "--epochs", "1000"], None, 86.5,
                       "IWAE paper, 1-layer VAE: 86.76"),
    "mnist-iwae": (["--model", "vae", "--objective", "iwae", "--k", "50", "--epochs", "40"], None, 85.0,
                   "IWAE paper, 1-layer IWAE k=50: 84.78"),
    # all 10,000 at k = 5000 take about 5 hours here: likelihood_parts.py measures them in resumable parts
    "mnist-hvae": (["--model", "hvae", "--epochs", "70"], None, 80.0,
                   "IWAE 2-layer 82.90; Ladder VAE 81.74; IAF 79.10; NVAE 78.01"),
    # mnist-hvae trained on: a second cosine cycle from its weights (its training time counts too)
    "mnist-hvae-long": (["--model", "hvae", "--init-from", "mnist-hvae", "--lr", "5e-4", "--epochs", "70"], None, 80.0,
                        "IWAE 2-layer 82.90; Ladder VAE 81.74; IAF 79.10; NVAE 78.01"),
    # the same hierarchy with an autoregressive decoder: each pixel also reads the earlier pixels of a
    # 5 x 5 window (PixelVAE-style, so not comparable row for row with factorised decoders); KL warm-up
    # over 10 epochs keeps the latents in use
    "mnist-hvae-pixel": (["--model", "hvae", "--pixel-window", "5", "--warmup-epochs", "10", "--epochs", "75"], None,
                         80.0, "Ladder VAE 81.74; IAF 79.10; NVAE 78.01 (none with an autoregressive decoder)"),
    # the same with a 7 x 7 window; trained in fp32 on a CPU without bf16 instructions (resumed in stages)
    "mnist-hvae-pixel7": (["--model", "hvae", "--pixel-window", "7", "--warmup-epochs", "10", "--epochs", "75",
                           "--precision", "fp32"], None,
                          80.0, "Ladder VAE 81.74; IAF 79.10; NVAE 78.01 (none with an autoregressive decoder)"),
}


def train_command(name: str, runs: Path, data_dir: str | None) -> list[str]:
    options, *_ = TABLE[name]
    data = ["--data-dir", data_dir] if data_dir else []
    common = list(COMMON)
    if "--precision" in options:  # the row's own precision replaces the common one
        at = common.index("--precision")
        del common[at:at + 2]
    return ["vaekit", "train", *common, *data, *options, "--no-progress", "--out", str(runs / name)]


def training_seconds(name: str, run: Path) -> float | None:
    """Sum of the epoch times in a run's metrics.jsonl, plus the training of the row it started from
    (--init-from another row)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return None
    own = sum(json.loads(line)["seconds"] for line in path.read_text().splitlines() if line.strip())
    options = TABLE[name][0]
    base = options[options.index("--init-from") + 1] if "--init-from" in options else None
    return own + (shipped_row(base)["train_seconds"] if base else 0.0)


def shipped_row(name: str) -> dict | None:
    """The measured row saved with the shipped weights, if they are shipped."""
    path = PRETRAINED_DIR / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def source_of(name: str, runs: Path):
    """(model folder or pretrained name, training seconds) of a row."""
    run = runs / name
    if (run / "model").exists():
        return run, training_seconds(name, run)
    if (PRETRAINED_DIR / name).exists():
        return name, (shipped_row(name) or {}).get("train_seconds")
    return None, None


TABLE_K = 5000  # the first NLL column; any other k goes into the row's "k{K}" entry
SECOND_K = 1000  # the second NLL column (NVAE's protocol)
PAIRED = 500  # every row also reports its NLL on the first 500 test images
CHECK = {"images": 20, "k": 100}  # a quick re-check of the shipped weights that the tests repeat


def export(name: str, model, result: dict, data_dir) -> None:
    """Write the model, its measured row, the run's data name and a quick check into src/vaekit/pretrained/NAME."""
    folder = ROOT / "src" / "vaekit" / "pretrained" / name
    model.save_pretrained(folder)
    check = vaekit.evaluate(model, "mnist", k=CHECK["k"], limit=CHECK["images"], data_dir=data_dir, progress=False)
    result = {**result, "check": {**CHECK, "nll": check["nll"], "nelbo": check["nelbo"]}}
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "run.json").write_text(json.dumps({"data": "mnist"}) + "\n")


def merged(row: dict, measured: dict, k: int) -> dict:
    """`row` with a new measurement at k: the main fields when k is the table's, else its "k{K}" entry."""
    if k == TABLE_K:
        return {**row, **measured}
    keys = ("n", "nll", "nll_se", "eval_seconds", "precision")
    return {**row, f"k{k}": {key: measured[key] for key in keys}}


def record(name: str, measured: dict, k: int) -> None:
    """Save a measurement of the shipped weights into their results.json (the weights stay as they are)."""
    path = PRETRAINED_DIR / name / "results.json"
    row = merged(json.loads(path.read_text()), measured, k)
    atomic_write_bytes(path, (json.dumps(row, indent=2) + "\n").encode())


def _second(row: dict) -> str:
    m = row.get(f"k{SECOND_K}")
    return "-" if m is None else f"{m['nll']:.2f} ± {m['nll_se']:.2f} ({m['n']})"


def _num(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _reached(row: dict) -> str:
    """Whether the row meets its target; a row on fewer than 10,000 test images cannot say yet."""
    if row["n"] < 10000:
        return f"open ({row['n']} images)"
    return "yes" if row["nll"] <= row["target"] else "no"


def table_markdown(rows: list[dict]) -> str:
    head = (f"| name | model | NLL (nats) | test images | NLL, first 500 | NLL, k = {SECOND_K} (images) | -ELBO | "
            "active units | target | reached | training time | eval time | anchors |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = []
    for r in rows:
        train = f"{r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") else "?"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['nll']:.2f} ± {r['nll_se']:.2f} | {r['n']} | "
            f"{_num(r['nll_first_500'])} | {_second(r)} | {r['nelbo']:.2f} | "
            f"{r.get('active_units', '-')} | <= {r['target']} | {_reached(r)} | "
            f"{train} | {r['eval_seconds']:.0f} s | {r['anchor']} |")
    return head + "\n".join(lines) + "\n"


def best_name(rows: list[dict]) -> str:
    """The row `mnist-best` stands for: the lowest NLL among the rows measured on all 10,000 test
    images (a row still measured on fewer cannot be chosen)."""
    full = [r for r in rows if r["n"] == 10000]
    if not full:
        raise SystemExit("no row is measured on all 10,000 test images, so mnist-best cannot be chosen.")
    return min(full, key=lambda r: r["nll"])["name"]


def write_results(rows: list[dict], commands: dict) -> None:
    text = RESULTS.read_text()
    best = best_name(rows)
    body = [START, "", table_markdown(rows),
            f"`vaekit.load(\"mnist-best\")` loads `{best}`, the lowest NLL among the rows measured on all "
            "10,000 test images.", "",
            "Training commands (run from the repository root):", ""]
    body += [f"    {' '.join(commands[r['name']])}" for r in rows]
    body += ["", END]
    block = "\n".join(body)
    if START in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## The MNIST likelihood table (evaluation issue)\n\n" + block + "\n"
    atomic_write_bytes(RESULTS, text.encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder with the MNIST IDX files")
    p.add_argument("--runs", default="runs/table", help="run folders of the table's models")
    p.add_argument("--only", nargs="*", choices=list(TABLE), help="rows to run (default all)")
    p.add_argument("--train", action="store_true", help="train the rows whose run folder is missing")
    p.add_argument("--k", type=int, default=5000, help="importance samples (default 5000)")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images (overrides the rows)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="evaluation precision")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--export", action="store_true", help="write the weights into src/vaekit/pretrained")
    p.add_argument("--write-results", action="store_true",
                   help="replace the table in benchmarks/RESULTS.md (rows not run now come from the shipped results.json)")
    p.add_argument("--record", action="store_true",
                   help="save the measurements of shipped weights into their results.json (weights untouched)")
    p.add_argument("--shipped", action="store_true", help="evaluate nothing: the table of the shipped results.json files")
    args = p.parse_args()
    if args.export and args.k != TABLE_K:
        sys.exit(f"--export ships a model with its k = {TABLE_K} row; measure other k with --record afterwards.")
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    names = args.only or list(TABLE)
    commands = {name: train_command(name, runs, args.data_dir) for name in TABLE}
    rows = []
    for name in [] if args.shipped else names:
        options, limit, target, anchor = TABLE[name]
        source, train_seconds = source_of(name, runs)
        if source is None or (args.train and not isinstance(source, Path)):
            if not args.train:
                sys.exit(f"{runs / name} does not exist and no pretrained {name} is shipped; pass --train.")
            cmd = commands[name]
            print("$", " ".join(cmd), flush=True)
            shutil.rmtree(runs / name, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "vaekit", *cmd[1:]], check=True)
            source, train_seconds = runs / name, training_seconds(name, runs / name)
        if args.record and isinstance(source, Path):
            sys.exit(f"--record saves measurements of the shipped weights, but {name} would be read from {source}.")
        model = vaekit.load(source)
        limit = args.limit or limit
        start = time.perf_counter()
        report = vaekit.evaluate(model, "mnist", k=args.k, limit=limit, data_dir=args.data_dir,
                                 precision=args.precision, progress=False)
        if report["n"] > PAIRED:  # the same images as the rows evaluated on a subset, for a paired comparison
            paired = vaekit.evaluate(model, "mnist", k=args.k, limit=PAIRED, data_dir=args.data_dir,
                                     precision=args.precision, progress=False)["nll"]
        else:
            paired = report["nll"] if report["n"] == PAIRED else None
        row = {"name": name, "model": type(model).__name__, "n": report["n"], "k": args.k, "nll_first_500": paired,
               "nll": report["nll"], "nll_se": report["nll_se"], "nelbo": report["nelbo"],
               "active_units": report.get("active_units"), "target": target, "anchor": anchor,
               "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - start,
               "precision": args.precision, "command": " ".join(commands[name])}
        print(json.dumps(row), flush=True)
        if args.record:
            record(name, row, args.k)
        if args.k != TABLE_K:  # the row keeps its k = 5000 columns; this run fills the k{K} entry
            row = merged(shipped_row(name) or row, row, args.k)
        rows.append(row)
        if args.export:
            export(name, model, row, args.data_dir)
    done = {r["name"] for r in rows}
    rows += [shipped for name in TABLE if name not in done and (shipped := shipped_row(name))]
    rows.sort(key=lambda r: list(TABLE).index(r["name"]))
    print(table_markdown(rows))
    if args.export and rows:
        best = best_name(rows)
        path = PRETRAINED_DIR / ALIASES_NAME
        aliases = json.loads(path.read_text()) if path.exists() else {}  # keeps mnist-best-samples and the rest
        aliases.update({"mnist-best": best, "mnist-best-likelihood": best})
        path.write_text(json.dumps(aliases) + "\n")
        print(f"mnist-best -> {best}")
    if args.write_results:
        write_results(rows, commands)


if __name__ == "__main__":
    main()
