"""Datasets as in-memory tensors: scikit-learn's digits, MNIST, Fashion-MNIST and the user's own files.

`load_dataset("digits")` works offline. MNIST and Fashion-MNIST are read from their IDX files,
looked up in this order: the `data_dir` argument, the `VAEKIT_DATA` environment variable, the cache
folder (`$XDG_CACHE_HOME/vaekit/<name>`, else `~/.cache/vaekit/<name>`), and finally a download
from the canonical mirrors into that cache, verified against published checksums. A path to a
`.npy`, `.npz` or `.csv` file, or a folder of PNG/JPEG images, loads the user's own data.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .dataset import (DATASETS, Dataset, binarize_fixed, check_probabilities, dynamic_binarize, from_arrays,
                      train_val_split)
from .digits import DIGITS_TEST_SIZE, _load_digits
from .dsprites import load_dsprites
from .files import IMAGE_SUFFIXES, image_files, load_image_folder, _load_file
from .idx import _IDX_NAMES, _load_idx_dataset, cache_dir, find_idx_files

SPLITS = ("train", "test", "all")  # "all": dSprites' whole grid; the other sets know train and test

__all__ = [
    "DATASETS", "SPLITS", "Dataset", "load_dataset", "from_arrays", "dynamic_binarize", "binarize_fixed",
    "train_val_split", "check_probabilities", "image_files", "load_image_folder", "cache_dir", "find_idx_files",
    "IMAGE_SUFFIXES", "DIGITS_TEST_SIZE", "load_dsprites",
]


def load_dataset(
    source: str | os.PathLike,
    split: str = "train",
    data_dir=None,
    download: bool = True,
    limit: int | None = None,
) -> Dataset:
    """Load a named dataset (one of DATASETS) or a `.npy` / `.npz` / `.csv` file, first `limit` examples.

    split: "train" or "test" ("all" too for dSprites). digits: scikit-learn's 1797 images in a fixed order (a permutation
    with numpy seed 0); the first 1437 are "train", the last 360 "test". MNIST and Fashion-MNIST:
    their official 60,000 / 10,000 splits. dsprites (64 x 64) and dsprites-32: the procedural
    dSprites grid with its factors (see `load_dsprites`). A file has no split: "train" and "test" both return it.
    data_dir: a folder holding the IDX files, or a parent of a `mnist` / `fashion-mnist` folder.
    download: whether MNIST and Fashion-MNIST may be fetched when no local copy is found.
    """
    if split not in SPLITS:
        raise InputError(f"Unknown split {split!r}; use 'train' or 'test'.")
    key = str(source).lower().replace("_", "-")
    if split == "all" and not key.startswith("dsprites"):
        raise InputError(f"Split 'all' is dSprites' whole grid; for {str(source)!r} use 'train' or 'test'.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer or None, not {limit!r}.")
    if key == "digits":
        ds = _load_digits(split)
    elif key in ("dsprites", "dsprites-32"):
        ds = load_dsprites(split, resolution=32 if key == "dsprites-32" else 64, limit=limit)
    elif key in _IDX_NAMES:
        ds = _load_idx_dataset(key, split, data_dir, download, limit)
    elif Path(source).expanduser().is_dir():
        ds = load_image_folder(source)
    else:
        ds = _load_file(source)
    return ds if limit is None or limit >= len(ds) else ds.subset(slice(0, limit))
