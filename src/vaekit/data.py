"""Datasets as in-memory tensors: scikit-learn's digits, MNIST, Fashion-MNIST and the user's own files.

`load_dataset("digits")` works offline. MNIST and Fashion-MNIST are read from their IDX files,
looked up in this order: the `data_dir` argument, the `VAEKIT_DATA` environment variable, the cache
folder (`$XDG_CACHE_HOME/vaekit/<name>`, else `~/.cache/vaekit/<name>`), and finally a download
from the canonical mirrors into that cache, verified against published checksums. A path to a
`.npy`, `.npz` or `.csv` file, or a folder of PNG/JPEG images, loads the user's own data.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .distributions import InputError
from .io import atomic_write_bytes

DATASETS = ("digits", "mnist", "fashion-mnist")
SPLITS = ("train", "test")


@dataclass(eq=False)  # tensors have no single truth value to compare by
class Dataset:
    """Examples `x` (float32 images (N, C, H, W) in [0, 1], or a table (N, D)) with optional labels."""

    x: torch.Tensor  # float32; images (N, C, H, W) or a table (N, D)
    y: torch.Tensor | None  # int64 labels (N,), or None
    name: str  # where the data came from: a dataset name or a file's stem
    num_classes: int | None = None  # number of label values, None without labels

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
        return Dataset(self.x[index], y, self.name, self.num_classes)

    def __repr__(self) -> str:
        y = None if self.y is None else tuple(self.y.shape)
        return f"Dataset({self.name!r}, x={tuple(self.x.shape)}, y={y}, num_classes={self.num_classes})"


def load_dataset(
    source: str | os.PathLike,
    split: str = "train",
    data_dir=None,
    download: bool = True,
    limit: int | None = None,
) -> Dataset:
    """Load a named dataset (one of DATASETS) or a `.npy` / `.npz` / `.csv` file, first `limit` examples.

    split: "train" or "test". digits: scikit-learn's 1797 images in a fixed order (a permutation
    with numpy seed 0); the first 1437 are "train", the last 360 "test". MNIST and Fashion-MNIST:
    their official 60,000 / 10,000 splits. A file has no split: "train" and "test" both return it.
    data_dir: a folder holding the IDX files, or a parent of a `mnist` / `fashion-mnist` folder.
    download: whether MNIST and Fashion-MNIST may be fetched when no local copy is found.
    """
    if split not in SPLITS:
        raise InputError(f"Unknown split {split!r}; use 'train' or 'test'.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer or None, not {limit!r}.")
    key = str(source).lower().replace("_", "-")
    if key == "digits":
        ds = _load_digits(split)
    elif key in _IDX_NAMES:
        ds = _load_idx_dataset(key, split, data_dir, download, limit)
    elif Path(source).expanduser().is_dir():
        ds = load_image_folder(source)
    else:
        ds = _load_file(source)
    return ds if limit is None or limit >= len(ds) else ds.subset(slice(0, limit))


def from_arrays(x, y=None, name: str = "array") -> Dataset:
    """A Dataset from a NumPy array or tensor `x` and optional integer labels `y`, with the file rules.

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
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] > 4 and x.shape[2] > 4:
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    x = _scale_pixels(x, name)
    labels, num_classes = _labels(y, len(x), name)
    return Dataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), labels, name, num_classes)


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


# ---- MNIST and Fashion-MNIST from IDX files ----------------------------------------------------

