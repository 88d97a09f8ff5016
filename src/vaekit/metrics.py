"""Sample-quality metrics on feature vectors: Fréchet distance, kernel distance (KID), precision
and recall of manifolds, class coverage.

Each takes two sets of features, (N, D) arrays or tensors: real data and generated samples, both
passed through the same feature network. With vaekit's own classifier features these are
"classifier FID" and the like, never comparable with published Inception-feature FIDs.

    frechet_distance(real, fake)               # ||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2)
    kernel_distance(real, fake)                # (KID, its standard error over subsets)
    precision_recall(real, fake, k=3)          # Kynkäänniemi et al. 2019
    class_coverage(predicted, num_classes)     # share of each predicted class and their entropy
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import InputError


def _features(x, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise InputError(f"{name} must be a finite (N, D) array of at least two feature vectors, got shape {x.shape}.")
    return x.astype(np.float64)


def _pair(real, fake) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(real, "real"), _features(fake, "fake")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"real and fake features differ in size ({a.shape[1]} and {b.shape[1]}); use one feature network.")
    return a, b


def gaussian_frechet(mu1, cov1, mu2, cov2) -> float:
    """The Fréchet (2-Wasserstein) distance squared between N(mu1, cov1) and N(mu2, cov2).

    tr((S1 S2)^1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    S1^1/2 S2 S1^1/2, which stays exact for singular covariances (e.g. features that never fire)."""
    root1 = _psd_sqrt(cov1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ cov2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets (the FID formula)."""
    a, b = _pair(real, fake)
    return gaussian_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def kernel_distance(real, fake, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance's estimator on these features: the unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets of `subset_size`
    (at most half of the smaller set, so that subsets differ); (mean, standard error)."""
    a, b = _pair(real, fake)
    m = max(2, min(subset_size, len(a) // 2, len(b) // 2))
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = m * (m - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    values = np.array(values)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)[0][:, -1]


def _covered(points: np.ndarray, centers: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each point: whether it lies in some ball (center, radius)."""
    out = np.zeros(len(points), dtype=bool)
    c2 = (centers ** 2).sum(1)  # (M,)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        d2 = (p ** 2).sum(1)[:, None] + c2[None] - 2 * p @ centers.T  # (chunk, M) squared distances
        out[s:s + chunk] = (d2 <= radii[None] ** 2 + 1e-9 * (1 + c2[None])).any(1)
    return out


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of the samples (Kynkäänniemi et al. 2019): the share of fake features
    inside the real manifold (union of k-NN balls of the real set), and of real ones inside the fake
    manifold."""
    a, b = _pair(real, fake)
    if k < 1 or k >= min(len(a), len(b)):
        raise InputError(f"k must be from 1 to {min(len(a), len(b)) - 1}, got {k}.")
    precision = _covered(b, a, _radii(a, k)).mean()
    recall = _covered(a, b, _radii(b, k)).mean()
    return float(precision), float(recall)


def class_coverage(predicted, num_classes: int) -> dict:
    """How generated samples spread over classes (as a classifier labels them): the share of each
    class, the number of classes seen, and the entropy of the shares in nats (log C when even)."""
    labels = predicted.detach().cpu().numpy() if torch.is_tensor(predicted) else np.asarray(predicted)
    if labels.ndim != 1 or not len(labels) or labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(f"predicted must be class indices in 0..{num_classes - 1}.")
    shares = np.bincount(labels.astype(int), minlength=num_classes) / len(labels)
    nonzero = shares[shares > 0]
    return {"shares": shares.tolist(), "classes_seen": int((shares > 0).sum()),
            "entropy": float(-(nonzero * np.log(nonzero)).sum())}
