"""One model's importance-sampled NLL on all 10,000 MNIST test images, in parts that survive a stop.

    python benchmarks/likelihood_parts.py --data-dir ../shared/data/mnist --model mnist-hvae --threads 1
    python benchmarks/likelihood_parts.py --data-dir ../shared/data/mnist --model mnist-hvae --summary --record
    python benchmarks/likelihood_parts.py --model mnist-hvae-long --summary --against mnist-hvae

For a model whose k = 5000 evaluation of the whole test set takes longer than a working session
(`mnist-hvae`: 2.2 s per image at k = 5000 in bf16 on one thread of this CPU, so about 6 hours for
all 10,000; a part of 250 images takes about 9 minutes). The test set is binarized once with seed 0, as
vaekit.evaluate does, and cut into parts of --part images. Each part's per-image log p(x) and mean
log-weight (the k-sample ELBO) are written, atomically, to STORE/MODEL-kK-PRECISION/START-STOP.json;
a run skips the parts already there, so stopping at any time loses at most the part in progress.
Part i draws its importance samples with seed = its first image's index. --summary combines the
parts (mean and standard error over the images, as vaekit.evaluate reports them); --record saves
the row into the shipped results.json as likelihood.py --record does, with the number of images
done so far (the parts must be the first images without a gap, so a partial row is the first N).
--against OTHER pairs the per-image NLLs with OTHER's parts (same k and images, hence the same
binarized bits; the same precision unless --against-precision names OTHER's): the mean difference,
its standard error and on how many images this model wins.

--latent-usage evaluates no parts: it measures the model's latent usage on all 10,000 images in one
pass (vaekit.evaluate with k = 0: active units, and the KL of each latent group of a hierarchical
model) and, with --record, saves the active units into results.json.

A model folder that is not shipped yet (a training run's `model`) is stored under --name, by
default the run folder's name, so its parts carry over once it ships under that name:

    python benchmarks/likelihood_parts.py --data-dir ../shared/data/mnist --precision fp32 --k 1000 \
        --model benchmarks/results/training/mnist-hvae-pixel7/model --max-parts 4 \
        --against mnist-hvae-pixel --against-precision bf16
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import vaekit
from vaekit.atomic import atomic_write_bytes
from vaekit.data import binarize_fixed, load_dataset
from vaekit.evaluate import BINARIZE_SEED
from vaekit.importance import importance_log_likelihood
from vaekit.models.core import inference, trusted_inputs

from likelihood import PAIRED, TABLE_K, record

STORE = Path(__file__).resolve().parent / "results" / "nll-parts"


def default_name(model: str) -> str:
    """The store's name for --model: a shipped name as it is, a folder by its run's name."""
    path = Path(model)
    if len(path.parts) == 1:
        return model
    return path.parent.name if path.name == "model" else path.name


def parts_dir(args, name: str | None = None, precision: str | None = None) -> Path:
    return Path(args.store) / f"{name or args.name}-k{args.k}-{precision or args.precision}"


def run_parts(args) -> None:
    """Evaluate every missing part, in order, printing one line per part."""
    model = vaekit.load(args.model)
    x = load_dataset("mnist", split="test", data_dir=args.data_dir).x  # (10000, 1, 28, 28)
    x = binarize_fixed(x, seed=BINARIZE_SEED)  # the whole set at once: the same bits as vaekit.evaluate
    folder = parts_dir(args)
    done = 0
    for start in range(0, x.shape[0], args.part):
        stop = min(start + args.part, x.shape[0])
        path = folder / f"{start:05d}-{stop:05d}.json"
        if path.exists():
            continue
        if args.max_parts is not None and done == args.max_parts:
            break
        done += 1
        began = time.perf_counter()
        with inference(model), trusted_inputs(model):
            log_px, mean_lw = importance_log_likelihood(model, x[start:stop], k=args.k, precision=args.precision,
                                                        seed=start)
        part = {"model": args.name, "k": args.k, "precision": args.precision, "start": start, "stop": stop,
                "seed": start, "seconds": time.perf_counter() - began,
                "log_px": log_px.tolist(), "mean_log_weight": mean_lw.tolist()}
        atomic_write_bytes(path, (json.dumps(part) + "\n").encode())
        print(f"images {start}-{stop}: NLL {-log_px.mean().item():.3f}  ({part['seconds']:.0f} s)", flush=True)


def summary(args) -> dict:
    """The NLL, its standard error and the -ELBO over the parts done so far."""
    parts = [json.loads(p.read_text()) for p in sorted(parts_dir(args).glob("*.json"))]
    if not parts:
        raise SystemExit(f"no parts in {parts_dir(args)} yet; run without --summary first.")
    nll = torch.tensor([-v for p in parts for v in p["log_px"]], dtype=torch.float64)
    nelbo = torch.tensor([-v for p in parts for v in p["mean_log_weight"]], dtype=torch.float64)
    ends = [0] + [p["stop"] for p in parts]  # sorted by file name, i.e. by first image
    prefix = all(p["start"] == end for p, end in zip(parts, ends))  # images 0..n-1 with no gap
    first = [p for p in parts if p["stop"] <= PAIRED]
    row = {"n": nll.numel(), "k": args.k, "nll": nll.mean().item(), "nll_se": nll.std().item() / math.sqrt(nll.numel()),
           "nelbo": nelbo.mean().item(), "eval_seconds": sum(p["seconds"] for p in parts),
           "precision": args.precision, "parts": len(parts), "prefix": prefix}
    if sum(p["stop"] - p["start"] for p in first) == PAIRED:
        row["nll_first_500"] = -sum(v for p in first for v in p["log_px"]) / PAIRED
    return row


def paired(args, other: str) -> dict:
    """This model's NLL minus OTHER's on the images both have parts for (negative: this one is better)."""
    mine = {i: v for p in map(json.loads, map(Path.read_text, parts_dir(args).glob("*.json")))
            for i, v in zip(range(p["start"], p["stop"]), p["log_px"])}
    theirs_dir = parts_dir(args, other, args.against_precision)
    theirs = {i: v for p in map(json.loads, map(Path.read_text, theirs_dir.glob("*.json")))
              for i, v in zip(range(p["start"], p["stop"]), p["log_px"])}
    common = sorted(mine.keys() & theirs.keys())
    if not common:
        raise SystemExit(f"no images evaluated for both {args.name} ({args.precision}) and {other} "
                         f"({args.against_precision}) at k = {args.k}.")
    diff = torch.tensor([theirs[i] - mine[i] for i in common], dtype=torch.float64)  # NLL(this) - NLL(other)
    return {"against": other, "precisions": [args.precision, args.against_precision], "n": len(common),
            "nll_difference": diff.mean().item(), "se": diff.std().item() / math.sqrt(len(common)),
            "better_on": int((diff < 0).sum())}


def latent_usage(args) -> dict:
    """Active units (and each group's KL for a hierarchical model) on all 10,000 test images."""
    report = vaekit.evaluate(vaekit.load(args.model), "mnist", k=0, data_dir=args.data_dir, progress=False)
    return {"name": args.name, "n": report["n"], "active_units": report["active_units"],
            "latent_dims": report["latent_dims"], "layer_kl": report["layer_kl"], "seconds": report["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist-hvae", help="a shipped model's name or a model folder")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files")
    p.add_argument("--k", type=int, default=5000, help="importance samples per image (default 5000)")
    p.add_argument("--part", type=int, default=250, help="images per part (default 250)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--max-parts", type=int, help="stop after evaluating this many parts")
    p.add_argument("--store", default=str(STORE), help="where the parts are kept")
    p.add_argument("--summary", action="store_true", help="evaluate nothing: combine the parts done so far")
    p.add_argument("--record", action="store_true", help="save the row into results.json (the first N images, N = those done)")
    p.add_argument("--name", help="the model's name in the store and the results (default: a shipped name as it is, "
                                   "a folder by its run folder's name)")
    p.add_argument("--against", metavar="MODEL", help="also print the paired NLL difference to MODEL's parts on the same images")
    p.add_argument("--against-precision", choices=("fp32", "bf16"), help="the precision of MODEL's parts (default: --precision)")
    p.add_argument("--latent-usage", action="store_true",
                   help="evaluate no parts: the active units on all 10,000 images (--record saves them)")
    args = p.parse_args()
    args.name = args.name or default_name(args.model)
    args.against_precision = args.against_precision or args.precision
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.latent_usage:
        usage = latent_usage(args)
        print(json.dumps(usage))
        if args.record:
            record(args.name, {"active_units": usage["active_units"]}, TABLE_K)
        return
    if not args.summary:
        run_parts(args)
    row = summary(args)
    print(json.dumps(row))
    if args.against:
        print(json.dumps(paired(args, args.against)))
    if args.record:
        if not row["prefix"]:
            raise SystemExit("--record needs the parts done to be the first test images without a gap; "
                             "run the missing earlier parts first.")
        record(args.name, {k: v for k, v in row.items() if k != "prefix"}, args.k)


if __name__ == "__main__":
    main()
