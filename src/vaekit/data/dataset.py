"""The in-memory Dataset, building one from arrays, binarization and train/validation splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

DATASETS = ("digits", "mnist", "fashion-mnist", "dsprites", "dsprites-32")  # the named data sets load_dataset knows


@dataclass(eq=False)  # tensors have no single truth value to compare by
class Dataset:
    """Examples `x` (float32 images (N, C, H, W) in [0, 1], or a table (N, D)) with optional labels."""

    x: torch.Tensor  # float32; images (N, C, H, W) or a table (N, D)
    y: torch.Tensor | None  # int64 labels (N,), or None
    name: str  # where the data came from: a dataset name or a file's stem
    num_classes: int | None = None  # number of label values, None without labels
    factors: torch.Tensor | None = None  # int64 (N, K): each example's index on K generative factors, or None
    factor_names: tuple[str, ...] | None = None  # the K factors' names

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) for images, None for tables."""
        return tuple(self.x.shape[1:]) if self.x.dim() == 4 else None

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index) -> Dataset:
        """The examples at `index` (a slice, an int, a list, an index tensor or a boolean mask)."""
        if isinstance(index, int):
            index = [index]
        y = None if self.y is None else self.y[index]
        factors = None if self.factors is None else self.factors[index]
        return Dataset(self.x[index], y, self.name, self.num_classes, factors, self.factor_names)

    def __repr__(self) -> str:
        y = None if self.y is None else tuple(self.y.shape)
        factors = "" if self.factors is None else f", factors={self.factor_names}"
        return f"Dataset({self.name!r}, x={tuple(self.x.shape)}, y={y}, num_classes={self.num_classes}{factors})"


def from_arrays(x, y=None, name: str = "array", factors=None, factor_names=None) -> Dataset:
    """A Dataset from a NumPy array or tensor `x`, optional integer labels `y` and factors, with the file rules.

    factors: (N, K) integer indices of each example on K generative factors (for disentanglement
    metrics), with `factor_names` (K strings; default "factor 0", "factor 1", ...).
    uint8 data, and integer images (3 or 4 dimensions), with values above 1 are pixel values
    0..255 and are divided by 255; (N, H, W) becomes (N, 1, H, W); (N, H, W, C) with C in 1, 3, 4
    and H, W > 4 becomes (N, C, H, W); (N, D) is a table. Floats are kept as they are.
    """
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputError(f"Data {name!r} has {x.dtype} values; give numbers (integers or floats).")
    if x.ndim not in (2, 3, 4) or x.size == 0:
        raise InputError(
            f"Data {name!r} has shape {x.shape}; give a table (N, D) or images (N, H, W), (N, C, H, W) "
            "or (N, H, W, C) with N > 0."
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(f"Data {name!r} contains NaN or infinite values; clean or impute them first.")
    if x.dtype.kind in "fiu" and x.dtype.itemsize > 4 and x.size and np.abs(x).max() > np.finfo(np.float32).max:
        raise InputError(f"Data {name!r} has values beyond float32's range (3.4e38); rescale them first.")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] > 4 and x.shape[2] > 4:
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    x = _scale_pixels(x, name)
    labels, num_classes = _labels(y, len(x), name)
    factors, factor_names = _factors(factors, factor_names, len(x), name)
    return Dataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), labels, name, num_classes,
                   factors, factor_names)


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None, check: bool = True) -> torch.Tensor:
    """Each value p in [0, 1] becomes 1 with probability p, drawn afresh on every call.

    One uniform draw per value compared with p (three times faster than torch.bernoulli on
    CPUs); `check=False` skips the range check for data already checked once.
    """
    if check:
        check_probabilities(x)
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (noise < x).to(x.dtype)


def binarize_fixed(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Like dynamic_binarize but the same for the same `seed` on any device (to binarize a test set once)."""
    check_probabilities(x)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=generator)  # drawn on the CPU so every device agrees
    return (noise < x.detach().cpu()).to(x.dtype).to(x.device)


def train_val_split(ds: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split `ds` at random (fixed by `seed`) into disjoint train and validation sets, order kept."""
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must lie strictly between 0 and 1, not {val_fraction}.")
    n_val = min(max(1, round(len(ds) * val_fraction)), len(ds) - 1)
    if n_val < 1:
        raise InputError(f"Dataset {ds.name!r} has {len(ds)} example(s); a split needs at least 2.")
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return ds.subset(train), ds.subset(val)


# ---- checks shared by every source ------------------------------------------------------------


def _scale_pixels(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 data and integer images with values above 1 hold pixels 0..255: divided by 255."""
    pixels = x.dtype == np.uint8 or (x.dtype.kind in "iu" and x.ndim == 4)
    if not pixels or x.max() <= 1:
        return x
    if x.min() < 0 or x.max() > 255:
        raise InputError(
            f"Integer images {name!r} range from {x.min()} to {x.max()}, outside 0..255; scale them to [0, 1] first."
        )
    return x / np.float32(255)


def _labels(y, n: int, name: str) -> tuple[torch.Tensor | None, int | None]:
    """Labels as int64 (N,) and their count of classes, or (None, None)."""
    if y is None:
        return None, None
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise InputError(f"Labels of {name!r} have shape {y.shape} but there are {n} examples; give one label each.")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise InputError(f"Labels of {name!r} are not integers; give class numbers 0, 1, 2, ...")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise InputError(f"Labels of {name!r} include {y.min()}; give class numbers 0, 1, 2, ...")
    return torch.from_numpy(y), int(y.max()) + 1


def _factors(factors, names, n: int, name: str) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """Factor indices as int64 (N, K) and their K names, or (None, None)."""
    if factors is None:
        if names is not None:
            raise InputError(f"Data {name!r} has factor_names but no factors; save the factors (N, K) too.")
        return None, None
    factors = factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[0] != n:
        raise InputError(f"Factors of {name!r} have shape {factors.shape} but there are {n} examples; give (N, K), "
                         "one row of factor indices per example.")
    whole = factors.dtype.kind in "biu" or (factors.dtype.kind == "f" and np.isfinite(factors).all()
                                             and (factors == np.round(factors)).all())
    if not whole or factors.size == 0 or factors.min() < 0:
        raise InputError(f"Factors of {name!r} must be indices 0, 1, 2, ... of each factor's values; "
                         "discretize continuous factors first.")
    k = factors.shape[1]
    names = tuple(f"factor {i}" for i in range(k)) if names is None else tuple(str(v) for v in np.asarray(names).ravel())
    if len(names) != k:
        raise InputError(f"Data {name!r} names {len(names)} factors but has {k}; give one name per factor column.")
    return torch.from_numpy(factors.astype(np.int64)), names


def check_probabilities(x: torch.Tensor) -> None:
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):
        raise InputError("Binarization needs values in [0, 1] (probabilities); rescale the data first.")
