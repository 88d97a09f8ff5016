"""The chapter's comparison of generators, measured on what users look at: sample quality.

Rows: real data and the reconstructions (the references), the plain autoencoder with random codes
(the chapter's 28.1: it cannot generate) and with fitted priors, the chapter's VAE with N(0, I)
at temperature 1 and 0.8 and with each fitted prior, beta 0.5 / 1 / 4 (the 28.5 claim: beta > 1
is blurrier), the ConvVAE, the hierarchical VAE (independent pixels, and an autoregressive 5 x 5
pixel window) and the VQ-VAE with its PixelCNN. Columns: FID, KID, precision, recall, class
coverage on vaekit's classifier features, and the test NLL where
the model has one. Also writes a picture grid with one row of samples per row of the table.

    python benchmarks/generation.py --data mnist --data-dir ../shared/data/mnist   # ~1.5 h the first time
    python benchmarks/generation.py --data digits                                  # ~12 min

Models are trained into --runs (default runs/generation-DATA) and reused when there; rows already
measured are kept in rows.json there, so an interrupted run continues where it stopped
(--fresh forgets the rows). Every model of one --data is trained with the same recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaekit import load
from vaekit.data import load_dataset
from vaekit.io import resolve_model_folder
from vaekit.priors import fit_prior, load_prior, save_prior, saved_priors
from vaekit.quality import (compare_features, feature_net_for, generate, real_floor, reconstructions,
                            training_reconstructions)
from vaekit.runs import TrainSpec, train

# data name -> (train flags common to every model, epochs of the MLP models, epochs of the conv models)
RECIPES = {
    "mnist": (dict(binarize=True, val_fraction=0.0, lr_schedule="cosine"), 30, 10),
    "digits": (dict(val_fraction=0.0, lr_schedule="cosine"), 100, 100),
}
PRETRAINED = {"mnist": {"vae": "mnist-mlp", "hvae": "mnist-hvae", "hvae-pixel": "mnist-hvae-pixel"}}  # shipped models used instead of training


def trained(name: str, args, **spec) -> Path:
    """The run folder of model `name`, trained with the data's recipe unless it is there."""
    out = Path(args.runs) / name
    common, mlp_epochs, conv_epochs = RECIPES[args.data]
    epochs = conv_epochs if spec.get("model") in ("conv", "vqvae", "hvae") else mlp_epochs
    done = len((out / "metrics.jsonl").read_text().splitlines()) if (out / "metrics.jsonl").exists() else 0
    if done < epochs or not (out / "model" / "config.json").exists():  # not trained, or interrupted: go on
        print(f"training {name} ({epochs} epochs)", flush=True)
        train(TrainSpec(data=args.data, data_dir=args.data_dir, epochs=epochs, out=str(out), no_progress=True,
                        fit_prior="none", resume=(out / "checkpoint").exists(), **common, **spec), say=lambda m: None)
    return out


def model_for(key: str, args):
    """(model, its folder, test NLL on all 10,000 test images or None) for one of the models of the table."""
    shipped = PRETRAINED.get(args.data, {}).get(key)
    if shipped:  # a copy in --runs, where its fitted priors are kept
        folder = Path(args.runs) / f"{key}-shipped" / "model"
        if not (folder / "config.json").exists():
            load(shipped, prior="standard").save_pretrained(folder)
        results = json.loads((resolve_model_folder(shipped) / "results.json").read_text())
        return load(folder, prior="standard"), folder, results["nll"] if results["n"] == 10000 else None
    specs = {"ae": dict(model="ae"), "vae": dict(model="vae"), "beta0.5": dict(model="vae", beta=0.5), "beta1": dict(model="vae"),
             "beta4": dict(model="vae", beta=4.0), "conv": dict(model="conv"), "vqvae": dict(model="vqvae"),
             "hvae": dict(model="hvae"),
             "hvae-pixel": dict(model="hvae", options={"pixel_window": 5}, warmup_epochs=10)}
    folder = trained(key, args, **specs[key])
    return load(folder, prior="standard"), folder / "model", None


def with_prior(model, folder, kind: str, codes_data, args):
    """The model with a fitted `kind` prior: the one saved in its folder, else fitted now (and saved)."""
    if folder is not None and kind in saved_priors(folder):
        model.use_prior(load_prior(folder, kind))
        return model, 0.0
    start = time.perf_counter()
    prior = fit_prior(model, codes_data, kind, seed=0)
    seconds = time.perf_counter() - start
    if folder is not None:
        save_prior(prior, folder, make_default=False)
    return model, seconds


