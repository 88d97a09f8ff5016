"""MNIST and Fashion-MNIST from their IDX files: lookup (data_dir, $VAEKIT_DATA, the cache) and a
verified download from the canonical mirrors."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

MAX_IDX_BYTES = 1 << 31  # 2 GiB: forty times MNIST's training images
MAX_GZIP_RATIO = 50  # MNIST's files expand 2-8 times; a bomb, thousands of times
from ..atomic import atomic_write_bytes
from .dataset import Dataset


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
        every = [f"{stem}.gz" for part in ("train", "test") for stem in _IDX_STEMS[part]]
        wanted = ", ".join(every[:-1]) + " and " + every[-1]  # both splits: one fix serves every command
        if not download:
            raise InputError(
                f"No local {name} {split} files were found; put {wanted} in {folder} (or point --data-dir / data_dir, "
                "or $VAEKIT_DATA, at their folder), or allow download=True."
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
    raw = _read_bounded(Path(path), ndim, size)
    problem = _idx_problem(raw, ndim)
    if problem:
        raise InputError(f"{path} is corrupt: {problem}; replace it with the original file.")
    return _idx_array(raw, ndim)


def _read_bounded(path: Path, ndim: int, size: int) -> bytes:
    """The file's bytes (decompressed), reading no more than its header declares: a gzip bomb or a
    header promising gigabytes is refused before the memory is taken."""
    start = 4 + 4 * ndim
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(start)
            if len(head) < start:
                return head  # _idx_problem names it
            declared = start + math.prod(struct.unpack(f">{ndim}I", head[4:start]))
            limit = MAX_IDX_BYTES if path.suffix != ".gz" else min(MAX_IDX_BYTES, MAX_GZIP_RATIO * size + (1 << 20))
            if declared > limit:
                raise InputError(f"{path} declares {declared:,} bytes of images, more than such a file can hold "
                                 f"({limit:,}); replace it with the original file.")
            return head + f.read(declared - start + 1)  # one byte more shows a file longer than declared
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path} is not a complete {'gzip' if path.suffix == '.gz' else 'IDX'} file ({e}); "
                         "replace it with the original file.") from None


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
                "or give --data-dir (data_dir) or $VAEKIT_DATA a folder holding them."
            )


def _bounded_gunzip(data: bytes) -> bytes:
    """gzip.decompress of downloaded bytes, refusing more than MAX_GZIP_RATIO times their size."""
    import io

    limit = MAX_GZIP_RATIO * len(data) + (1 << 20)
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        out = f.read(limit + 1)
    if len(out) > limit:
        raise OSError("it expands far more than an IDX file can")
    return out


def _download_problem(data: bytes, checksums: dict, ndim: int) -> str | None:
    """Why downloaded gzip bytes are not the expected IDX file, or None if they are."""
    if "gz_md5" in checksums and hashlib.md5(data, usedforsecurity=False).hexdigest() != checksums["gz_md5"]:
        return "checksum mismatch (md5 of the .gz)"
    try:
        raw = _bounded_gunzip(data)
    except (OSError, EOFError, zlib.error) as e:
        return f"not a complete gzip file ({e})"
    if "idx_sha256" in checksums and hashlib.sha256(raw).hexdigest() != checksums["idx_sha256"]:
        return "checksum mismatch (sha256 of the IDX content)"
    return _idx_problem(raw, ndim)


def _fetch_url(url: str, timeout: float = 30.0) -> bytes:
    """The body of `url` (the only function here that touches the network)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()