_IDX_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # -> torchvision's folder name
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}
# Checksums that a download must match. "idx_sha256" is of the decompressed IDX bytes, so it
# does not depend on which gzip wrapper a mirror uses; "gz_md5" is of the .gz file exactly as served.
# MNIST: sha256 of the canonical IDX content (checked against a local copy of the original data).
# Fashion-MNIST: no IDX sha256 could be confirmed offline, so the .gz md5s that Zalando's release
# files have (as torchvision and others list them) are checked instead.
_CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": {"idx_sha256": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
        "train-labels-idx1-ubyte": {"idx_sha256": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
        "t10k-images-idx3-ubyte": {"idx_sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
        "t10k-labels-idx1-ubyte": {"idx_sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": {"gz_md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d"},
        "train-labels-idx1-ubyte": {"gz_md5": "25c81989df183df01b3e8a0aad5dffbe"},
        "t10k-images-idx3-ubyte": {"gz_md5": "bef4ecab320f06d8554ea6380940ec79"},
        "t10k-labels-idx1-ubyte": {"gz_md5": "bb300cfdad3c16e7a12a480ee83cd310"},
    },
}


def cache_dir(name: str) -> Path:
    """The folder downloads of dataset `name` go to: $XDG_CACHE_HOME/vaekit/<name> or ~/.cache/vaekit/<name>."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vaekit" / name


def find_idx_files(name: str, split: str, data_dir=None) -> tuple[Path, Path] | None:
    """(images, labels) files of `name`'s `split` from data_dir, then VAEKIT_DATA, then the cache; None if absent."""
    roots = []
    for what, root in (("data_dir", data_dir), ("VAEKIT_DATA", os.environ.get("VAEKIT_DATA") or None)):
        if root is not None:
            roots.append(Path(root).expanduser())
            if not roots[-1].is_dir():
                raise InputError(f"The {what} folder {root} does not exist; point it at the folder holding the {name} files.")
    for root in roots + [cache_dir(name)]:
        for folder in (root, root / name, root / _IDX_NAMES[name] / "raw"):  # the last is torchvision's layout
            found = [_idx_file(folder, stem) for stem in _IDX_STEMS[split]]
            if all(found):
                return found[0], found[1]
    return None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    return None


def _load_idx_dataset(name: str, split: str, data_dir, download: bool, limit: int | None) -> Dataset:
    files = find_idx_files(name, split, data_dir)
    if files is None:
        folder = cache_dir(name)
        wanted = " and ".join(f"{stem}.gz" for stem in _IDX_STEMS[split])
        if not download:
            raise InputError(
                f"No local {name} {split} files were found; put {wanted} in {folder} (or pass data_dir, or set "
                "VAEKIT_DATA to their folder), or allow download=True."
            )
        _download(name, split, folder, wanted)
        files = find_idx_files(name, split, data_dir)
    images, labels = (_read_idx(path, ndim) for path, ndim in zip(files, (3, 1)))
    if len(images) != len(labels):
        raise InputError(
            f"{files[0]} holds {len(images)} images but {files[1]} holds {len(labels)} labels; replace the mismatched file."
        )
    images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32)).div_(255).unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    return Dataset(x, torch.from_numpy(labels.astype(np.int64)), name, 10)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array in an IDX file (gzip-compressed or not), kept in memory while the file is unchanged."""
    stat = path.stat()
    return _read_idx_cached(str(path), stat.st_mtime_ns, stat.st_size, ndim)


@lru_cache(maxsize=4)
def _read_idx_cached(path: str, mtime_ns: int, size: int, ndim: int) -> np.ndarray:
    raw = Path(path).read_bytes()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path} is not a complete gzip file ({e}); replace it with the original file.") from None
    problem = _idx_problem(raw, ndim)
    if problem:
        raise InputError(f"{path} is corrupt: {problem}; replace it with the original file.")
    return _idx_array(raw, ndim)


def _idx_problem(raw: bytes, ndim: int) -> str | None:
    """Why `raw` is not an IDX file of unsigned bytes with `ndim` dimensions, or None if it is."""
    start = 4 + 4 * ndim
    if len(raw) < start or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        return f"its header is not that of a {ndim}-dimensional IDX file of unsigned bytes"
    expected = start + math.prod(struct.unpack(f">{ndim}I", raw[4:start]))
    if len(raw) != expected:
        return f"it holds {len(raw)} bytes where its header promises {expected}"
    return None


def _idx_array(raw: bytes, ndim: int) -> np.ndarray:
    start = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _download(name: str, split: str, folder: Path, wanted: str) -> None:
    """Fetch the `split` files of `name` into `folder`, each verified before it is written."""
    for stem, ndim in zip(_IDX_STEMS[split], (3, 1)):
        target = folder / f"{stem}.gz"
        if target.is_file():
            continue
        reasons = []
        for mirror in _MIRRORS[name]:
            url = mirror + target.name
            try:
                data = _fetch_url(url)
            except (OSError, http.client.HTTPException) as e:
                reasons.append(f"{url}: {e}")
                continue
            problem = _download_problem(data, _CHECKSUMS[name].get(stem, {}), ndim)
            if problem is None:
                try:
                    atomic_write_bytes(target, data)
                except OSError as e:
                    raise InputError(f"Could not write {target} ({e}); pass data_dir or set XDG_CACHE_HOME.") from None
                break
            reasons.append(f"{url}: {problem}")
        else:
            raise InputError(
                f"Could not download {name} file {target.name} ({reasons[-1]}); put {wanted} in {folder}, "
                "or set VAEKIT_DATA to a folder holding them."
            )


def _download_problem(data: bytes, checksums: dict, ndim: int) -> str | None:
    """Why downloaded gzip bytes are not the expected IDX file, or None if they are."""
    if "gz_md5" in checksums and hashlib.md5(data, usedforsecurity=False).hexdigest() != checksums["gz_md5"]:
        return "checksum mismatch (md5 of the .gz)"
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return "not a complete gzip file"
    if "idx_sha256" in checksums and hashlib.sha256(raw).hexdigest() != checksums["idx_sha256"]:
        return "checksum mismatch (sha256 of the IDX content)"
    return _idx_problem(raw, ndim)


def _fetch_url(url: str, timeout: float = 30.0) -> bytes:
    """The body of `url` (the only function here that touches the network)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


