"""dSprites, drawn procedurally: 2-D shapes over the factor grid of Matthey et al. (2017).

Five factors, 3 x 6 x 40 x 32 x 32 = 737,280 binary images, one per combination, in the original
order (the last factor varies fastest):

    shape        square, ellipse, heart
    scale        6 values in [0.5, 1]
    orientation  40 values in [0, 2 pi)   (the original has 40 in [0, 2 pi], repeating 0 as 2 pi)
    x, y         32 values each in [0, 1] (the shape's centre moves over [0.18, 0.82] of the canvas)

Each pixel is white when its centre lies inside the shape (no anti-aliasing). The drawing follows
the original's factors but not its pixels: the shapes' outlines, sizes and margins are vaekit's own,
so numbers on this set are comparable with each other, not with papers' dSprites numbers pixel for
pixel. The grid is drawn once per resolution and cached (bits packed, about 94 MB at 32 x 32,
377 MB at 64 x 64) in `cache_dir("dsprites")`.

No official split exists: "train" is the whole grid less a fixed 1 in 20 (numpy seed 0), "test"
those 36,864 held-out combinations; "all" is every image (what disentanglement metrics sample from).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..errors import InputError
from .dataset import Dataset

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40) * (2 * math.pi / 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
RADIUS = 0.125  # half the square's side at scale 1, as a fraction of the canvas
MARGIN = 0.18  # the centre stays this far from the edges: a rotated square at scale 1 reaches 0.177
RESOLUTIONS = (16, 32, 64, 128)
TEST_SHARE = 20  # one combination in TEST_SHARE is held out as "test"


def factor_values() -> dict[str, np.ndarray]:
    """Each factor's values by name (shape: 0, 1, 2 for square, ellipse, heart)."""
    return {"shape": np.arange(3), "scale": SCALES, "orientation": ORIENTATIONS, "x": POSITIONS, "y": POSITIONS}


