"""Training runs: a resolved spec in, a run folder out. `vaekit train` is a thin layer over this.

    from vaekit.runs import TrainSpec, train
    run = train(TrainSpec(model="conv", data="digits", epochs=20, out="runs/digits-conv"))
    run.model, run.history, run.files["samples"]

What a run decides, in one place: the data-dependent defaults (likelihood, epochs), the run folder
rules (a fresh numbered folder, --resume, --overwrite), second stages (the VQ-VAE's prior, fitted by
the same Trainer), and the pictures written at the end. `run.json` stores the spec's fields, so a
resumed run continues with exactly the settings it started with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed
from .errors import InputError
from .atomic import LOCK_NAME, atomic_write_bytes, folder_lock, is_temporary, remove_all_debris
from .configs import validate
from .io import CONFIG_NAME, pretrained_folder
from .models.registry import build_model, cli_options, family

RUN_FILE = "run.json"

# Likelihood defaults where the data call for another than the Bernoulli: the 8x8 digits have 17
# grey levels, under which a Bernoulli decoder stays blurry; a Gaussian with sigma 0.2 is sharp.
DEFAULT_LIKELIHOOD = {"digits": ("gaussian", 0.2)}
LARGE_DATA = 20000  # examples above which the default is 10 epochs instead of 100


@dataclass
class TrainSpec:
    """Everything a training run needs. Field names are the `vaekit train` flags (--latent-dim is
    latent_dim); None means "the default for this data" where the docstring of `train` says so."""

    model: str = "vae"  # a registered family (vaekit.models.FAMILIES)
    data: str = "digits"  # a data set name or file
    data_dir: str | None = None
    latent_dim: int = 20
    beta: float | None = None  # the KL weight (None: 1)
    likelihood: str | None = None  # None: gaussian (sigma 0.2) for digits, bernoulli for images, gaussian for tables
    sigma: float | None = None
    options: dict = field(default_factory=dict)  # family options by flag name: {"flow_length": 2, "tc_weight": 6}
    prior_epochs: int = 10  # epochs of a second stage (the VQ-VAE's PixelCNN prior)
    objective: str = "elbo"
    k: int = 5
    epochs: int | None = None  # None: 100, or 10 for more than 20,000 examples
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    binarize: bool = False
    corrupt: str | None = None
    limit: int | None = None
    val_fraction: float = 0.1
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    no_channels_last: bool = False
    no_progress: bool = False
    out: str | None = None  # None: runs/DATA-MODEL, numbered if it exists
    resume: bool = False
    overwrite: bool = False

    def record(self) -> dict:
        """The settings run.json keeps (flat, family options beside the others)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("options", "out", "resume", "overwrite")}
        return {**fields, **self.options}

    @classmethod
    def from_flags(cls, flags: dict) -> "TrainSpec":
        """A spec from flag values by name (argparse's vars(args) or a run.json record); family
        options are recognised by their flag names, keys that are neither are ignored."""
        names = {f.name for f in dataclasses.fields(cls)} - {"options"}
        option_dests = {opt.dest for opt, _ in cli_options().values()}
        flags = dict(flags)
        if flags.get("model") == "betatc" and "tc_weight" not in flags and "beta" in flags:
            flags["tc_weight"], flags["beta"] = flags["beta"], None  # runs from when --beta was betatc's TC weight
        options = {k: v for k, v in flags.items() if k in option_dests and v is not None}
        return cls(**{k: v for k, v in flags.items() if k in names}, options={**flags.get("options", {}), **options})


@dataclass
class Run:
    """A finished run: its folder, the trained model, the per-epoch metrics and the files written."""

    out: Path
    model: torch.nn.Module
    history: list[dict]
    files: dict[str, Path]


def train(spec: TrainSpec, say=print) -> Run:
    """Train `spec.model` on `spec.data` into a run folder; `say` prints what happens.

    One process at a time writes a run folder (a second is refused). A run that fails before its
    first epoch is saved removes the folder it created."""
    validate(spec, flags=True)
    rank, world = distributed.setup()
    if world > 1 and not spec.out:
        raise InputError("Under torchrun give --out RUN_FOLDER, so that every process writes to the same run.")
    out = run_folder_for(spec)
    created, fresh = not out.exists(), not _has_content(out)
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        try:
            return _train_in(out, spec, rank, world, say)
        except BaseException:
            if rank == 0 and fresh:
                _remove_stub(out, created)  # a run that failed before its first epoch leaves nothing behind
            raise


