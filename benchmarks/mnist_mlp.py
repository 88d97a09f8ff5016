"""The chapter's MLP VAE (784-512-256-20) on dynamically binarized MNIST: test negative ELBO.

    python benchmarks/mnist_mlp.py --data-dir ../shared/data/mnist --epochs 10

Protocol: training images re-binarized every time they are used; the test set binarized once
(seed 0); Adam 1e-3, batch 128, Bernoulli likelihood from logits. Prints one JSON line.
"""

import argparse
import json
import time

import torch

from vaekit import VAE
from vaekit.data import binarize_fixed, load_dataset
from vaekit.train import Trainer, TrainConfig


def test_nelbo(model, x, batch=1000):
    with torch.no_grad():
        return -torch.cat([model.elbo(x[i:i + batch]) for i in range(0, len(x), batch)]).mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="fp32", help="Trainer precision: fp32, bf16 or auto")
    args = p.parse_args()
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = binarize_fixed(load_dataset("mnist", "test", data_dir=args.data_dir).x, seed=0)
    torch.manual_seed(args.seed)
    model = VAE(784, 20)
    t0 = time.perf_counter()
    Trainer(model, TrainConfig(epochs=args.epochs, binarize=True, seed=args.seed, progress=False,
                                       precision=args.precision)).fit(train)
    seconds = time.perf_counter() - t0
    torch.manual_seed(0)
    print(json.dumps({"benchmark": "mnist_mlp", "epochs": args.epochs, "precision": args.precision, "test_nelbo": round(test_nelbo(model, test), 2),
                      "train_seconds": round(seconds, 1), "images_per_s": round(args.epochs * 60000 / seconds)}))


if __name__ == "__main__":
    main()