def all_factors() -> np.ndarray:
    """The factor indices of every image, (737280, 5) int64, in the grid's order."""
    grids = np.meshgrid(*(np.arange(n) for n in FACTOR_SIZES), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether the points (u, v) of the shape's own frame (unit size, v up) lie inside it."""
    if shape == 0:  # a square of side 2
        return torch.maximum(u.abs(), v.abs()) <= 1
    if shape == 1:  # an ellipse with semi-axes 1.3 and 0.65
        return u * u / 1.69 + v * v / 0.4225 <= 1
    hu, hv = 1.15 * u, 1.15 * v + 0.15  # the heart (x^2 + y^2 - 1)^3 <= x^2 y^3, centred and scaled to ~2 wide
    r = hu * hu + hv * hv - 1
    return r * r * r <= hu * hu * hv * hv * hv


def draw(shape: int, scale: float, orientation: float, x, y, resolution: int = 64) -> torch.Tensor:
    """Binary images (len(x), len(y), R, R) of one shape, scale and orientation at every centre x[i], y[j]."""
    centres = MARGIN + (1 - 2 * MARGIN) * torch.as_tensor(np.asarray(x, dtype=np.float64))
    rows = MARGIN + (1 - 2 * MARGIN) * torch.as_tensor(np.asarray(y, dtype=np.float64))
    pixel = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution  # pixel centres in [0, 1]
    dx = (pixel[None, :] - centres[:, None])[:, None, None, :]  # (X, 1, 1, R): columns right of the centre
    dy = (rows[:, None] - pixel[None, :])[None, :, :, None]  # (1, Y, R, 1): rows above it (v points up)
    cos, sin, size = math.cos(orientation), math.sin(orientation), RADIUS * scale
    u = (cos * dx + sin * dy) / size  # rotate by -orientation into the shape's frame, unit size
    v = (-sin * dx + cos * dy) / size
    return _inside(shape, u, v)  # (X, Y, R, R)


def _render(resolution: int) -> np.ndarray:
    """Every image of the grid, bits packed per image: (737280, ceil(R * R / 8)) uint8."""
    per_image = (resolution * resolution + 7) // 8
    out = np.empty((math.prod(FACTOR_SIZES), per_image), dtype=np.uint8)
    block = FACTOR_SIZES[3] * FACTOR_SIZES[4]  # the images of one (shape, scale, orientation)
    start = 0
    for shape in range(3):
        for scale in SCALES:
            for orientation in ORIENTATIONS:
                images = draw(shape, scale, orientation, POSITIONS, POSITIONS, resolution)  # (X, Y, R, R)
                flat = images.reshape(block, resolution * resolution).numpy()  # (X * Y, R * R), y fastest
                out[start:start + block] = np.packbits(flat, axis=1)
                start += block
    return out


def packed_images(resolution: int = 64) -> np.ndarray:
    """The whole grid at `resolution`, bits packed (see _render): from the cache, else drawn and cached."""
    from .idx import cache_dir

    if resolution not in RESOLUTIONS:
        raise InputError(f"dSprites resolution must be one of {', '.join(map(str, RESOLUTIONS))}, not {resolution!r}.")
    path = cache_dir("dsprites") / f"dsprites-{resolution}.npy"
    shape = (math.prod(FACTOR_SIZES), (resolution * resolution + 7) // 8)
    if path.is_file():
        try:
            packed = np.load(path, allow_pickle=False, mmap_mode="r")
            if packed.shape == shape and packed.dtype == np.uint8:
                return packed
        except (ValueError, OSError):
            pass  # a damaged cache is drawn again
    packed = _render(resolution)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = io.BytesIO()
        np.save(stream, packed, allow_pickle=False)
        atomic_write_bytes(path, stream.getvalue())
    except OSError:
        pass  # no writable cache: the grid is drawn again next time
    return packed


def split_indices(split: str) -> np.ndarray:
    """The grid positions of `split`: 'train', 'test' (a fixed 1 in TEST_SHARE) or 'all'."""
    n = math.prod(FACTOR_SIZES)
    if split == "all":
        return np.arange(n)
    held_out = np.random.default_rng(0).permutation(n)[: n // TEST_SHARE]
    mask = np.zeros(n, dtype=bool)
    mask[held_out] = True
    return np.flatnonzero(mask if split == "test" else ~mask)


def load_dsprites(split: str = "train", resolution: int = 64, keep: dict | None = None,
                  limit: int | None = None) -> Dataset:
    """dSprites at `resolution` (16, 32, 64 or 128) as a Dataset with `factors` and shape labels `y`.

    keep: factor name -> the indices of that factor to keep (a list or range), e.g.
    {"orientation": range(0, 40, 2), "x": range(0, 32, 2), "y": range(0, 32, 2)}: a smaller grid
    for short experiments. limit: only the first `limit` images (in grid order). The full grid at
    64 x 64 is 12 GB as float32; at 32 x 32, 3 GB.
    """
    if split not in ("train", "test", "all"):
        raise InputError(f"Unknown split {split!r} for dSprites; use 'train', 'test' or 'all'.")
    index = split_indices(split)
    factors = all_factors()[index]
    for name, kept in (keep or {}).items():
        if name not in FACTOR_NAMES:
            raise InputError(f"dSprites has no factor {name!r}; its factors are {', '.join(FACTOR_NAMES)}.")
        kept = np.asarray(list(kept), dtype=np.int64)
        size = FACTOR_SIZES[FACTOR_NAMES.index(name)]
        if kept.size == 0 or kept.min() < 0 or kept.max() >= size:
            raise InputError(f"keep[{name!r}] must list indices 0..{size - 1} of that factor, not {kept.tolist()}.")
        chosen = np.isin(factors[:, FACTOR_NAMES.index(name)], kept)
        index, factors = index[chosen], factors[chosen]
    index, factors = index[:limit], factors[:limit]  # only the first `limit` are unpacked
    packed = packed_images(resolution)
    bits = np.unpackbits(packed[index], axis=1, count=resolution * resolution)  # (N, R * R)
    x = torch.from_numpy(bits.reshape(-1, 1, resolution, resolution)).to(torch.float32)  # (N, 1, R, R)
    labels = torch.from_numpy(factors[:, 0].copy())
    name = "dsprites" if resolution == 64 else f"dsprites-{resolution}"
    return Dataset(x, labels, name, 3, factors=torch.from_numpy(factors), factor_names=FACTOR_NAMES)


def factor_grid(resolution: int = 64, steps: int = 8) -> tuple[torch.Tensor, list[str]]:
    """A picture of the factors: for each shape, one row per other factor moving over `steps` of its
    values with the rest at their middle values; images (3 * 4, steps, 1, R, R) and row labels."""
    values = factor_values()
    rows, labels = [], []
    for shape in range(3):
        for k in range(1, 5):
            row = []
            for i in np.linspace(0, FACTOR_SIZES[k] - 1, steps).round().astype(int):
                f = [shape, 5, 0, 15, 15]  # scale 1, upright, near the centre
                f[k] = i
                image = draw(shape, values["scale"][f[1]], values["orientation"][f[2]], values["x"][[f[3]]],
                             values["y"][[f[4]]], resolution)[0, 0]  # (R, R)
                row.append(image[None].float())
            rows.append(torch.stack(row))
            labels.append(f"{SHAPES[shape]}: {FACTOR_NAMES[k]}")
    return torch.stack(rows), labels
