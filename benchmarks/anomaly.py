"""One-class anomaly detection: MNIST as in Ruff et al. 2018, and a scikit-learn table, against baselines.

    python benchmarks/anomaly.py --data-dir ../shared/data/mnist                  # ten digits, then the table
    python benchmarks/anomaly.py --data-dir ../shared/data/mnist --digits 2 5 8 --epochs 30 --part mnist
    python benchmarks/anomaly.py --part table
    python benchmarks/anomaly.py --part digits --splits 5                        # one-class 8x8 digits
    python benchmarks/anomaly.py --part digits --splits 5 --digits-as table      # the same as rows of 64 values

MNIST (Ruff et al. 2018, "Deep One-Class Classification"): for each digit, fit on the training images
of that digit (about 6,000), score the whole 10,000-image test set, the other nine digits being the
anomalies; AUROC per digit and the mean over the digits. Preprocessing as in that paper, global
contrast normalization of each image followed by min-max scaling with the minimum and maximum of the
normal class's training images, is the first step of a scikit-learn Pipeline, so vaekit's
AnomalyDetector and scikit-learn's IsolationForest see exactly the same data (IsolationForest on
raw pixels is reported beside it, column "IF raw"). Ruff et al. divide by
the L1 norm of the deviations (`--preprocess l1`); the default divides by the L2 norm, which gives
every image the same energy, so that the squared error of a wholly wrong reconstruction no longer
grows with the amount of ink (raw pixels favour thin digits like 1 as "normal", L1 favours heavy
ones like 0; on the hard digits 2, 5 and 8 L2 lifts the AUROC by 2-4 points over L1).
`--preprocess none` uses raw pixels in [0, 1] with a Bernoulli likelihood. After normalization the
detector models the 784 values as 28x28 images with a Gaussian likelihood (sigma 0.1), trains on
all of the digit's training images for `--epochs` (no held-out part, no early stopping) and scores
by negative ELBO unless told otherwise.

Table: scikit-learn's breast cancer data (569 tumours, 30 features); benign tumours are normal,
malignant ones anomalous. Over `--splits` random splits: fit on two thirds of the benign tumours,
score the other benign third plus every malignant tumour; AUROC mean and standard deviation for
vaekit (the detector's defaults: standardized features, a Gaussian likelihood with a learned
variance), IsolationForest and OneClassSVM (standardized features, RBF kernel, gamma 'scale').

8x8 digits (scikit-learn's 1797 images): for each digit and each of `--splits` random halvings of
every digit's images, fit on one half of that digit (about 90 images) and score the other halves
of all ten digits; vaekit's AnomalyDetector with its defaults on the (N, 8, 8) images, or with
`--digits-as table` on the (N, 64) rows (what a new user gets either way; other options with
--detector-json, e.g. '{"sigma": 0.2}'), IsolationForest and KNN (the distance to the 5th nearest
training image, PyOD's default) on the same (N, 64) rows and splits.

Prints per-digit tables and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from vaekit import AnomalyDetector
from vaekit.data import load_dataset

# Ruff et al. 2018, Table 1 (mean AUROC %, MNIST one-class)
ANCHORS = {"OC-SVM": 91.3, "IsolationForest": 92.3, "Deep SVDD": 94.8, "VAE (later papers)": 97.0}


class ContrastNormalize(TransformerMixin, BaseEstimator):
    """Global contrast normalization per row (subtract the mean, divide by the L1 or L2 norm of the
    deviations), then min-max scaling with the extremes of the data it was fitted on."""

    def __init__(self, norm: str = "l2"):
        self.norm = norm

    def fit(self, X, y=None):
        g = self._gcn(X)
        self.min_, self.max_ = float(g.min()), float(g.max())
        return self

    def transform(self, X):
        return ((self._gcn(X) - self.min_) / (self.max_ - self.min_)).astype(np.float32)

    def _gcn(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        X = X - X.mean(1, keepdims=True)
        size = np.abs(X).mean(1, keepdims=True) if self.norm == "l1" else np.sqrt((X**2).mean(1, keepdims=True))
        return X / np.maximum(size, 1e-12)


def vae_detector(args, image_shape=None, **kw) -> AnomalyDetector:
    return AnomalyDetector(model=args.model, scoring=args.score, latent_dim=args.latent_dim, epochs=args.epochs,
                           n_samples=args.n_samples, image_shape=image_shape, seed=args.seed, **kw)


def run_mnist(args) -> dict:
    train = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    x_train, y_train = train.x.reshape(len(train), -1).numpy(), train.y.numpy()
    x_test, y_test = test.x.reshape(len(test), -1).numpy(), test.y.numpy()
    gcn = args.preprocess != "none"
    prep = lambda: [ContrastNormalize(args.preprocess)] if gcn else []  # noqa: E731 (a fresh step per pipeline)
    lik = {"likelihood": "gaussian", "sigma": args.sigma} if gcn else {"likelihood": "bernoulli"}
    print(f"MNIST one-class: {args.model} VAE, latent {args.latent_dim}, {args.epochs} epochs, score {args.score}, "
          f"{lik['likelihood']} likelihood, preprocessing {args.preprocess}")
    print(f"{'digit':>5} {'vaekit':>8} {'IForest':>8} {'IF raw':>8} {'fit s':>7} {'score s':>7}")
    rows = {}
    for digit in args.digits:
        normal = x_train[y_train == digit]
        is_anomaly = y_test != digit
        vae = make_pipeline(*prep(), vae_detector(args, image_shape=(1, 28, 28), validation_fraction=0.0, **lik))
        t0 = time.perf_counter()
        vae.fit(normal)
        t1 = time.perf_counter()
        auc_vae = roc_auc_score(is_anomaly, -vae.score_samples(x_test))
        t2 = time.perf_counter()
        forest = make_pipeline(*prep(), IsolationForest(random_state=args.seed))
        auc_if = roc_auc_score(is_anomaly, -forest.fit(normal).score_samples(x_test))
        raw = IsolationForest(random_state=args.seed).fit(normal)
        auc_raw = roc_auc_score(is_anomaly, -raw.score_samples(x_test))
        rows[digit] = {"vaekit": 100 * auc_vae, "iforest": 100 * auc_if, "iforest_raw": 100 * auc_raw,
                       "fit_s": t1 - t0, "score_s": t2 - t1}
        print(f"{digit:>5} {100 * auc_vae:8.2f} {100 * auc_if:8.2f} {100 * auc_raw:8.2f} {t1 - t0:7.1f} {t2 - t1:7.1f}",
              flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("vaekit", "iforest", "iforest_raw")}
    print(f"{'mean':>5} {mean['vaekit']:8.2f} {mean['iforest']:8.2f} {mean['iforest_raw']:8.2f}"
          + ("" if len(rows) == 10 else f"   (over {len(rows)} of the 10 digits: partial)"))
    print("anchors (mean AUROC %, all ten digits): " + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()))
    return {"digits": list(rows), "auroc": {str(d): {k: round(v, 2) for k, v in r.items()} for d, r in rows.items()},
            "mean": {k: round(v, 2) for k, v in mean.items()}, "complete": len(rows) == 10,
            "config": {k: getattr(args, k) for k in ("model", "score", "latent_dim", "epochs", "preprocess", "sigma",
                                                      "n_samples", "seed")}}


def run_table(args) -> dict:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, benign = data.data, data.target == 1
    print(f"\nBreast cancer (scikit-learn): {benign.sum()} benign (normal), {(~benign).sum()} malignant (anomalies), "
          f"{x.shape[1]} features, {args.splits} random splits")
    table_lik = {"likelihood": args.table_likelihood} if args.table_likelihood else {}
    methods = {
        "vaekit": lambda: AnomalyDetector(scoring=args.score, latent_dim=args.latent_dim, epochs=args.table_epochs,
                                          n_samples=args.n_samples, seed=args.seed, **table_lik),
        "IsolationForest": lambda: IsolationForest(random_state=args.seed),
        "OneClassSVM": lambda: make_pipeline(StandardScaler(), OneClassSVM(gamma="scale", nu=0.1)),
    }
    results = {name: [] for name in methods}
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(np.flatnonzero(benign))
        cut = 2 * len(order) // 3
        train, test = order[:cut], np.r_[order[cut:], np.flatnonzero(~benign)]
        for name, make in methods.items():
            scores = -make().fit(x[train]).score_samples(x[test])
            results[name].append(100 * roc_auc_score(~benign[test], scores))
    summary = {name: {"mean": round(float(np.mean(v)), 2), "std": round(float(np.std(v)), 2)}
               for name, v in results.items()}
    for name, s in summary.items():
        print(f"  {name:<16} AUROC {s['mean']:6.2f} +- {s['std']:.2f}")
    return {"dataset": "breast_cancer", "splits": args.splits, "auroc": summary}


def knn_scores(train: np.ndarray, test: np.ndarray, k: int = 5) -> np.ndarray:
    """Anomaly scores: the distance of each test row to its k-th nearest training row (PyOD's KNN)."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)[0][:, -1]


def run_digits(args) -> dict:
    """One-class 8x8 digits: fit on half of one digit's images, score the other half of every digit."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values 0..16 -> [0, 1]
    print(f"\nOne-class 8x8 digits (scikit-learn, {len(x)} images): fit on half of one digit, score the other half "
          f"of all ten; vaekit's AnomalyDetector on the {args.digits_as} with options {args.detector_json}; "
          f"{args.splits} random halvings")
    options = json.loads(args.detector_json)
    if "image_shape" in options:
        options["image_shape"] = tuple(options["image_shape"])
    shape = (-1, 8, 8) if args.digits_as == "images" else (-1, 64)  # (N, 8, 8) images or (N, 64) rows
    methods = {
        "vaekit": lambda tr, te, seed: -AnomalyDetector(seed=seed, **options).fit(tr.reshape(shape)).score_samples(
            te.reshape(shape)),
        "IsolationForest": lambda tr, te, seed: -IsolationForest(random_state=seed).fit(tr).score_samples(te),
        "KNN": lambda tr, te, seed: knn_scores(tr, te),
    }
    auroc = {name: np.zeros((10, args.splits)) for name in methods}
    for split in range(args.splits):
        rng = np.random.default_rng(split)
        halves = {}
        for digit in range(10):
            order = rng.permutation(np.flatnonzero(y == digit))
            halves[digit] = (order[: len(order) // 2], order[len(order) // 2:])
        test = np.concatenate([halves[d][1] for d in range(10)])
        for digit in range(10):
            train = halves[digit][0]
            for name, score in methods.items():
                auroc[name][digit, split] = 100 * roc_auc_score(y[test] != digit, score(x[train], x[test], split))
    print(f"{'digit':>5} " + " ".join(f"{name:>16}" for name in methods))
    for digit in range(10):
        print(f"{digit:>5} " + " ".join(f"{auroc[name][digit].mean():16.2f}" for name in methods))
    means = {name: float(a.mean()) for name, a in auroc.items()}
    spread = {name: float(a.mean(axis=0).std()) for name, a in auroc.items()}  # of the ten-digit mean over splits
    print(f"{'mean':>5} " + " ".join(f"{means[name]:10.2f} +- {spread[name]:.2f}" for name in methods))
    return {"splits": args.splits, "mean": {k: round(v, 2) for k, v in means.items()},
            "std_over_splits": {k: round(v, 2) for k, v in spread.items()},
            "per_digit": {name: [round(float(v), 2) for v in a.mean(axis=1)] for name, a in auroc.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "mnist", "table", "digits"], default="all",
                   help="what to run (default all)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (else $VAEKIT_DATA, the cache, a download)")
    p.add_argument("--digits", type=int, nargs="+", default=list(range(10)), help="normal classes (default 0..9)")
    p.add_argument("--model", choices=["vae", "conv"], default="vae", help="detector model (default vae)")
    p.add_argument("--score", choices=["elbo", "nll", "recon"], default="elbo", help="anomaly score (default elbo)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per digit (default 30)")
    p.add_argument("--latent-dim", type=int, default=8, help="latent dimensions (default 8)")
    p.add_argument("--preprocess", choices=["l2", "l1", "none"], default="l2",
                   help="contrast normalization + min-max: l2 (default), l1 (Ruff et al.'s); none: raw pixels")
    p.add_argument("--sigma", type=float, default=0.1, help="Gaussian likelihood's sigma after normalization "
                                                            "(default 0.1)")
    p.add_argument("--n-samples", type=int, default=10, help="posterior / importance samples per score (default 10)")
    p.add_argument("--splits", type=int, default=10, help="random splits of the table (default 10)")
    p.add_argument("--table-likelihood", choices=["gaussian", "gaussian-learned"],
                   help="likelihood of the table detector (default: the detector's own default)")
    p.add_argument("--table-epochs", type=int, help="epochs for the table (default: the detector's own, ~2000 steps)")
    p.add_argument("--digits-as", choices=["images", "table"], default="images",
                   help="--part digits: give vaekit the (N, 8, 8) images (default) or the (N, 64) table of pixels")
    p.add_argument("--detector-json", default="{}",
                   help="AnomalyDetector options for --part digits as JSON (default {}: its defaults)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"benchmark": "anomaly"}
    t0 = time.perf_counter()
    if args.part in ("all", "mnist"):
        out["mnist"] = run_mnist(args)
    if args.part in ("all", "table"):
        out["table"] = run_table(args)
    if args.part in ("all", "digits"):
        out["digits"] = run_digits(args)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
