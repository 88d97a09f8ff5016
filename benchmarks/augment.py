"""Data augmentation with few labels: MNIST with 10 labelled images per class.

    python benchmarks/augment.py --data-dir ../shared/data/mnist --seeds 5 --threads 1

Protocol. One MLP VAE (784-512-256-20, Bernoulli likelihood on grey levels) is trained on all
60,000 MNIST training images without their labels (or loaded with --vae). Each seed draws 10
labelled images per class from the training set. The same small classifier (an MLP 784-256-10,
Adam 1e-3, weight decay 5e-4, --steps steps of 64 examples drawn uniformly from its training
set, same seed) is trained once per arm and scored on the 10,000 test images:

  labelled          the 100 labelled images alone
  +posterior        plus n posterior samples around each labelled image (the chapter's loop)
  +pseudo           plus unlabelled training images labelled by label spreading over the
                    VAE's posterior means (vaekit.applications.augment.pseudo_label)
  +pseudo+posterior both
  +pseudo(PCA)      control without the VAE: the same label spreading over a PCA of the pixels
                    with as many dimensions as the latent space (--control)

Prints a table (mean +- standard deviation over seeds, and the paired gain over `labelled`)
and a final JSON line.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import vaekit
from vaekit import VAE, Trainer, TrainConfig, augment
from vaekit.applications.augment import pseudo_label, spread_labels
from vaekit.data import load_dataset


def labelled_subset(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` random examples of every class, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    y = y.numpy()
    return torch.as_tensor(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                           for c in range(10)]))


def classifier_accuracy(x, y, x_test, y_test, seed, steps, batch=64, hidden=256, lr=1e-3, weight_decay=5e-4):
    """Test accuracy (%) of the MLP trained for `steps` steps on (x, y); the same budget for every arm."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 10))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(len(x), (batch,), generator=gen)
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return 100 * (net(x_test).argmax(1) == y_test).float().mean().item()