def _train_in(out: Path, spec: TrainSpec, rank: int, world: int, say) -> Run:
    from .data import load_dataset, train_val_split
    from .train import TrainConfig, Trainer

    distributed.barrier()  # every rank has checked the folder before rank 0 creates it
    if rank == 0:
        remove_all_debris(out)  # what killed runs left half-written
    if spec.resume:
        spec = resumed_spec(out, spec)
    fam = family(spec.model)  # an unknown model is an error before any data is read
    model_options = family_options(spec)
    data = load_dataset(spec.data, split="train", data_dir=spec.data_dir, limit=spec.limit)
    train_set, val = train_val_split(data, spec.val_fraction, seed=spec.seed) if spec.val_fraction > 0 else (data, None)
    shape = tuple(data.x.shape[1:])
    spec = resolve_defaults(spec, data.name, shape, len(data))
    torch.manual_seed(spec.seed)
    model = build_model(fam.name, shape, data.num_classes, spec.latent_dim, spec.likelihood, sigma=spec.sigma,
                        **model_options)
    config = TrainConfig(
        epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, lr_schedule=spec.lr_schedule,
        grad_clip=spec.grad_clip,
        beta=1.0 if spec.beta is None else spec.beta, warmup_epochs=spec.warmup_epochs, free_bits=spec.free_bits,
        objective=spec.objective, k=spec.k, binarize=spec.binarize, corrupt=spec.corrupt or "",
        patience=spec.patience, seed=spec.seed, progress=not spec.no_progress, device=spec.device,
        precision=spec.precision, compile=spec.compile, channels_last=not spec.no_channels_last,
    )
    trainer = Trainer(model, config, out)
    if rank == 0:
        _prepare_folder(out, spec)
        lik = spec.likelihood + (f" (sigma {spec.sigma:g})" if spec.likelihood == "gaussian" else "")
        procs = f", {world} processes" if world > 1 else ""
        say(f"Training {spec.model} on {data.name} ({len(train_set)} train / {len(val) if val else 0} val examples, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters, {lik} likelihood, "
            f"{trainer.precision}{procs}) into {out}")
    distributed.barrier()
    history = trainer.fit(train_set, val, resume=spec.resume)
    files = {"model": out / "model", "metrics": out / "metrics.jsonl", "loss curve": out / "loss_curve.png"}
    if rank != 0:
        return Run(out, model, history, files)
    last = history[-1] if history else {}
    if last:
        key = "val_loss" if "val_loss" in last else "train_loss"
        say(f"Epoch {last['epoch']}: {key} {last[key]:.2f} nats per example, {last['images_per_s']:.0f} images/s")
    extra = second_stage(model, train_set, val, out, spec, say)  # before the pictures: samples need the prior
    files.update(write_pictures(model, val or train_set, out))
    files.update(extra)
    say("Wrote:")
    for what, path in files.items():
        say(f"  {what:<16} {path}")
    return Run(out, model, history, files)


# ---- the pieces of a run ---------------------------------------------------------------------
def run_folder_for(spec: TrainSpec) -> Path:
    """The folder a run writes: --out as given (refused if it holds something, unless resumed or
    overwritten), else runs/DATA-MODEL, numbered -2, -3, ... when taken."""
    if spec.out:
        out = Path(spec.out)
        if _has_content(out) and not (spec.resume or spec.overwrite):
            raise InputError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it.")
        if spec.overwrite and not spec.resume and _has_content(out):
            check_replaceable(out)
        return out
    if spec.resume:
        raise InputError("--resume needs --out RUN_FOLDER, the run to continue.")
    base = Path("runs") / f"{Path(spec.data).stem}-{spec.model}"
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def resumed_spec(out: Path, spec: TrainSpec) -> TrainSpec:
    """The spec a run folder was started with; a given `epochs` extends it."""
    if not (out / RUN_FILE).exists():
        raise InputError(f"{out} has no {RUN_FILE}: it is not a run folder that can be resumed.")
    saved = run_info(out)
    if not isinstance(saved.get("args"), dict) or not isinstance(saved["args"].get("options", {}), dict):
        raise InputError(f"{out / RUN_FILE} is corrupt (no settings in it); start the run again with --overwrite.")
    resumed = TrainSpec.from_flags(saved["args"])
    try:
        validate(resumed, flags=True)
    except InputError as e:
        raise InputError(f"{out / RUN_FILE} holds a setting vaekit cannot use ({e}); start the run again with "
                         "--overwrite.") from None
    own = {opt.dest for opt in family(resumed.model).options}  # older run.json files kept every family's flags
    options = {k: v for k, v in resumed.options.items() if k in own}
    return dataclasses.replace(resumed, options=options, epochs=spec.epochs if spec.epochs is not None else resumed.epochs, out=spec.out,
                               resume=True, overwrite=False)


