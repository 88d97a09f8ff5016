"""vaekit's AnomalyDetector (its defaults) against classical detectors on the 12 ODDS tables, under
PyOD's benchmark protocol: for each data set and seed a 60/40 split, both splits standardized with
the training split's statistics, an unsupervised fit on the training split (outliers included),
AUROC and precision@n (n = the test outliers) on the test split.

    python benchmarks/anomaly_odds.py --data-dir ../shared/data/odds --seeds 5

Baselines, all computed here with scikit-learn and NumPy on the same splits: IsolationForest,
KNN (distance to the 5th neighbour), LOF (20 neighbours), OCSVM (RBF, nu 0.5 as PyOD), PCA
(Mahalanobis distance in the principal axes, as PyOD's PCA scores), ECOD (empirical-CDF tails).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.stats import rankdata
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import OneClassSVM

SETS = ("arrhythmia", "glass", "ionosphere", "lympho", "mnist", "musk", "optdigits", "pima", "satellite", "shuttle",
        "vertebral", "wbc")
OCSVM_ROWS = 10000  # OCSVM is quadratic in the rows: fitted on at most this many training rows


def knn(train, test, seed):
    nn = NearestNeighbors(n_neighbors=5).fit(train)
    return nn.kneighbors(test)[0][:, -1]


def lof(train, test, seed):
    return -LocalOutlierFactor(n_neighbors=20, novelty=True).fit(train).score_samples(test)


def iforest(train, test, seed):
    return -IsolationForest(random_state=seed).fit(train).score_samples(test)


def ocsvm(train, test, seed):
    rows = np.random.default_rng(seed).permutation(len(train))[:OCSVM_ROWS]
    return -OneClassSVM(kernel="rbf", gamma="scale", nu=0.5).fit(train[rows]).score_samples(test)


def pca(train, test, seed):
    """Sum over principal axes of the squared projection divided by the axis' variance."""
    mean = train.mean(0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    var = s ** 2 / max(len(train) - 1, 1)
    keep = var > 1e-12 * var.max()
    proj = (test - mean) @ vt[keep].T
    return (proj ** 2 / var[keep]).sum(1)


def ecod(train, test, seed):
    """ECOD (Li et al. 2022): -log of the empirical tail probabilities, left, right or by skewness."""
    n = len(train)
    ordered = np.sort(train, axis=0)
    left = np.stack([np.searchsorted(ordered[:, j], test[:, j], side="right") for j in range(train.shape[1])], 1) / n
    right = np.stack([n - np.searchsorted(ordered[:, j], test[:, j], side="left") for j in range(train.shape[1])], 1) / n
    left, right = -np.log(np.clip(left, 1 / n, 1)), -np.log(np.clip(right, 1 / n, 1))
    skew = ((train - train.mean(0)) ** 3).mean(0)
    auto = np.where(skew < 0, left, right)
    return np.maximum.reduce([left.sum(1), right.sum(1), auto.sum(1)])


VAEKIT_OPTIONS: dict = {}  # --vaekit KEY=VALUE: AnomalyDetector parameters other than its defaults


ENSEMBLE = 1  # --ensemble N: the mean of N detectors' standardized scores (seeds seed*N ... seed*N+N-1)


def vaekit_detector(train, test, seed, contamination):
    from vaekit import AnomalyDetector

    total = 0.0
    for member in range(ENSEMBLE):
        det = AnomalyDetector(contamination=max(min(contamination, 0.5), 1e-3), seed=seed * ENSEMBLE + member,
                              **VAEKIT_OPTIONS).fit(train)
        fitted = det.anomaly_score(train)
        total = total + (det.anomaly_score(test) - np.median(fitted)) / (np.std(fitted) + 1e-12)
    return total / ENSEMBLE


DETECTORS = {"vaekit": None, "IForest": iforest, "KNN": knn, "LOF": lof, "OCSVM": ocsvm, "PCA": pca, "ECOD": ecod}


def precision_at_n(y, scores) -> float:
    n = int(y.sum())
    return float(y[np.argsort(-scores)[:n]].mean()) if n else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/odds")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (default 0)")
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--detectors", nargs="*", default=list(DETECTORS), help="which detectors to run")
    parser.add_argument("--vaekit", nargs="*", default=[], metavar="KEY=VALUE",
                        help="AnomalyDetector parameters instead of its defaults, e.g. latent_dim=8 hidden_dims=[64,32]")
    parser.add_argument("--ensemble", type=int, default=1, help="average N vaekit detectors (default 1)")
    args = parser.parse_args()
    import json as _json

    global ENSEMBLE
    ENSEMBLE = args.ensemble

    for item in args.vaekit:
        key, value = item.split("=", 1)
        VAEKIT_OPTIONS[key] = _json.loads(value) if value[:1] in "[{0123456789-\"tfn" else value
    for name in list(DETECTORS):
        if name not in args.detectors:
            del DETECTORS[name]
    import torch

    torch.set_num_threads(1)
    results = {name: {d: [] for d in DETECTORS} for name in args.sets}
    precision = {name: {d: [] for d in DETECTORS} for name in args.sets}
    seconds = {d: 0.0 for d in DETECTORS}
    start = time.perf_counter()
    for name in args.sets:
        mat = loadmat(Path(args.data_dir) / f"{name}.mat")
        X, y = mat["X"].astype(np.float64), mat["y"].ravel().astype(int)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            x_tr, x_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, random_state=seed)
            mean, std = x_tr.mean(0), x_tr.std(0)
            std[std == 0] = 1
            x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
            for det, fn in DETECTORS.items():
                t0 = time.perf_counter()
                scores = vaekit_detector(x_tr, x_te, seed, y_tr.mean()) if fn is None else fn(x_tr, x_te, seed)
                seconds[det] += time.perf_counter() - t0
                results[name][det].append(roc_auc_score(y_te, scores))
                precision[name][det].append(precision_at_n(y_te, scores))
        row = "  ".join(f"{d} {np.mean(v):.3f}" for d, v in results[name].items())
        print(f"{name:<11} {row}", flush=True)
    names = list(DETECTORS)
    means = np.array([[np.mean(results[s][d]) for d in names] for s in args.sets])  # (sets, detectors)
    ranks = np.array([rankdata(-row) for row in means])
    print()
    print("| data set | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for i, s in enumerate(args.sets):
        cells = [f"{means[i, j]:.3f} ± {np.std(results[s][d]):.3f}" for j, d in enumerate(names)]
        best = means[i].argmax()
        cells[best] = f"**{cells[best]}**"
        print(f"| {s} | " + " | ".join(cells) + " |")
    print("| mean AUROC | " + " | ".join(f"{m:.3f}" for m in means.mean(0)) + " |")
    print("| mean precision@n | " + " | ".join(
        f"{np.mean([np.mean(precision[s][d]) for s in args.sets]):.3f}" for d in names) + " |")
    print("| average rank | " + " | ".join(f"{r:.2f}" for r in ranks.mean(0)) + " |")
    print("| seconds | " + " | ".join(f"{seconds[d]:.0f}" for d in names) + " |")
    print(f"\n{args.seeds} seeds ({args.first_seed}-{args.first_seed + args.seeds - 1}), {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
