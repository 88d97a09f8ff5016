"""The user's own data: .npy, .npz and .csv files, and folders of PNG/JPEG images."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .dataset import DATASETS, Dataset, from_arrays


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