def family_options(spec: TrainSpec) -> dict:
    """The spec's family options as constructor fields; an option of another family is an error."""
    fam = family(spec.model)
    own = {opt.dest: opt for opt in fam.options}
    declared = cli_options()
    for dest in spec.options:
        if dest not in own:
            flag = "--" + dest.replace("_", "-")
            names = next((names for opt, names in declared.values() if opt.dest == dest), None)
            if names is None:
                raise InputError(f"{flag} is not an option of any model family.")
            raise InputError(f"{flag} applies to --model {' or '.join(names)}, not to --model {spec.model}.")
    return {own[dest].field: value for dest, value in spec.options.items()}


def resolve_defaults(spec: TrainSpec, data_name: str, shape: tuple, n: int) -> TrainSpec:
    """The spec with the data-dependent defaults filled in: likelihood, sigma and epochs."""
    default_lik, default_sigma = DEFAULT_LIKELIHOOD.get(
        data_name, ("bernoulli", 1.0) if len(shape) == 3 else ("gaussian", 1.0))
    likelihood = spec.likelihood or default_lik
    sigma = spec.sigma or (default_sigma if likelihood == default_lik else 1.0)
    if spec.epochs == 0:
        raise InputError("--epochs must be 1 or more (leave it out for the default).")
    epochs = spec.epochs if spec.epochs is not None else (10 if n > LARGE_DATA else 100)
    return dataclasses.replace(spec, likelihood=likelihood, sigma=sigma, epochs=epochs)


def _prepare_folder(out: Path, spec: TrainSpec) -> None:
    """Create (or, with overwrite, empty of what vaekit wrote) the run folder and write run.json."""
    if spec.overwrite and not spec.resume and _has_content(out):
        for entry in check_replaceable(out):
            _remove(out / entry)
    out.mkdir(parents=True, exist_ok=True)
    info = {"data": spec.data, "data_dir": spec.data_dir, "args": spec.record()}
    atomic_write_bytes(out / RUN_FILE, json.dumps(info, indent=2).encode())


def second_stage(model, train_set, val, out: Path, spec: TrainSpec, say=print) -> dict[str, Path]:
    """Models with a separately trained part: the VQ-VAE's PixelCNN prior over its codes, fitted by
    the Trainer; the model is saved again and its codebook usage charted."""
    from .models.vqvae import train_prior
    from .plots import save_codebook_usage

    if model.capabilities.latent != "codes":
        return {}
    x = train_set.x.to(next(model.parameters()).device)
    say(f"Fitting the PixelCNN prior over the {model.grid_size[0]}x{model.grid_size[1]} code grid "
        f"({spec.prior_epochs} epochs)")
    train_prior(model, x, epochs=spec.prior_epochs, progress=not spec.no_progress, seed=spec.seed)
    model.save_pretrained(out / "model")
    usage = model.codebook_usage((val or train_set).x)
    say(f"Codebook: perplexity {usage['perplexity']:.1f} of {model.config.num_codes} codes, "
        f"{100 * usage['used_fraction']:.0f}% used")
    return {"codebook usage": save_codebook_usage(usage["counts"], out / "codebook_usage.png")}


def demo_labels(model, n: int, label: int | None = None):
    """Labels for n generated examples of a conditional model: `label` for all, else 0, 1, 2, ...
    cycling over the classes; None for an unconditional model."""
    if not model.conditional:
        return None
    if label is not None:
        return torch.full((n,), label)
    return torch.arange(n) % model.config.num_classes


