"""Every model family on dynamically binarized MNIST: test negative ELBO, training time, pictures.

    python benchmarks/variants.py --data-dir ../shared/data/mnist --out runs/variants

Each model trains with vaekit's Trainer (Adam 1e-3, batch 128, binarized pixels resampled every
epoch) for its own number of epochs (`--epochs name=N ...` overrides); the test set is binarized
once (seed 0). The VQ-VAE also reports reconstruction error and codebook perplexity, and its
negative ELBO is -log p(x | codes) - log p_prior(codes) with its PixelCNN prior. Samples and
reconstructions of each model go to OUT/NAME_*.png. One JSON line per model, then a table.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from vaekit.models import build_model
from vaekit.data import binarize_fixed, load_dataset
from vaekit.models import VQVAE, train_prior
from vaekit.plots import save_image_grid
from vaekit.train import Trainer, TrainConfig

# name: (family, constructor options, epochs, trainer options)
VARIANTS = {
    "vae": ("vae", {}, 10, {}),
    "conv": ("conv", {}, 10, {}),
    "iwae-k5": ("vae", {}, 10, {"objective": "iwae", "k": 5}),
    "flow-iaf": ("flow", {"flow": "iaf", "flow_length": 4}, 10, {}),
    "flow-planar": ("flow", {"flow": "planar", "flow_length": 8}, 10, {}),
    "betatc": ("betatc", {"beta": 6.0}, 10, {}),
    "hvae": ("hvae", {}, 3, {"warmup_epochs": 1, "grad_clip": 200.0}),
    "vqvae": ("vqvae", {}, 5, {}),
}


def negative_elbo(model, x, batch=500):
    with torch.no_grad():
        return -torch.cat([model.elbo(x[i:i + batch]) for i in range(0, len(x), batch)]).mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/variants")
    p.add_argument("--only", nargs="*", help="names of the variants to run (default all)")
    p.add_argument("--epochs", nargs="*", default=[], help="NAME=EPOCHS overrides")
    p.add_argument("--limit", type=int, help="first N training images (quick checks)")
    p.add_argument("--test-limit", type=int, help="first N test images")
    p.add_argument("--prior-epochs", type=int, default=5)
    args = p.parse_args()
    overrides = {k: int(v) for k, v in (e.split("=") for e in args.epochs)}
    train = load_dataset("mnist", "train", data_dir=args.data_dir, limit=args.limit)
    test = binarize_fixed(load_dataset("mnist", "test", data_dir=args.data_dir, limit=args.test_limit).x, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.only or VARIANTS:
        family, options, epochs, train_options = VARIANTS[name]
        epochs = overrides.get(name, epochs)
        torch.manual_seed(0)
        model = build_model(family, (1, 28, 28), 10, 20, "bernoulli", **options)
        config = TrainConfig(epochs=epochs, binarize=True, progress=False, precision="fp32", **train_options)
        t0 = time.perf_counter()
        Trainer(model, config).fit(train)
        seconds = time.perf_counter() - t0
        row = {"model": name, "epochs": epochs, "train_seconds": round(seconds, 1),
               "images_per_s": round(epochs * len(train) / seconds)}
        if isinstance(model, VQVAE):
            t1 = time.perf_counter()
            train_prior(model, torch.bernoulli(train.x), epochs=args.prior_epochs, progress=False, seed=0)
            row["prior_seconds"] = round(time.perf_counter() - t1, 1)
            usage = model.codebook_usage(test)
            with torch.no_grad():
                recon = torch.cat([model.reconstruct(test[i:i + 500]) for i in range(0, len(test), 500)])
            row.update(perplexity=round(usage["perplexity"], 1), used_fraction=round(usage["used_fraction"], 3),
                       recon_mse=round((recon - test).pow(2).sum((1, 2, 3)).mean().item(), 2))
        torch.manual_seed(0)
        row["test_nelbo"] = round(negative_elbo(model, test), 2)
        model.eval()
        with torch.no_grad():
            samples = model.sample(64)
            recon = model.reconstruct(test[:10])
        save_image_grid(samples, out / f"{name}_samples.png", image_shape=(1, 28, 28), title=f"{name}: samples")
        save_image_grid(torch.stack([test[:10], recon.reshape(10, 1, 28, 28)]), out / f"{name}_reconstructions.png",
                        image_shape=(1, 28, 28), title=f"{name}: data / reconstruction")
        model.save_pretrained(out / f"{name}_model")
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| model | epochs | test -ELBO (nats) | train time (s) | images/s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['epochs']} | {r['test_nelbo']} | {r['train_seconds']} | {r['images_per_s']} |")


if __name__ == "__main__":
    main()
