"""`vaekit evaluate`: measure a trained model on held-out data and write evaluation.json.

    vaekit evaluate runs/mnist-vae --data mnist --data-dir ../shared/data/mnist --k 5000
    vaekit evaluate runs/digits-vae --k 100 --limit 200 --json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..importance import EVAL_PRECISIONS
from . import args as flags

EVALUATION_FILE = "evaluation.json"


def cmd_evaluate(args) -> None:
    from .common import run_data, run_info
    from ..evaluate import evaluate, format_report
    from ..loading import load
    from ..threads import choose_threads

    choose_threads(args.threads)
    model = load(args.run, prior=args.prior)
    data = run_data(args, args.split, args.limit)
    source = args.data or run_info(args.run).get("data")
    if source is not None and Path(str(source)).suffix.lower() in (".npy", ".npz", ".csv") or \
            (source is not None and Path(str(source)).is_dir()):
        print(f"Note: {source} is a file, which has no test split: all {len(data)} of its examples are scored, "
              "including any the model was trained on.", file=sys.stderr)
    report = evaluate(
        model, data, k=args.k, batch_size=args.batch_size, binarize=None if args.no_binarize else "auto",
        progress=not args.no_progress, seed=args.seed, precision=args.precision,
    )
    report.update({"source": str(args.run), "split": args.split})
    if args.samples:
        report["sample_quality"] = _sample_quality(model, data, args)
    path = _write(report, args)
    if args.json:
        print(json.dumps(report, indent=2))
        if path is not None:
            print(f"Wrote {path}", file=sys.stderr)
        return
    print(format_report(report))
    if args.samples:
        from ..quality import format_quality

        print(format_quality(report["sample_quality"]))
    if path is not None:
        print(f"Wrote:\n  {'evaluation':<16} {path}")
    else:
        print(f"(No {EVALUATION_FILE} written: {args.run} is not a run folder you can write to; give --out FOLDER "
              "to keep the report.)")


def _sample_quality(model, test, args) -> dict:
    """Sample-quality rows against the evaluated data, with the real-data floor from the training split."""
    from ..errors import InputError
    from ..quality import quality_rows
    from .common import run_data

    if args.samples < 2:
        raise InputError(f"--samples must be 2 or more, got {args.samples}.")
    train = run_data(args, "train") if args.split == "test" else None
    return quality_rows(model, test, train=train, n=args.samples, features=args.features, seed=args.seed)


def _write(report: dict, args) -> Path | None:
    """evaluation.json into --out, else the run or model folder when it is one and writable."""
    from .common import run_folder
    from ..atomic import atomic_write_bytes

    run = run_folder(args.run)
    if args.out:
        folder = Path(args.out)
    elif run.is_dir() and os.access(run, os.W_OK):
        folder = run
    else:  # a pretrained name, or a folder this user cannot write to
        return None
    path = folder / EVALUATION_FILE
    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
    return path


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="measure a model on test data: NLL, ELBO, bits/dim, KL, active units",
        description="Evaluate a trained model on held-out data: importance-sampled negative log-likelihood "
                    "(Burda et al., k samples per example), negative ELBO, bits per dimension, reconstruction "
                    "error, KL per latent dimension and active units, per-layer KL (hierarchical) or codebook "
                    "perplexity (VQ-VAE), each average with its standard error. Prints a table and writes "
                    "evaluation.json into the run folder. Bernoulli models see the test images binarized once "
                    "with a fixed seed (the MNIST likelihood protocol).",
    )
    flags.run(p)
    flags.data(p)
    flags.data_dir(p)
    flags.split(p, "test")
    p.add_argument("--k", type=int, default=5000,
                   help="importance samples per example for the NLL (default 5000, the literature's; 0 skips it)")
    flags.limit(p, "evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, help="examples per pass (default: chosen for speed)")
    p.add_argument("--precision", choices=EVAL_PRECISIONS, default="fp32",
                   help="fp32 (default) or bf16: the networks' matrix products and convolutions in bfloat16, "
                        "densities float32 (on CPUs with AVX512-BF16 about 2x less time; NLL within 0.01 nats "
                        "on MNIST)")
    p.add_argument("--no-binarize", action="store_true",
                   help="score the data as it is (default: binarize once with a fixed seed for Bernoulli models)")
    flags.seed(p, "seed of the importance samples (default 0)")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help="also measure sample quality: N samples against the data on a feature network (classifier "
                        "FID, KID, precision/recall, class coverage), with the reconstructions and real data beside "
                        "(default 0: skip)")
    p.add_argument("--features", metavar="NAME",
                   help="feature network for --samples: digits, mnist, or a folder from `vaekit features train` "
                        "(default: the one of the data)")
    flags.prior(p)
    p.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    flags.out(p, "folder for evaluation.json (default: the run or model folder)")
    flags.no_progress(p)
    flags.threads(p)
    p.set_defaults(func=cmd_evaluate)
