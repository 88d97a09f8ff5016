"""The `vaekit` command: train a VAE, then sample, reconstruct, interpolate and traverse it.

Every command writes its pictures into a run folder and prints their paths. Bad input ends with
one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from . import distributed
from .distributions import InputError
from .io import atomic_write_bytes
from .models.registry import build_model, cli_options, families, family

from .cli_common import RUN_FILE
from .cli_common import load_data as _load_data
from .cli_common import run_data
from .cli_common import run_info as _run_info
from .cli_common import say as _say


# ---- helpers ------------------------------------------------------------------------------


def _examples(args, model, n):
    """n examples (and labels) from --data, else the data the run was trained on (test split)."""
    data = run_data(args, "test", limit=n)
    return data.x, data.y


def _out_dir(args) -> Path:
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if (run / "model").is_dir() else Path("."))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _labels_for(model, n, label):
    if not model.conditional:
        return None
    if label is not None:
        return torch.full((n,), label)
    return torch.arange(n) % model.config.num_classes


# ---- train --------------------------------------------------------------------------------
def _choose_out(args) -> Path:
    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not (args.resume or args.overwrite):
            raise InputError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it.")
        return out
    if args.resume:
        raise InputError("--resume needs --out RUN_FOLDER, the run to continue.")
    base = Path("runs") / f"{Path(args.data).stem}-{args.model}"
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


# Likelihood defaults where the data call for another than the Bernoulli: the 8x8 digits have 17
# grey levels, under which a Bernoulli decoder stays blurry; a Gaussian with sigma 0.2 is sharp.
DEFAULT_LIKELIHOOD = {"digits": ("gaussian", 0.2)}


def _model_options(args) -> dict:
    """Constructor options of the chosen family that were given as flags (the family declares them)."""
    options = {}
    for opt in family(args.model).options:
        value = getattr(args, opt.dest, None)
        if value is not None:
            options[opt.field] = value
    return options


def _check_family_flags(args) -> None:
    """A family flag given for a family that does not take it is an error, not silently ignored."""
    for flag, (opt, names) in cli_options().items():
        if getattr(args, opt.dest, None) is not None and args.model not in names:
            raise InputError(f"{flag} applies to --model {' or '.join(names)}, not to --model {args.model}.")


def cmd_train(args):
    from .data import train_val_split
    from .train import Trainer, TrainConfig

    rank, world = distributed.setup()
    if world > 1 and not args.out:
        raise InputError("Under torchrun give --out RUN_FOLDER, so that every process writes to the same run.")
    out = _choose_out(args)
    distributed.barrier()  # every rank has checked the folder before rank 0 creates it
    if args.resume:
        saved = _run_info(out)
        if not saved:
            raise InputError(f"{out} has no {RUN_FILE}: it is not a run folder that can be resumed.")
        epochs = args.epochs
        saved_args = dict(saved["args"])
        if saved_args.get("model") == "betatc" and "tc_weight" not in saved_args:  # runs from before --tc-weight,
            saved_args["tc_weight"], saved_args["beta"] = saved_args.get("beta"), None  # when --beta was the TC weight
        for key, value in saved_args.items():
            setattr(args, key, value)
        args.epochs = epochs or args.epochs
    family(args.model)  # an unknown --model is an error before any data is read
    if not args.resume:
        _check_family_flags(args)
    data = _load_data(args.data, "train", args.data_dir, args.limit)
    train, val = train_val_split(data, args.val_fraction, seed=args.seed) if args.val_fraction > 0 else (data, None)
    shape = tuple(data.x.shape[1:])
    default_lik, default_sigma = DEFAULT_LIKELIHOOD.get(
        data.name, ("bernoulli", 1.0) if len(shape) == 3 else ("gaussian", 1.0))
    args.likelihood = args.likelihood or default_lik
    args.sigma = args.sigma or (default_sigma if args.likelihood == default_lik else 1.0)
    args.epochs = args.epochs or (10 if len(data) > 20000 else 100)
    torch.manual_seed(args.seed)
    model = build_model(args.model, shape, data.num_classes, args.latent_dim, args.likelihood,
                        sigma=args.sigma, **_model_options(args))
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_schedule=args.lr_schedule,
        beta=1.0 if args.beta is None else args.beta,
        warmup_epochs=args.warmup_epochs, free_bits=args.free_bits, objective=args.objective, k=args.k,
        binarize=args.binarize, corrupt=args.corrupt or "", patience=args.patience, seed=args.seed, progress=not args.no_progress,
        device=args.device, precision=args.precision, compile=args.compile,
        channels_last=not args.no_channels_last,
    )
    trainer = Trainer(model, config, out)
    if args.overwrite and out.exists() and not args.resume and any(out.iterdir()) and not (out / RUN_FILE).exists():
        raise InputError(f"{out} is not a vaekit run folder; refusing to overwrite it, choose another --out.")
    if rank == 0:
        if args.overwrite and out.exists() and not args.resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in vars(args).items() if k not in ("func", "out", "resume", "overwrite")}
        atomic_write_bytes(out / RUN_FILE, json.dumps({"data": args.data, "data_dir": args.data_dir, "args": record},
                                                      indent=2).encode())
        lik = args.likelihood + (f" (sigma {args.sigma:g})" if args.likelihood == "gaussian" else "")
        procs = f", {world} processes" if world > 1 else ""
        print(f"Training {args.model} on {data.name} ({len(train)} train / {len(val) if val else 0} val examples, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters, {lik} likelihood, "
              f"{trainer.precision}{procs}) into {out}")
    distributed.barrier()
    history = trainer.fit(train, val, resume=args.resume)
    if rank != 0:
        return
    last = history[-1] if history else {}
    if last:
        key = "val_loss" if "val_loss" in last else "train_loss"
        print(f"Epoch {last['epoch']}: {key} {last[key]:.2f} nats per example, {last['images_per_s']:.0f} images/s")
    extra = _second_stage(model, train, val, out, args)
    _pictures(model, val or train, out, extra)


def _second_stage(model, train, val, out: Path, args) -> dict:
    """VQ-VAE: fit the autoregressive prior over the codes, save, and chart codebook usage."""
    from .models import train_prior
    from .plots import save_codebook_usage

    if model.capabilities.latent != "codes":
        return {}
    x = train.x.to(next(model.parameters()).device)
    print(f"Fitting the PixelCNN prior over the {model.grid_size[0]}x{model.grid_size[1]} code grid "
          f"({args.prior_epochs} epochs)")
    train_prior(model, x, epochs=args.prior_epochs, progress=not args.no_progress, seed=args.seed)
    model.save_pretrained(out / "model")
    usage = model.codebook_usage((val or train).x)
    print(f"Codebook: perplexity {usage['perplexity']:.1f} of {model.config.num_codes} codes, "
          f"{100 * usage['used_fraction']:.0f}% used")
    return {"codebook usage": save_codebook_usage(usage["counts"], out / "codebook_usage.png")}


def _pictures(model, data, out: Path, extra: dict | None = None):
    from .latent import interpolate
    from .plots import save_image_grid

    model.eval()
    shape = getattr(model, "image_shape", None)
    y = data.y if model.conditional else None
    n = min(8, len(data))
    with torch.no_grad():
        samples = model.sample(64, _labels_for(model, 64, None))
        recon = model.reconstruct(data.x[:n], y[:n] if y is not None else None)
        rows = torch.stack([data.x[:n].reshape(recon.shape), recon])  # (2, n, ...)
    print("Wrote:")
    _say(out / "model", "model")
    _say(out / "metrics.jsonl", "metrics")
    _say(out / "loss_curve.png", "loss curve")
    _say(save_image_grid(samples, out / "samples.png", image_shape=shape, title="samples from the prior"), "samples")
    _say(save_image_grid(rows, out / "reconstructions.png", image_shape=shape,
                         title="top: data, bottom: reconstruction"), "reconstructions")
    if model.capabilities.latent == "vector" and len(data) >= 2:
        strips = torch.stack([
            interpolate(model, data.x[2 * i], data.x[2 * i + 1], steps=10, y=(y[2 * i] if y is not None else None))
            for i in range(min(4, len(data) // 2))
        ])
        _say(save_image_grid(strips, out / "interpolation.png", image_shape=shape, title="latent interpolation"),
             "interpolation")
    for what, path in (extra or {}).items():
        _say(path, what)


# ---- commands on a saved run ---------------------------------------------------------------
def _model(args):
    from .loading import load

    return load(args.run)


def cmd_sample(args):
    from .latent import sample
    from .plots import save_image_grid

    model = _model(args)
    torch.manual_seed(args.seed)
    y = _labels_for(model, args.n, args.label)
    if model.capabilities.latent == "vector":
        x = sample(model, args.n, y, temperature=args.temperature)  # its arguments checked
    else:
        with torch.no_grad():
            x = model.sample(args.n, y, temperature=args.temperature)
    path = _out_dir(args) / "samples.png"
    _say(save_image_grid(x, path, image_shape=getattr(model, "image_shape", None)), "samples")


def cmd_reconstruct(args):
    from .plots import save_image_grid

    model = _model(args)
    x, y = _examples(args, model, args.n)
    y = y if model.conditional else None
    with torch.no_grad():
        recon = model.reconstruct(x, y)
    rows = torch.stack([model.as_batch(x).reshape(recon.shape), recon])
    path = _out_dir(args) / "reconstructions.png"
    _say(save_image_grid(rows, path, image_shape=getattr(model, "image_shape", None),
                         title="top: data, bottom: reconstruction"), "reconstructions")


def cmd_interpolate(args):
    from .latent import interpolate
    from .plots import save_image_grid

    model = _model(args)
    x, y = _examples(args, model, 2 * args.pairs)
    if len(x) < 2:
        raise InputError("Interpolation needs at least two examples.")
    cond = model.conditional
    strips = torch.stack([
        interpolate(model, x[2 * i], x[2 * i + 1], steps=args.steps, method=args.method,
                    y=y[2 * i] if cond else None)
        for i in range(len(x) // 2)
    ])
    path = _out_dir(args) / f"interpolation_{args.method}.png"
    _say(save_image_grid(strips, path, image_shape=getattr(model, "image_shape", None)), "interpolation")


def cmd_traverse(args):
    from .latent import traverse
    from .plots import save_image_grid

    model = _model(args)
    dims = args.dims if args.dims else None
    x = None
    y = _labels_for(model, 1, args.label)
    if args.data or (Path(args.run) / RUN_FILE).exists():
        xs, ys = _examples(args, model, 1)
        x, y = xs[0], (ys[:1] if y is not None else None)
    values = torch.linspace(-args.range, args.range, args.steps)
    grid = traverse(model, x, dims=dims, values=values, y=y)
    path = _out_dir(args) / "traversal.png"
    _say(save_image_grid(grid, path, image_shape=getattr(model, "image_shape", None),
                         title=f"one latent dimension per row, {-args.range:g} to {args.range:g}"), "traversal")


# ---- the parser ---------------------------------------------------------------------------
def _common_model_args(p):
    p.add_argument("run", help="a run folder (from vaekit train), a saved model folder, or a pretrained name")
    p.add_argument("--out", help="folder for the picture (default: the run folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _data_args(p):
    p.add_argument("--data", help="data set name (digits, mnist, fashion-mnist) or a .npy/.npz/.csv file "
                                  "(default: the run's own data, test split)")
    p.add_argument("--data-dir", help="folder holding the data files (else $VAEKIT_DATA, then the cache)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaekit",
        description="Train variational autoencoders and look at what they learned.",
        epilog="Start with `vaekit train`: it trains the chapter's VAE on the digits embedded in "
               "scikit-learn in about a minute and writes a run folder with pictures.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a VAE. With no arguments: the chapter's MLP VAE on scikit-learn's "
                                   "digits, written to runs/digits-vae.")
    p.add_argument("--model", default="vae", metavar="MODEL",
                   help="model family: " + ", ".join(f"{f.name} ({f.summary})" for f in families().values())
                        + " (default vae)")
    p.add_argument("--data", default="digits", help="digits (default, offline), mnist, fashion-mnist, "
                                                    "or a .npy/.npz/.csv file")
    p.add_argument("--data-dir", help="folder with the MNIST/Fashion-MNIST IDX files (else $VAEKIT_DATA, "
                                      "then ~/.cache/vaekit, then download)")
    p.add_argument("--latent-dim", type=int, default=20, help="dimensions of z (default 20)")
    p.add_argument("--beta", type=float, help="KL weight: >1 for a beta-VAE (default 1); for betatc it "
                                              "scales all three KL parts (see --tc-weight)")
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian", "gaussian-learned"],
                   help="p(x|z): bernoulli for images in [0,1] (default; gaussian for digits and tables)")
    p.add_argument("--sigma", type=float, help="standard deviation of a fixed gaussian likelihood "
                                               "(default 0.2 for digits, else 1)")
    for flag, (opt, names) in cli_options().items():  # options the families declare
        p.add_argument(flag, type=opt.type, choices=opt.choices, help=f"{opt.help} (--model {', '.join(names)})")
    p.add_argument("--prior-epochs", type=int, default=10, help="epochs of the vqvae's PixelCNN prior (default 10)")
    p.add_argument("--objective", choices=["elbo", "iwae"], default="elbo", help="training bound (default elbo)")
    p.add_argument("--k", type=int, default=5, help="importance samples for --objective iwae (default 5)")
    p.add_argument("--epochs", type=int, help="passes over the data (default 100 for small data, 10 for MNIST)")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant (default) or cosine decay to lr/100 over the run")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="KL warm-up length in epochs (default 0)")
    p.add_argument("--free-bits", type=float, default=0.0, help="free nats per latent dimension (default 0)")
    p.add_argument("--binarize", action="store_true", help="dynamic binarization of pixels (for MNIST likelihoods)")
    p.add_argument("--corrupt", metavar="SPEC", help="denoising VAE: train on inputs corrupted by SPEC "
                                                    "(gaussian:0.5, salt-pepper:0.2, mask:0.3) with clean targets")
    p.add_argument("--limit", type=int, help="use only the first N training examples")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share for validation (default 0.1)")
    p.add_argument("--patience", type=int, default=0, help="early stopping after N epochs without improvement")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="auto",
                   help="auto (default: bf16 autocast on CPUs with native bf16 and on CUDA, else fp32), fp32, "
                        "bf16, fp16 (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--no-channels-last", action="store_true", help="keep convolutions in the default memory layout")
    p.add_argument("--out", help="run folder (default runs/DATA-MODEL, numbered if it exists)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw new examples from the prior")
    _common_model_args(p)
    p.add_argument("--n", type=int, default=64, help="how many (default 64)")
    p.add_argument("--label", type=int, help="class to generate (conditional models)")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the prior noise (default 1)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="encode and decode examples, side by side")
    _common_model_args(p)
    _data_args(p)
    p.add_argument("--n", type=int, default=16, help="how many examples (default 16)")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="walk the latent space between pairs of examples")
    _common_model_args(p)
    _data_args(p)
    p.add_argument("--pairs", type=int, default=4, help="how many pairs (default 4)")
    p.add_argument("--steps", type=int, default=10, help="images per strip (default 10)")
    p.add_argument("--method", choices=["linear", "slerp"], default="linear", help="path (default linear)")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("traverse", help="vary one latent dimension at a time")
    _common_model_args(p)
    _data_args(p)
    p.add_argument("--dims", type=int, nargs="*", help="which dimensions (default the first 10)")
    p.add_argument("--range", type=float, default=3.0, help="values from -R to R (default 3)")
    p.add_argument("--steps", type=int, default=9, help="values per dimension (default 9)")
    p.add_argument("--label", type=int, help="class to condition on (conditional models)")
    p.set_defaults(func=cmd_traverse)

    from .cli_apps import add_app_parsers
    add_app_parsers(sub)
    from .cli_evaluate import add_evaluate_parser
    add_evaluate_parser(sub)
    from .cli_anomaly import add_anomaly_parser; add_anomaly_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as e:
        print(f"vaekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last completed epoch is saved (continue with --resume).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
