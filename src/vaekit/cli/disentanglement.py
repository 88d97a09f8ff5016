"""`vaekit disentanglement`: score a trained model's codes against the data's generative factors.

    vaekit train --data dsprites-32 --model betatc --epochs 5
    vaekit disentanglement runs/dsprites-32-betatc
"""

from __future__ import annotations

import json

import torch

from . import args as flags
from .common import out_dir, run_data, run_info, say

DISENTANGLEMENT_FILE = "disentanglement.json"
TRAVERSAL_FILE = "traversal_factors.png"


def cmd_disentanglement(args) -> None:
    from ..atomic import atomic_write_bytes
    from ..disentanglement import (METRICS, evaluate_disentanglement, factor_traversal_labels,
                                   format_disentanglement)
    from ..errors import InputError
    from ..latent import traverse
    from ..loading import load
    from ..plots import save_image_grid
    from ..runs import Standardization
    from ..threads import choose_threads

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise InputError(f"--metrics takes a comma-separated list of {', '.join(METRICS)}, not {args.metrics!r}.")
    choose_threads(args.threads)
    model = load(args.run, prior="standard")
    source = str(args.data or run_info(args.run).get("data") or "")
    split = "all" if source.lower().startswith("dsprites") else "train"  # dSprites' whole grid, a file as it is
    data = run_data(args, split, args.limit)
    stats = Standardization.read(args.run)
    if stats is not None:
        data = stats.apply(data)
    if args.dci_train < 2:
        raise InputError(f"--dci-train must be 2 or more codes, got {args.dci_train}.")
    result = evaluate_disentanglement(model, data, metrics, seed=args.seed, dci_train=args.dci_train)
    result.update({"source": str(args.run), "data": data.name})
    out = out_dir(args)
    path = out / DISENTANGLEMENT_FILE
    atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps(result, indent=2) if args.json else format_disentanglement(result))
    print("Wrote:")
    say(path, "scores")
    if getattr(model, "image_shape", None) is not None:
        values = torch.linspace(-2.5, 2.5, 9)
        middle = data.factors.max(0).values // 2  # the example nearest the middle of every factor's range
        start = int((data.factors - middle).abs().sum(1).argmin())
        grid = traverse(model, data.x[start:start + 1], dims=list(range(model.latent_dim)), values=values)
        picture = save_image_grid(grid, out / TRAVERSAL_FILE, image_shape=model.image_shape,
                                  row_labels=factor_traversal_labels(result["latent_factors"]),
                                  title="each row moves one latent dimension from -2.5 to 2.5")
        say(picture, "traversal")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "disentanglement", help="score codes against known factors: MIG, FactorVAE, BetaVAE and DCI",
        description="Score how well a trained model's latent dimensions separate the data's generative factors "
                    "(disentanglement_lib's definitions and defaults): the mutual information gap (MIG), the "
                    "FactorVAE and BetaVAE scores, and DCI disentanglement / completeness / informativeness. The "
                    "data must have factors: dsprites, dsprites-32, or an .npz file with `factors` (N, K) and "
                    "`factor_names`. Writes disentanglement.json and traversal_factors.png (each latent "
                    "dimension's traversal, labelled with the factor it is most informative of).",
    )
    flags.run(p)
    flags.data(p, "data with factors (default: the run's own data; dSprites: its whole grid)")
    flags.data_dir(p)
    p.add_argument("--metrics", default="mig,factorvae,betavae,dci",
                   help="comma-separated metrics to compute (default: all four)")
    p.add_argument("--dci-train", type=int, default=10000, metavar="N",
                   help="codes DCI's trees train on, and N/2 they are tested on (default 10000, disentanglement_lib's; "
                        "on dSprites about 5 minutes, 2000 about 1)")
    flags.limit(p, "use only the first N examples")
    flags.seed(p, "seed of the metrics' sampling (default 0)")
    p.add_argument("--json", action="store_true", help="print the JSON object instead of the summary")
    flags.out(p, "folder for disentanglement.json and the picture (default: the run folder)")
    flags.threads(p)
    p.set_defaults(func=cmd_disentanglement)