# ---- the user's files -------------------------------------------------------------------------


def _load_file(source) -> Dataset:
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    if suffix not in readers and (suffix or path.exists()):
        raise InputError(f"Cannot read {path}: the supported files are .npy, .npz and .csv.")
    if suffix not in readers:
        raise InputError(
            f"Unknown dataset {str(source)!r}; use one of {', '.join(DATASETS)}, or a path to a .npy, .npz or .csv file."
        )
    if not path.is_file():
        raise InputError(f"File {path} does not exist; check the path.")
    x, y = readers[suffix](path)
    return from_arrays(x, y, name=path.stem)


def _read_npy(path: Path):
    try:
        return np.load(path, allow_pickle=False), None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path} is not a readable .npy file of numbers ({e}).") from None


def _read_npz(path: Path):
    """Arrays `x` (or `X`) and `y`, else the first array and the second (if any)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            keys = arrays.files
            x_key = "x" if "x" in keys else "X" if "X" in keys else keys[0] if keys else None
            y_key = "y" if "y" in keys else None if x_key in ("x", "X") or len(keys) < 2 else keys[1]
            x = None if x_key is None else arrays[x_key]
            y = None if y_key is None else arrays[y_key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable .npz file of numbers ({e}).") from None
    if x is None:
        raise InputError(f"{path} holds no arrays; save the data as x (and labels as y).")
    return x, y


def _read_csv(path: Path):
    """A numeric table; a first row with any non-number is a header, whose `label` or `y` column holds labels."""
    with open(path, newline="") as f:
        header = [field.strip().strip('"').strip() for field in f.readline().split(",")]
    has_header = not all(_is_number(field) for field in header)
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=int(has_header), ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise InputError(f"{path} is not a numeric CSV table ({str(e).rstrip('.')}).") from None
    if table.shape[0] == 0:
        raise InputError(f"{path} has no data rows; add rows of numbers.")
    names = [field.lower() for field in header] if has_header else []
    for label in ("label", "y"):
        if label in names and table.shape[1] > 1:
            column = names.index(label)
            return np.delete(table, column, axis=1), table[:, column]
    return table, None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


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


def check_probabilities(x: torch.Tensor) -> None:
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):
        raise InputError("Binarization needs values in [0, 1] (probabilities); rescale the data first.")


# ---- folders of images -----------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(folder) -> list[Path]:
    """The PNG and JPEG files directly inside `folder`, sorted by name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give a folder of .png or .jpg images.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder} holds no .png or .jpg files; put the images directly in it.")
    return files


def load_image_folder(folder) -> Dataset:
    """A folder of PNG/JPEG files as greyscale images (N, 1, H, W) in [0, 1], in file-name order.

    Colour images are averaged over their channels (an alpha channel is dropped); every image
    must have the same size. The images carry no labels.
    """
    from matplotlib.image import imread

    images = []
    for path in image_files(folder):
        try:
            img = np.asarray(imread(path))
        except Exception as e:  # matplotlib/Pillow raise many kinds of errors for unreadable files
            raise InputError(f"Cannot read image {path} ({e}); remove or replace it.") from None
        img = img.astype(np.float32) / (255 if img.dtype.kind in "iu" and img.max() > 1 else 1)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)  # (H, W, C) -> (H, W); RGBA drops alpha
        if images and img.shape != images[0].shape:
            raise InputError(
                f"Image {path.name} is {img.shape[1]}x{img.shape[0]} pixels but {image_files(folder)[0].name} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}; resize the images to one size."
            )
        images.append(img)
    x = torch.from_numpy(np.stack(images)[:, None].clip(0, 1).astype(np.float32))  # (N, 1, H, W)
    return Dataset(x, None, Path(folder).expanduser().name, None)
