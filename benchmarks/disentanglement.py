"""The chapter's 28.5 claim, measured: does beta > 1 disentangle? VAE (beta 1), beta-VAE (beta 4, 8)
and beta-TCVAE (total-correlation weight 6), 3 seeds each, the same network for all, on procedural
dSprites at 32 x 32.

Per model: MIG, FactorVAE and BetaVAE scores, DCI (disentanglement, completeness, informativeness)
on the posterior means of the whole 737,280-image grid, the negative ELBO and the reconstruction
term on the 36,864 held-out images; then mean and standard deviation over seeds, and the claim
"beta > 1 is blurrier" as the reconstruction error per beta.

    python benchmarks/disentanglement.py                # about an hour on two cores
    python benchmarks/disentanglement.py --seeds 0 --epochs 1   # a quick look

Recipe (one for every model): vaekit's default MLP (512-256, 10 latent dimensions, Bernoulli
decoder), batch 256, Adam 1e-3 with a cosine schedule, 2 epochs of the 700,416 training images.
DCI trains on 2000 codes and tests on 1000 (disentanglement_lib: 10,000 / 5,000, about five
minutes per model here). Models go to --runs (default runs/disentanglement-dsprites-32); finished
rows are kept in rows-EPOCHS-epochs.json there; an interrupted run (killed, or stopped with the session) continues
where it stopped, mid-training included, when started again with the same --epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vaekit import load
from vaekit.data import load_dataset
from vaekit.data.dsprites import factor_grid
from vaekit.disentanglement import evaluate_disentanglement
from vaekit.evaluate import evaluate
from vaekit.plots import save_image_grid
from vaekit.runs import TrainSpec, train

MODELS = {  # row name -> TrainSpec fields
    "VAE (beta 1)": dict(model="vae"),
    "beta-VAE (beta 4)": dict(model="vae", beta=4.0),
    "beta-VAE (beta 8)": dict(model="vae", beta=8.0),
    "beta-TCVAE (TC 6)": dict(model="betatc", options={"tc_weight": 6.0}),
}
RECIPE = dict(data="dsprites-32", latent_dim=10, batch_size=256, lr_schedule="cosine", val_fraction=0.0,
              fit_prior="none", no_progress=True)
DCI_TRAIN = 2000
REPORTED = (("MIG", "mig", "mig"), ("FactorVAE", "factorvae", "factorvae"), ("BetaVAE", "betavae", "betavae"),
            ("DCI dis.", "dci", "disentanglement"), ("DCI comp.", "dci", "completeness"),
            ("DCI info.", "dci", "informativeness"))


def measure(name: str, seed: int, args, grid, test) -> dict:
    slug = name.split(" (")[0].lower() + "-" + name.split("(")[1].rstrip(")").replace(" ", "")
    out = Path(args.runs) / f"{slug}-seed{seed}-{args.epochs}ep"
    start = time.perf_counter()
    if not (out / "model" / "config.json").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < args.epochs:
        train(TrainSpec(epochs=args.epochs, seed=seed, out=str(out), resume=(out / "checkpoint").exists(),
                        **RECIPE, **MODELS[name]), say=lambda m: None)
    seconds = time.perf_counter() - start
    model = load(out, prior="standard")
    scores = evaluate_disentanglement(model, grid, seed=seed, dci_train=DCI_TRAIN)
    report = evaluate(model, test, k=0, progress=False)
    return {"scores": {key: scores[key] for key in ("mig", "factorvae", "betavae", "dci")},
            "latent_factors": scores["latent_factors"], "neg_elbo": report["nelbo"],
            "reconstruction": report["recon_nll"], "kl": report["kl"],
            "train_seconds": seconds}


def table(rows: dict) -> str:
    head = ["model", "seeds", *[r[0] for r in REPORTED], "-ELBO", "recon."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in MODELS:
        runs = [r for key, r in rows.items() if key.startswith(name + " /")]
        if not runs:
            continue
        cells = [name, str(len(runs))]
        values = [[r["scores"][m][k] for r in runs] for _, m, k in REPORTED]
        values += [[r["neg_elbo"] for r in runs], [r["reconstruction"] for r in runs]]
        for v in values:
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f}" if max(v) < 10 else f"{statistics.mean(v):.1f} ± {sd:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/disentanglement-dsprites-32")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--only", nargs="*", help="only the models whose names contain one of these words")
    args = p.parse_args()
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    store = Path(args.runs) / f"rows-{args.epochs}-epochs.json"  # a longer recipe is a new set of rows
    rows = json.loads(store.read_text()) if store.exists() else {}
    for resolution in (32, 64):  # what the models see, and the full-size drawing
        images, labels = factor_grid(resolution)
        save_image_grid(images, Path(args.runs) / f"dsprites_factors_{resolution}.png", row_labels=labels,
                        title=f"procedural dSprites at {resolution} x {resolution}: one factor per row")
    grid = load_dataset("dsprites-32", split="all")
    test = load_dataset("dsprites-32", split="test")
    for seed in args.seeds:  # seeds outermost: an interrupted run already has every model at seed 0
        for name in MODELS:
            if args.only and not any(w in name for w in args.only):
                continue
            key = f"{name} / seed {seed}"
            if key in rows:
                continue
            rows[key] = measure(name, seed, args, grid, test)
            store.write_text(json.dumps(rows, indent=2) + "\n")
            r = rows[key]
            print(f"{key:<32} MIG {r['scores']['mig']['mig']:.3f}  FactorVAE {r['scores']['factorvae']['factorvae']:.3f}  "
                  f"DCI {r['scores']['dci']['disentanglement']:.3f}  -ELBO {r['neg_elbo']:.1f}  "
                  f"recon {r['reconstruction']:.1f}  ({r['train_seconds']:.0f} s training)", flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