def write_pictures(model, data, out: Path) -> dict[str, Path]:
    """Samples, reconstructions of the first examples and latent interpolations, as PNGs in `out`."""
    from .latent import interpolate
    from .plots import save_image_grid

    model.eval()
    shape = getattr(model, "image_shape", None)
    y = data.y if model.conditional else None
    n = min(8, len(data))
    with torch.no_grad():
        samples = model.sample(64, demo_labels(model, 64))
        recon = model.reconstruct(data.x[:n], y[:n] if y is not None else None)
        rows = torch.stack([data.x[:n].reshape(recon.shape), recon])  # (2, n, ...)
    files = {
        "samples": save_image_grid(samples, out / "samples.png", image_shape=shape, title="samples from the prior"),
        "reconstructions": save_image_grid(rows, out / "reconstructions.png", image_shape=shape,
                                           title="top: data, bottom: reconstruction"),
    }
    if model.capabilities.latent == "vector" and len(data) >= 2:
        strips = torch.stack([
            interpolate(model, data.x[2 * i], data.x[2 * i + 1], steps=10, y=(y[2 * i] if y is not None else None))
            for i in range(min(4, len(data) // 2))
        ])
        files["interpolation"] = save_image_grid(strips, out / "interpolation.png", image_shape=shape,
                                                 title="latent interpolation")
    return files


# ---- what a run folder may hold -----------------------------------------------------------------
RUN_ENTRIES = {"model", "checkpoint", RUN_FILE, "metrics.jsonl", "train_config.json", "evaluation.json",
               "loss_curve.png", "samples.png", "reconstructions.png", "interpolation.png", "codebook_usage.png",
               "traversal.png", "interpolation_linear.png", "interpolation_slerp.png", LOCK_NAME}


def _entries(out: Path) -> list[str]:
    """The folder's entries, without vaekit's lock and the temporaries of finished writers."""
    try:
        return [e for e in os.listdir(out) if e != LOCK_NAME and not is_temporary(e)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _has_content(out: Path) -> bool:
    return bool(_entries(out)) or (out.exists() and not out.is_dir())


def check_replaceable(out: Path) -> list[str]:
    """The entries --overwrite may delete: refused unless `out` is a run folder vaekit wrote (a
    readable run.json, nothing but vaekit's files) and not the current folder or one above it."""
    here, target = Path.cwd().resolve(), out.resolve()
    if target == here or target in here.parents or target == Path.home().resolve():
        raise InputError(f"Refusing to overwrite {out}: it is the current folder, your home or a folder above "
                         "them; choose a new --out.")
    if out.is_symlink() or not out.is_dir():
        raise InputError(f"Refusing to overwrite {out}: it is not a folder that vaekit wrote; choose another --out.")
    if not run_info(out).get("args"):
        raise InputError(f"Refusing to overwrite {out}: it has no readable {RUN_FILE}, so it is not a vaekit run "
                         "folder; choose another --out.")
    entries = [e for e in os.listdir(out) if not is_temporary(e)]
    foreign = sorted(e for e in entries if e not in RUN_ENTRIES)
    if foreign:
        raise InputError(f"Refusing to overwrite {out}: it holds {foreign[0]!r}, which vaekit did not write; move "
                         "it away or choose another --out.")
    return [e for e in entries if e != LOCK_NAME]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_stub(out: Path, created: bool) -> None:
    """Remove what a run wrote into a folder that was empty, if no epoch of it was saved (and the
    folder itself, if the run created it)."""
    if (out / "checkpoint").exists() or not out.is_dir():
        return
    for entry in os.listdir(out):
        if entry in RUN_ENTRIES or is_temporary(entry):
            _remove(out / entry)
    if created:
        try:
            out.rmdir()
        except OSError:
            pass  # something else was put there meanwhile: leave it


# ---- reading run folders -----------------------------------------------------------------------
def run_info(folder) -> dict:
    """The run.json of a run folder, its `model/` folder or a pretrained name, or {} where there is
    none (or it is unreadable)."""
    shipped = pretrained_folder(folder) if not Path(folder).exists() else None
    folder = run_folder(shipped or folder)
    try:
        info = json.loads((Path(folder) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def run_folder(path) -> Path:
    """The run folder of a run's `model/` folder (run.json sits beside it); any other path as it is."""
    path = Path(path)
    if (path / CONFIG_NAME).exists() and (path.parent / RUN_FILE).exists():
        return path.parent
    return path
