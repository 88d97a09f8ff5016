"""Whole processes, as a user runs them: the chapter's program (`chapter_mlp.py`) against
`vaekit train`, side by side in one run, with each model's test negative ELBO.

    python benchmarks/train_process.py --data-dir ../shared/data/mnist --rounds 3
    python benchmarks/train_process.py --data-dir ../shared/data/mnist --rounds 3 --time-to-quality \\
        --vaekit-args "--epochs 5 --lr 2e-3 --lr-schedule trapezoid --init he"

Default mode: each round runs, one after another, the chapter's program (10 epochs, batch 128) and
`vaekit train --data mnist --binarize --epochs 10` twice: with `--val-fraction 0 --fit-prior none`
(the same 60,000 images as the chapter; training, pictures, sample quality, report) and with all
its other defaults (a 10% validation split, a fitted Gaussian-mixture prior). Printed per process:
the median wall-clock over rounds, its ratio to the chapter's, vaekit's training seconds (from its
metrics.jsonl) and the test -ELBO of round 0's model (mean of 4 one-sample estimates).

`--time-to-quality`: time until the test -ELBO is at most `--goal` nats (default 100). vaekit runs
once per round with `--vaekit-args` (a recipe; its time is its training seconds from
metrics.jsonl; a round whose model misses the goal counts as never reaching it), then the chapter's
program evaluates the test -ELBO after every epoch, up to `--max-chapter-epochs`, and stops at the
first at or below the goal; its time is its training seconds up to that epoch (evaluation
excluded). A run that never gets there is printed with its best -ELBO and the epoch and seconds it
took.
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from speed import ChapterVAE, test_nelbo
import vaekit
from vaekit.data import binarize_fixed, load_dataset

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> float:
    """Wall-clock seconds of a command, which must succeed."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def vaekit_train_seconds(run: Path) -> float:
    return sum(json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines())


def chapter_nelbo(folder: Path, test) -> float:
    model = ChapterVAE(784, 20)
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    return test_nelbo(model, test, True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--time-to-quality", action="store_true", help="time until the -ELBO of vaekit's recipe")
    p.add_argument("--goal", type=float, default=100.0, help="with --time-to-quality: the test -ELBO to reach")
    p.add_argument("--max-chapter-epochs", type=int, default=30, help="with --time-to-quality")
    p.add_argument("--vaekit-args", default="", help="extra `vaekit train` flags (a quoted string)")
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary one, removed)")
    args = p.parse_args()
    work_ctx = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(work_ctx.name if work_ctx else args.work)
    test = binarize_fixed(load_dataset("mnist", "test", data_dir=args.data_dir).x, seed=0)
    py = sys.executable
    vaekit_cmd = [py, "-m", "vaekit", "train", "--data", "mnist", "--data-dir", args.data_dir, "--binarize",
                  "--no-progress"]
    if args.time_to_quality:
        processes = {"vaekit recipe": vaekit_cmd + ["--val-fraction", "0", "--fit-prior", "none"]
                     + shlex.split(args.vaekit_args)}
    else:
        processes = {"vaekit, no prior fit": vaekit_cmd + ["--epochs", str(args.epochs), "--val-fraction", "0",
                                                           "--fit-prior", "none"] + shlex.split(args.vaekit_args),
                     "vaekit, defaults": vaekit_cmd + ["--epochs", str(args.epochs)] + shlex.split(args.vaekit_args)}
    walls = {"chapter": [], **{name: [] for name in processes}}
    train_s = {name: [] for name in walls}
    nelbo = {}  # test -ELBO of each round's model
    chapter_runs = []
    for r in range(args.rounds):
        for i, (name, cmd) in enumerate(processes.items()):
            run = work / f"vaekit-{i}-{r}"
            walls[name].append(timed(cmd + ["--seed", str(r), "--out", str(run)]))
            torch.manual_seed(0)
            nelbo.setdefault(name, []).append(test_nelbo(vaekit.load(run), test, True))
            missed = args.time_to_quality and nelbo[name][-1] > args.goal
            train_s[name].append(float("inf") if missed else vaekit_train_seconds(run))
        out = work / f"chapter-{r}"
        cmd = [py, str(HERE / "chapter_mlp.py"), "--data-dir", args.data_dir, "--seed", str(r), "--out", str(out)]
        if args.time_to_quality:
            goal = args.goal
            cmd += ["--epochs", str(args.max_chapter_epochs), "--test-every-epoch", "--stop-at", str(goal)]
        else:
            cmd += ["--epochs", str(args.epochs)]
        walls["chapter"].append(timed(cmd))
        if args.time_to_quality:
            epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
            best = min(epochs, key=lambda e: e["test_nelbo"])
            reached = epochs[-1]["test_nelbo"] <= goal
            train_s["chapter"].append(epochs[-1]["train_seconds"] if reached else float("inf"))
            chapter_runs.append({"round": r, "goal": round(goal, 2), "reached": reached,
                                 "epochs": epochs[-1]["epoch"], "train_s": epochs[-1]["train_seconds"],
                                 "best_nelbo": best["test_nelbo"], "best_epoch": best["epoch"],
                                 "best_train_s": best["train_seconds"]})
            print(json.dumps({"chapter": chapter_runs[-1]}), flush=True)
        else:
            nelbo.setdefault("chapter", []).append(chapter_nelbo(out, test))
        print(json.dumps({"round": r, "wall_s": {k: round(v[-1], 1) for k, v in walls.items()}}), flush=True)
    key = "train_s" if args.time_to_quality else "wall_s"
    base = statistics.median(train_s["chapter"] if args.time_to_quality else walls["chapter"])
    for name in walls:
        row = {"process": name, "rounds": args.rounds, "median_wall_s": round(statistics.median(walls[name]), 1)}
        if train_s[name]:
            row["median_train_s"] = round(statistics.median(train_s[name]), 1)
        row["speedup_vs_chapter"] = round(base / row["median_" + key], 2)
        if name in nelbo:
            row["test_nelbo"] = [round(v, 2) for v in nelbo[name]]
        print(json.dumps(row), flush=True)
    if work_ctx:
        work_ctx.cleanup()


if __name__ == "__main__":
    main()
