"""The `vaekit augment` and `vaekit denoise` commands (added to the parser by cli.build_parser).

    vaekit augment RUN --out augmented.npz --data labelled.npz --n-per-example 5
    vaekit augment RUN --out generated.npz --n-per-class 100          # a CVAE run
    vaekit augment RUN --out more.npz --data labelled.npz --unlabelled mnist --n-per-example 0
    vaekit denoise RUN --data mnist --noise gaussian:0.5 --out denoised/
    vaekit denoise RUN --input noisy.npy --out denoised/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .distributions import InputError

PICTURE_COLUMNS = 10  # images per row in the pictures


def _say(path, what):
    print(f"  {what:<16} {path}")


def _run_data(args, split):
    """The Dataset of --data (else the run's own data) in `split`, first --limit examples."""
    from .cli import _load_data, _run_info

    info = _run_info(Path(args.run)) if Path(args.run).is_dir() else {}
    source = args.data or info.get("data")
    if source is None:
        raise InputError("Give --data (a data set name or file): this model folder does not say what it was trained on.")
    return _load_data(source, split, args.data_dir or info.get("data_dir"), args.limit)


def _image_shape(model, x=None):
    shape = getattr(model, "image_shape", None)
    if shape is None and x is not None and x.dim() == 4:
        shape = tuple(x.shape[1:])
    return shape


def _positive(name, value):
    if value is not None and value < 1:
        raise InputError(f"{name} must be a positive integer, got {value}.")


# ---- augment ------------------------------------------------------------------------------
def cmd_augment(args):
    from .applications.augment import augment, save_npz
    from .io import load
    from .plots import save_image_grid

    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise InputError(f"--out must name a .npz file (e.g. augmented.npz), not {args.out}.")
    if args.n_per_example < (0 if args.unlabelled else 1):
        raise InputError(f"--n-per-example must be a positive integer (0 allowed with --unlabelled), got {args.n_per_example}.")
    _positive("--n-pseudo-per-class", args.n_pseudo_per_class)
    _positive("--n-per-class", args.n_per_class)
    _positive("--limit", args.limit)
    model = load(args.run)
    x = y = unlabelled = None
    if args.n_per_class is None:
        data = _run_data(args, args.split)
        x, y = data.x, data.y
    elif args.data or args.include_original or args.unlabelled:
        raise InputError("--n-per-class generates from the CVAE's prior; leave out --data, --unlabelled and "
                         "--include-original, or use --n-per-example to augment real examples.")
    if args.unlabelled:
        if y is None:
            raise InputError("--unlabelled needs labelled --data to spread labels from; give a data set with labels.")
        from .cli import _load_data, _run_info

        info = _run_info(Path(args.run)) if Path(args.run).is_dir() else {}
        unlabelled = _load_data(args.unlabelled, "train", args.data_dir or info.get("data_dir"), None).x
    x_new, y_new = augment(model, x, y, n_per_example=args.n_per_example, n_per_class=args.n_per_class,
                           temperature=args.temperature, decoded=args.decoded, seed=args.seed,
                           unlabelled=unlabelled, n_pseudo_per_class=args.n_pseudo_per_class)
    if args.include_original:
        x_new = torch.cat([x.reshape(len(x), *x_new.shape[1:]), x_new])
        y_new = None if y is None else torch.cat([y, y_new])
    save_npz(out, x_new, y_new)
    made = len(x_new) - (len(x) if args.include_original else 0)
    how = (f"{args.n_per_class} per class from the CVAE" if args.n_per_class is not None
           else f"{args.n_per_example} posterior samples around each of {len(x)} examples")
    if unlabelled is not None:
        how += f", and {made - args.n_per_example * len(x)} pseudo-labelled of {len(unlabelled)} unlabelled examples"
    print(f"Made {made} new examples ({how}, temperature {args.temperature:g})"
          + (f" plus the {len(x)} originals" if args.include_original else "") + ".")
    print("Wrote:")
    _say(out, "data set")
    shape = _image_shape(model, x_new)
    if shape is None:
        print("  (no picture: the examples are table rows, not images)")
        return
    picture = out.with_suffix(".png")
    new_x = x_new[len(x):] if args.include_original else x_new
    new_y = None if y_new is None else (y_new[len(x):] if args.include_original else y_new)
    rows, labels = _rows_per_class(new_x, new_y)
    _say(save_image_grid(rows, picture, image_shape=shape, row_labels=labels,
                         title="augmented examples, one row per class"), "picture")


def _rows_per_class(x, y):
    """A grid with one row of up to PICTURE_COLUMNS examples per class, spread evenly over the class
    (so over different source examples), or just the first few when there are no labels."""
    if y is None:
        return x[:PICTURE_COLUMNS * 4], None
    rows, labels = [], []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        spread = torch.linspace(0, len(members) - 1, min(PICTURE_COLUMNS, len(members))).round().long()
        pick = x[members[spread]]
        pad = torch.zeros((PICTURE_COLUMNS - len(pick), *pick.shape[1:]), dtype=pick.dtype)  # blank cells
        rows.append(torch.cat([pick, pad]))
        labels.append(str(c))
    return torch.stack(rows), labels  # (classes, PICTURE_COLUMNS, ...)


# ---- denoise ------------------------------------------------------------------------------
def cmd_denoise(args):
    from .applications.denoise import denoise, psnr
    from .corruption import corrupt, parse_corruption
    from .data import from_arrays
    from .io import atomic_write_bytes, load
    from .plots import save_image_grid

    if args.input and args.data:
        raise InputError("Give either --input (your noisy images) or --data (clean data to corrupt), not both.")
    _positive("--limit", args.limit)
    noise = args.noise
    if noise is None and not args.input:
        noise = "gaussian:0.5"
    if noise:
        parse_corruption(noise)
    model = load(args.run)
    if args.input:
        path = Path(args.input)
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise InputError(f"--input must be an existing .npy file of images, not {args.input}.")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(f"{path} is not a readable .npy file of numbers ({e}).") from None
        data = from_arrays(arr, name=path.stem)
        data = data if args.limit is None else data.subset(slice(0, args.limit))
    else:
        data = _run_data(args, args.split)
    given, y = data.x, (data.y if getattr(model, "conditional", False) else None)
    if getattr(model, "conditional", False) and y is None:
        raise InputError("This is a conditional model: denoise labelled data with --data (a data set with labels).")
    if noise:
        clean = given
        noisy = corrupt(given, noise, torch.Generator().manual_seed(args.seed))
    else:
        clean, noisy = None, given  # --input without --noise: the images are already noisy
    cleaned = denoise(model, noisy, y)
    out = Path(args.out) if args.out else Path(args.run)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (("noisy.npy", noisy), ("denoised.npy", cleaned)):
        buf = __import__("io").BytesIO()
        np.save(buf, np.asarray(array, dtype=np.float32))
        atomic_write_bytes(out / name, buf.getvalue())
    if clean is not None:
        print(f"PSNR over {len(clean)} images (mean of per-image dB), noise {noise}:")
        print(f"  noisy input    {psnr(clean, noisy):6.2f} dB")
        print(f"  denoised       {psnr(clean, cleaned):6.2f} dB")
    print("Wrote:")
    _say(out / "noisy.npy", "noisy")
    _say(out / "denoised.npy", "denoised")
    shape = _image_shape(model, given)
    if shape is None:
        print("  (no picture: the examples are table rows, not images)")
        return
    k = min(PICTURE_COLUMNS, len(noisy))
    rows = [noisy[:k], cleaned[:k]] + ([clean[:k]] if clean is not None else [])
    labels = ["noisy", "denoised"] + (["clean"] if clean is not None else [])
    grid = torch.stack([r.reshape(k, -1) for r in rows])  # (rows, k, C*H*W)
    _say(save_image_grid(grid, out / "denoising.png", image_shape=shape, row_labels=labels,
                         title=f"denoising ({noise})" if noise else "denoising"), "picture")


# ---- the parsers --------------------------------------------------------------------------
def add_app_parsers(sub) -> None:
    """Add `augment` and `denoise` to the `vaekit` subcommands."""
    p = sub.add_parser(
        "augment", help="new labelled examples from a trained VAE, written as a .npz data set",
        description="Write new labelled examples to a .npz file (arrays x and y) that `vaekit train --data` "
                    "and vaekit.data.load_dataset read. By default: posterior samples around each example "
                    "of --data (its labels copied); with --unlabelled also unlabelled examples labelled by "
                    "spreading the labels of --data over the VAE's latent space; with --n-per-class: "
                    "class-conditional samples from a CVAE. "
                    "A picture with one row per class is written beside the file.")
    p.add_argument("run", help="a run folder (from vaekit train), a saved model folder, or a pretrained name")
    p.add_argument("--out", required=True, help="the .npz file to write (its picture goes to the same name .png)")
    p.add_argument("--data", help="the examples to augment: a data set name or a .npy/.npz/.csv file "
                                  "(default: the run's own data)")
    p.add_argument("--data-dir", help="folder holding the data files (else $VAEKIT_DATA, then the cache)")
    p.add_argument("--split", choices=["train", "test"], default="train", help="split of a named data set (default train)")
    p.add_argument("--limit", type=int, help="augment only the first N examples")
    p.add_argument("--n-per-example", type=int, default=5, help="posterior samples per example (default 5)")
    p.add_argument("--n-per-class", type=int, help="generate this many per class from a CVAE instead")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="scale of the latent noise: <1 stays closer to the source, >1 varies more (default 1)")
    p.add_argument("--decoded", choices=["mean", "sample", "detail"], default="mean",
                   help="what to keep of p(x|z): its mean (default), a sample, or 'detail': the original "
                        "plus the change the latent sample makes")
    p.add_argument("--unlabelled", help="unlabelled examples (a data set name or file, train split) the VAE has "
                                        "seen: the ones it is surest about are added with labels spread from --data "
                                        "over its latent space (the few-labels case)")
    p.add_argument("--n-pseudo-per-class", type=int, default=1000,
                   help="pseudo-labelled examples per class with --unlabelled (default 1000)")
    p.add_argument("--include-original", action="store_true", help="put the original examples first in the file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser(
        "denoise", help="clean corrupted images: encode, then decode the posterior mean",
        description="Denoise images with a trained VAE (a denoising VAE from `vaekit train --corrupt SPEC` "
                    "does best). With --data the clean images are corrupted by --noise and PSNRs are printed; "
                    "with --input your own noisy images (.npy) are cleaned as they are.")
    p.add_argument("run", help="a run folder (from vaekit train), a saved model folder, or a pretrained name")
    p.add_argument("--out", help="folder for denoised.npy, noisy.npy and denoising.png (default: the run folder)")
    p.add_argument("--data", help="clean data to corrupt and denoise: a data set name or a file (default: the run's data)")
    p.add_argument("--data-dir", help="folder holding the data files (else $VAEKIT_DATA, then the cache)")
    p.add_argument("--split", choices=["train", "test"], default="test", help="split of a named data set (default test)")
    p.add_argument("--input", help="a .npy file of already noisy images to denoise as they are")
    p.add_argument("--noise", help="corruption KIND:LEVEL, e.g. gaussian:0.5, salt-pepper:0.2, mask:0.3 "
                                   "(default gaussian:0.5 with --data; none with --input)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.set_defaults(func=cmd_denoise)
