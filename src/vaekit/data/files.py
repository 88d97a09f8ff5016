"""The user's own data: .npy, .npz and .csv files, and folders of PNG/JPEG images.

An .npz file holds `x` (or `X`), optionally labels `y`, and for disentanglement metrics the
generative factors of each example: `factors` (N, K) integer indices with `factor_names` (K strings).
"""

from __future__ import annotations

import io
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .dataset import DATASETS, Dataset, from_arrays

MAX_PIXELS = 1 << 26  # 64 M pixels per image (8192 x 8192)
MAX_GZIP_RATIO = 1000  # compressed .npz members expand at most this much (real data: 2-20 times)


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
    x, y, *factors = readers[suffix](path)  # an .npz adds its factors and their names (or None)
    return from_arrays(x, y, path.stem, *factors)


def _read_npy(path: Path):
    try:
        with open(path, "rb") as f:
            _check_npy_header(f, path.stat().st_size, path)
        return np.load(path, allow_pickle=False), None
    except InputError:
        raise
    except Exception as e:  # numpy raises many kinds for damaged files (ValueError, EOFError, TokenError, ...)
        raise InputError(f"{path} is not a readable .npy file of numbers ({type(e).__name__}: {e}).") from None


def _check_npy_header(f, stored: int, where) -> None:
    """Refuse an .npy stream whose header declares more data than the `stored` bytes hold."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"unknown .npy format version {version}")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise InputError(f"{where} holds Python objects, not numbers; save a numeric array.")
    declared = math.prod(shape) * dtype.itemsize
    if declared > stored:
        raise InputError(f"{where} declares an array of shape {shape} ({declared:,} bytes) but holds only "
                         f"{stored:,} bytes; it is truncated or corrupt.")


def _read_npz(path: Path):
    """Arrays `x` (or `X`) and `y`, else the first array and the second (if any)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():  # each member's declared size, checked before it is read
                if info.file_size > MAX_GZIP_RATIO * max(info.compress_size, 1) + (1 << 20):
                    raise InputError(f"{path} member {info.filename} expands {info.file_size:,} bytes from "
                                     f"{info.compress_size:,}; refusing what looks like a decompression bomb.")
                with archive.open(info) as member:
                    _check_npy_header(member, info.file_size, f"{path} ({info.filename})")
        with np.load(path, allow_pickle=False) as arrays:
            keys = arrays.files
            x_key = "x" if "x" in keys else "X" if "X" in keys else keys[0] if keys else None
            y_key = "y" if "y" in keys else None if x_key in ("x", "X") or len(keys) < 2 else keys[1]
            x = None if x_key is None else arrays[x_key]
            y = None if y_key is None or y_key in ("factors", "factor_names") else arrays[y_key]
            factors = arrays["factors"] if "factors" in keys else None
            names = arrays["factor_names"] if "factor_names" in keys else None
    except InputError:
        raise
    except Exception as e:  # BadZipFile, NotImplementedError (compression), ValueError, EOFError, ...
        raise InputError(f"{path} is not a readable .npz file of numbers ({type(e).__name__}: {e}).") from None
    if x is None:
        raise InputError(f"{path} holds no arrays; save the data as x (and labels as y).")
    return x, y, factors, names


def _read_csv(path: Path):
    """A numeric table; a first row with any non-number is a header, whose `label` or `y` column holds labels.
    The text may be UTF-8 (with or without a byte-order mark) or Latin-1 / Windows-1252 (Excel exports)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    lines = text.splitlines()
    if not lines:
        raise InputError(f"{path} is empty; add rows of numbers.")
    header = [field.strip().strip('"').strip() for field in lines[0].split(",")]
    has_header = not all(_is_number(field) for field in header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(io.StringIO("\n".join(lines[int(has_header):])), delimiter=",", ndmin=2,
                               dtype=np.float64)
    except ValueError as e:
        raise InputError(f"{path} is not a numeric CSV table ({str(e).rstrip('.')}).") from None
    except Exception as e:
        raise InputError(f"{path} is not a numeric CSV table ({type(e).__name__}: {e}).") from None
    if table.shape[0] == 0:
        raise InputError(f"{path} has no data rows; add rows of numbers.")
    if has_header and len(header) != table.shape[1]:
        raise InputError(f"{path} has {len(header)} column names in its header but {table.shape[1]} values per row; "
                         "make them match.")
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
    must have the same size, at most MAX_PIXELS pixels (checked from the file's header, before
    the pixels are decoded). The images carry no labels.
    """
    images = []
    for path in image_files(folder):
        img = _read_image(path)
        if images and img.shape != images[0].shape:
            raise InputError(
                f"Image {path.name} is {img.shape[1]}x{img.shape[0]} pixels but {image_files(folder)[0].name} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}; resize the images to one size."
            )
        images.append(img)
    x = torch.from_numpy(np.stack(images)[:, None].clip(0, 1).astype(np.float32))  # (N, 1, H, W)
    return Dataset(x, None, Path(folder).expanduser().name, None)


def _read_image(path: Path) -> np.ndarray:
    """One image as greyscale values in [0, 1], (H, W) float32."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InputError(f"Image {path} declares {width}x{height} pixels, more than {MAX_PIXELS:,}; "
                                 "resize it (or remove it from the folder).")
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img, dtype=np.float32) / 65535
            if img.mode == "F":
                return np.asarray(img, dtype=np.float32)
            if img.mode in ("1", "L", "LA"):
                return np.asarray(img.convert("L"), dtype=np.float32) / 255
            return np.asarray(img.convert("RGB"), dtype=np.float32).mean(axis=2) / 255  # RGBA drops alpha
    except InputError:
        raise
    except Exception as e:  # Pillow raises many kinds for damaged files (OSError, SyntaxError, ValueError, ...)
        raise InputError(f"Cannot read image {path} ({type(e).__name__}: {e or 'unreadable'}); remove or replace it.") from None