def pca_pseudo_labels(x_lab, y_lab, x_unl, dims, n_per_class):
    """The control: label spreading over a `dims`-dimensional PCA of the pixels (no VAE)."""
    mean = x_unl.mean(0)
    _, _, v = torch.pca_lowrank(x_unl - mean, q=dims, center=False, niter=4)
    share = spread_labels((x_lab - mean) @ v, y_lab, (x_unl - mean) @ v)
    conf, pred = share.max(1)
    chosen = torch.cat([(lambda c: c[conf[c].argsort(descending=True)[:n_per_class]])(torch.nonzero(pred == k).flatten())
                        for k in range(share.shape[1])])
    return x_unl[chosen], pred[chosen]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--seeds", type=int, default=5, help="labelled subsets to average over (default 5)")
    p.add_argument("--per-class", type=int, default=10, help="labelled images per class (default 10)")
    p.add_argument("--vae", help="a saved VAE folder to use instead of training one")
    p.add_argument("--save-vae", help="where to save the trained VAE (to reuse with --vae)")
    p.add_argument("--vae-epochs", type=int, default=20, help="VAE training epochs (default 20)")
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--n-per-example", type=int, default=5, help="posterior samples per labelled image (default 5)")
    p.add_argument("--temperature", type=float, default=1.0, help="posterior sample temperature (default 1)")
    p.add_argument("--decoded", default="mean", choices=["mean", "sample", "detail"])
    p.add_argument("--n-pseudo", type=int, default=1000, help="pseudo-labelled images per class (default 1000)")
    p.add_argument("--steps", type=int, default=1000, help="classifier training steps in every arm (default 1000)")
    p.add_argument("--test-limit", type=int, help="score on the first N test images only")
    p.add_argument("--no-control", action="store_true", help="skip the PCA control arm")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, limit=args.test_limit)
    x_all, y_all = train.x.reshape(len(train), -1), train.y
    x_test, y_test = test.x.reshape(len(test), -1), test.y

    t0 = time.perf_counter()
    if args.vae:
        model = vaekit.load(args.vae)
    else:
        torch.manual_seed(0)
        model = VAE(784, args.latent_dim, image_shape=(1, 28, 28))
        print(f"Training the VAE on {len(train)} unlabelled images for {args.vae_epochs} epochs ...", flush=True)
        Trainer(model, TrainConfig(epochs=args.vae_epochs, progress=False, precision="fp32")).fit(train.x)  # images only, no labels
        if args.save_vae:
            model.save_pretrained(args.save_vae)
    model.eval()
    vae_seconds = time.perf_counter() - t0

    arms = ["labelled", "+posterior", "+pseudo", "+pseudo+posterior"] + ([] if args.no_control else ["+pseudo(PCA)"])
    acc = {a: [] for a in arms}
    precision = []
    t1 = time.perf_counter()
    for seed in range(args.seeds):
        idx = labelled_subset(y_all, args.per_class, seed)
        rest = torch.ones(len(train), dtype=torch.bool)
        rest[idx] = False
        x_lab, y_lab, x_unl = x_all[idx], y_all[idx], x_all[rest]

        x_post, y_post = augment(model, x_lab, y_lab, n_per_example=args.n_per_example,
                                 temperature=args.temperature, decoded=args.decoded, seed=seed)
        x_ps, y_ps, _, picked = pseudo_label(model, x_lab, y_lab, x_unl, n_per_class=args.n_pseudo)
        sets = {
            "labelled": (x_lab, y_lab),
            "+posterior": (torch.cat([x_lab, x_post]), torch.cat([y_lab, y_post])),
            "+pseudo": (torch.cat([x_lab, x_ps]), torch.cat([y_lab, y_ps])),
            "+pseudo+posterior": (torch.cat([x_lab, x_ps, x_post]), torch.cat([y_lab, y_ps, y_post])),
        }
        if not args.no_control:
            x_pc, y_pc = pca_pseudo_labels(x_lab, y_lab, x_unl, args.latent_dim, args.n_pseudo)
            sets["+pseudo(PCA)"] = (torch.cat([x_lab, x_pc]), torch.cat([y_lab, y_pc]))
        precision.append(100 * (y_all[rest][picked] == y_ps).float().mean().item())
        row = []
        for arm in arms:
            x, y = sets[arm]
            acc[arm].append(classifier_accuracy(x, y, x_test, y_test, seed, args.steps))
            row.append(f"{arm} {acc[arm][-1]:.2f}")
        print(f"seed {seed}: " + ", ".join(row) + f"; pseudo-label precision {precision[-1]:.1f}%", flush=True)
    seconds = time.perf_counter() - t1

    base = np.array(acc["labelled"])
    print(f"\nMNIST, {args.per_class} labels per class, {args.seeds} seeds, test accuracy (%) of the same MLP "
          f"({args.steps} steps):")
    print(f"  {'arm':<20} {'accuracy':>16} {'gain over labelled':>22}")
    result = {}
    for arm in arms:
        a = np.array(acc[arm])
        gain = a - base
        print(f"  {arm:<20} {a.mean():7.2f} +- {a.std():5.2f} {gain.mean():+13.2f} +- {gain.std():5.2f}")
        result[arm] = {"mean": round(a.mean(), 2), "std": round(a.std(), 2), "gain": round(gain.mean(), 2),
                       "gain_std": round(gain.std(), 2), "per_seed": [round(v, 2) for v in a]}
    print(f"  pseudo-label precision {np.mean(precision):.1f}% ({args.n_pseudo} per class); "
          f"VAE {vae_seconds:.0f} s, arms {seconds:.0f} s")
    print(json.dumps({"benchmark": "augment", "per_class": args.per_class, "seeds": args.seeds, "steps": args.steps,
                      "vae_epochs": None if args.vae else args.vae_epochs, "n_per_example": args.n_per_example,
                      "temperature": args.temperature, "decoded": args.decoded, "n_pseudo": args.n_pseudo,
                      "test_images": len(test), "pseudo_precision": round(float(np.mean(precision)), 2),
                      "accuracy": result}))


if __name__ == "__main__":
    main()