ROWS = [  # (row name, model key, prior kind or None, temperature)
    ("autoencoder, random codes N(0, I)", "ae", None, 1.0),
    ("autoencoder + gmm prior", "ae", "gmm", 1.0),
    ("autoencoder + diffusion prior", "ae", "diffusion", 1.0),
    ("VAE, N(0, I)", "vae", None, 1.0),
    ("VAE, N(0, I), T = 0.8", "vae", None, 0.8),
    ("VAE + gmm prior", "vae", "gmm", 1.0),
    ("VAE + diffusion prior", "vae", "diffusion", 1.0),
    ("beta-VAE 0.5, N(0, I)", "beta0.5", None, 1.0),
    ("beta-VAE 1 (same recipe), N(0, I)", "beta1", None, 1.0),
    ("beta-VAE 4, N(0, I)", "beta4", None, 1.0),
    ("ConvVAE, N(0, I)", "conv", None, 1.0),
    ("ConvVAE + diffusion prior", "conv", "diffusion", 1.0),
    ("hierarchical VAE, N(0, I)", "hvae", None, 1.0),
    ("hierarchical VAE + 5 x 5 pixel window, N(0, I)", "hvae-pixel", None, 1.0),
    ("VQ-VAE + PixelCNN", "vqvae", None, 1.0),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=sorted(RECIPES), default="digits")
    p.add_argument("--data-dir")
    p.add_argument("--runs", help="folder for the trained models (default runs/generation-DATA)")
    p.add_argument("--samples", type=int, help="samples per row (default: as many as the test images)")
    p.add_argument("--only", nargs="*", help="measure only the rows whose names contain one of these words")
    p.add_argument("--skip", nargs="*", help="leave out the rows whose names contain one of these words")
    p.add_argument("--fresh", action="store_true", help="measure every row again")
    args = p.parse_args()
    args.runs = args.runs or f"runs/generation-{args.data}"
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(torch.get_num_threads())
    train_set = load_dataset(args.data, "train", data_dir=args.data_dir)
    test = load_dataset(args.data, "test", data_dir=args.data_dir)
    net = feature_net_for(args.data)
    fr = net.features(test.x.float().reshape(len(test), -1))  # the test images' features, once for every row
    n = args.samples or len(test)
    store = Path(args.runs) / "rows.json"
    rows = {} if args.fresh or not store.exists() else json.loads(store.read_text())
    pictures = {}
    if "real data" not in rows:
        rows["real data"] = real_floor(net, train_set, test, fr=fr)
    pictures["real data"] = test.x[:16]
    for name, key, kind, temperature in ROWS:
        if args.only and not any(w in name for w in args.only) or args.skip and any(w in name for w in args.skip):
            continue
        model, folder, nll = model_for(key, args)
        fit_seconds = 0.0
        if kind is not None:
            model, fit_seconds = with_prior(model, folder, kind, train_set, args)
        if name not in rows:
            start = time.perf_counter()
            x = generate(model, n, temperature=temperature)
            row = compare_features(net, fr, x.reshape(n, -1))
            row.update(nll=nll, sample_seconds=time.perf_counter() - start, prior_fit_seconds=fit_seconds)
            rows[name] = row
            print(f"{name:<38} FID {row['fid']:8.2f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}",
                  flush=True)
        if kind is None and key != "vqvae":  # the model's reference rows (the VQ-VAE's codes are discrete)
            if f"{key} reconstructions" not in rows:
                rows[f"{key} reconstructions"] = compare_features(net, fr, reconstructions(model, test).reshape(len(test), -1))
            if f"{key} reconstructions, training images" not in rows:
                rows[f"{key} reconstructions, training images"] = training_reconstructions(net, model, train_set, test, fr=fr)
        store.write_text(json.dumps(rows, indent=2) + "\n")
        pictures[name] = generate(model, 16, temperature=temperature, seed=1)
    print_table(rows)
    path = save_rows(pictures, tuple(test.x.shape[1:]), Path(args.runs) / "generation.png")
    print(f"wrote {path}")


def save_rows(pictures: dict, shape: tuple, path: Path) -> Path:
    """One labelled strip of images per row of the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pictures), 1, figsize=(10, 0.75 * len(pictures)))
    for ax, (name, x) in zip(axes, pictures.items()):
        x = x.reshape(-1, *shape)[:16, 0]  # (16, H, W), first channel
        ax.imshow(torch.cat(list(x), dim=1).numpy(), cmap="gray", vmin=0, vmax=1)  # (H, 16 W)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def in_table_order(rows: dict) -> dict:
    """Real data first, then each model's reference rows before its sample rows."""
    names = ["real data"]
    for name, key, _, _ in ROWS:
        names += [n for n in (f"{key} reconstructions", f"{key} reconstructions, training images", name) if n not in names]
    return {n: rows[n] for n in names if n in rows} | {n: r for n, r in rows.items() if n not in names}


def print_table(rows: dict) -> None:
    rows = in_table_order(rows)
    first = rows["real data"]
    print(f"\n{first['n']} samples per row against the test images, on {first['features']}")
    print("| row | FID | KID | precision | recall | coverage | test NLL |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        nll = f"{r['nll']:.2f}" if r.get("nll") else "—"
        print(f"| {name} | {r['fid']:.2f} | {r['kid']:.4f} ± {r['kid_se']:.4f} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['coverage']:.2f} | {nll} |")


if __name__ == "__main__":
    main()
