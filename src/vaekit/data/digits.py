"""scikit-learn's 8x8 digits (offline), in a fixed train/test split."""

from __future__ import annotations


import numpy as np
import torch

from .dataset import Dataset


# ---- digits -------------------------------------------------------------------------------------

DIGITS_TEST_SIZE = 360


def _load_digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = len(order) - DIGITS_TEST_SIZE
    index = order[:cut] if split == "train" else order[cut:]
    x = torch.from_numpy((digits.images[index] / 16.0).astype(np.float32))[:, None]  # (N, 1, 8, 8)
    return Dataset(x, torch.from_numpy(digits.target[index].astype(np.int64)), "digits", 10)
