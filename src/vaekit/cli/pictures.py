"""`vaekit sample`, `reconstruct`, `interpolate` and `traverse`: pictures of a trained model."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..runs import demo_labels, from_model_space, save_examples, save_table_reconstructions
from ..runs import _is_table
from . import args as flags
from .common import RUN_FILE, out_dir, run_data, say


def save_arrays(path, x, y=None) -> Path:
    """Samples as .npy (x) or .npz (x and y), written atomically."""
    import io

    import numpy as np

    from ..atomic import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    if path.suffix == ".npy":
        np.save(buf, x.cpu().numpy())
    elif path.suffix == ".npz":
        arrays = {"x": x.cpu().numpy(), **({"y": y.cpu().numpy()} if y is not None else {})}
        np.savez(buf, **arrays)
    else:
        raise InputError(f"--save {path}: give a .npy or .npz file name.")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _model(args):
    from ..loading import load

    return load(args.run, prior=getattr(args, "prior", "saved"))


def _examples(args, n):
    """n examples (and labels) from --data, else the data the run was trained on (test split)."""
    data = run_data(args, "test", limit=n)
    return data.x, data.y


def _check_label(model, label) -> None:
    if label is not None and not model.conditional:
        raise InputError(f"--label applies to conditional models (--model cvae); this {model.model_type!r} model "
                         "takes no labels.")


def cmd_sample(args):
    from ..latent import sample

    if args.n < 1:
        raise InputError(f"--n must be 1 or more, got {args.n}.")
    model = _model(args)
    _check_label(model, args.label)
    torch.manual_seed(args.seed)
    y = demo_labels(model, args.n, args.label)
    if model.capabilities.latent == "vector":
        x = sample(model, args.n, y, temperature=args.temperature)  # its arguments checked
    else:
        with torch.no_grad():
            x = model.sample(args.n, y, temperature=args.temperature)
    x = from_model_space(x, args.run)
    if args.save:
        say(save_arrays(args.save, x, y), "arrays")
    fitted = getattr(model, "fitted_prior", None)
    source = f"the fitted {fitted.model_type} prior" if fitted is not None else "the prior"
    name = f"sample_seed{args.seed}" + (f"_t{args.temperature:g}" if args.temperature != 1 else "") + \
        (f"_{args.prior}" if args.prior != "saved" else "")
    say(save_examples(model, x, out_dir(args) / f"{name}.png", title=f"{args.n} samples from {source}"), "samples")


def cmd_reconstruct(args):
    from ..plots import save_image_grid

    if args.n < 1:
        raise InputError(f"--n must be 1 or more, got {args.n}.")
    model = _model(args)
    x, y = _examples(args, args.n)
    y = y if model.conditional else None
    with torch.no_grad():
        recon = model.reconstruct(x, y)
    path = out_dir(args) / "reconstruct.png"
    if _is_table(model):
        say(save_table_reconstructions(model.as_batch(x), recon, path), "reconstructions")
        return
    rows = torch.stack([model.as_batch(x).reshape(recon.shape), recon])
    say(save_image_grid(rows, path, image_shape=getattr(model, "image_shape", None),
                        title="top: data, bottom: reconstruction"), "reconstructions")


def cmd_interpolate(args):
    from ..latent import interpolate
    from ..plots import save_image_grid

    model = _model(args)
    x, y = _examples(args, 2 * args.pairs)
    if len(x) < 2:
        raise InputError("Interpolation needs at least two examples.")
    cond = model.conditional
    strips = torch.stack([
        interpolate(model, x[2 * i], x[2 * i + 1], steps=args.steps, method=args.method,
                    y=y[2 * i] if cond else None)
        for i in range(len(x) // 2)
    ])
    path = out_dir(args) / f"interpolation_{args.method}.png"
    say(save_image_grid(strips, path, image_shape=getattr(model, "image_shape", None)), "interpolation")


def cmd_traverse(args):
    from ..latent import active_dims, traverse
    from ..plots import save_image_grid

    model = _model(args)
    _check_label(model, args.label)
    x = None
    y = demo_labels(model, 1, args.label)
    if args.data or (Path(args.run) / RUN_FILE).exists():
        xs, ys = _examples(args, 1)
        x, y = xs[0], (ys[:1] if y is not None else None)
    dims, kls = args.dims, None
    if not dims and model.capabilities.posterior != "point" and (args.data or (Path(args.run) / RUN_FILE).exists()):
        data = run_data(args, "test", limit=500)  # the most used dimensions, not the first ones
        dims, kls = active_dims(model, data.x, k=min(8, model.latent_dim), y=data.y if model.conditional else None,
                                with_kl=True)
    values = torch.linspace(-args.range, args.range, args.steps)
    grid = traverse(model, x, dims=dims or None, values=values, y=y)
    shown = dims or list(range(min(10, model.latent_dim)))
    rows = ", ".join(f"{d} (KL {k:.2f})" for d, k in zip(shown, kls)) if kls else ", ".join(map(str, shown))
    path = out_dir(args) / "traversal.png"
    say(save_image_grid(grid, path, image_shape=getattr(model, "image_shape", None),
                        title=f"rows: latent dimensions {rows}; values {-args.range:g} to {args.range:g}"), "traversal")


def add_parsers(sub) -> None:
    """Add the picture commands to the `vaekit` subcommands."""
    def common(p, with_data: bool):
        flags.run(p)
        flags.out(p, "folder for the picture (default: the run folder)")
        flags.seed(p)
        if with_data:
            flags.data(p, f"data set name ({flags.DATA_SOURCES}) (default: the run's own data, test split)")
            flags.data_dir(p)

    p = sub.add_parser("sample", help="draw new examples from the prior")
    common(p, with_data=False)
    p.add_argument("--n", type=int, default=64, help="how many (default 64)")
    flags.label(p, "class to generate (conditional models)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the prior noise (default 1)")
    flags.prior(p)
    p.add_argument("--save", metavar="FILE", help="also write the samples as arrays: FILE.npy, or FILE.npz (x, and y "
                                                  "for a conditional model)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="encode and decode examples, side by side")
    common(p, with_data=True)
    p.add_argument("--n", type=int, default=16, help="how many examples (default 16)")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="walk the latent space between pairs of examples")
    common(p, with_data=True)
    p.add_argument("--pairs", type=int, default=4, help="how many pairs (default 4)")
    p.add_argument("--steps", type=int, default=10, help="images per strip (default 10)")
    p.add_argument("--method", choices=["linear", "slerp"], default="linear", help="path (default linear)")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("traverse", help="vary one latent dimension at a time")
    common(p, with_data=True)
    p.add_argument("--dims", type=int, nargs="*", help="which dimensions (default: the 8 with the most KL on the data)")
    p.add_argument("--range", type=float, default=3.0, help="values from -R to R (default 3)")
    p.add_argument("--steps", type=int, default=9, help="values per dimension (default 9)")
    flags.label(p, "class to condition on (conditional models)")
    p.set_defaults(func=cmd_traverse)
