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
import fnmatch
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed
from .errors import InputError
from .atomic import LOCK_NAME, TMP_TAG, atomic_write_bytes, folder_lock, is_temporary, remove_all_debris
from .configs import validate
from .io import CONFIG_NAME, pretrained_folder
from .models.registry import build_model, cli_options, family
from .run_generation import check_fit_prior, fit_run_prior, run_prior_kind, run_quality, shows_quality, write_quality
from .threads import choose_threads

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
    fit_prior: str = "auto"  # the prior fitted to the codes after training: 'auto', 'gmm', 'diffusion' or 'none'
    objective: str = "elbo"
    k: int = 5
    epochs: int | None = None  # None: 100, or 10 for more than 20,000 examples
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    grad_clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    ema: float = 0.0  # decay of the weight average the saved model holds (0: none)
    warmup_epochs: float = 0.0
    free_bits: float = 0.0
    binarize: bool = False
    corrupt: str | None = None
    limit: int | None = None
    val_fraction: float = 0.1
    patience: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads (None: $VAEKIT_THREADS, else the idle cores)
    precision: str = "auto"
    compile: bool = False
    no_channels_last: bool = False
    no_progress: bool = False
    out: str | None = None  # None: runs/DATA-MODEL, numbered if it exists
    resume: bool = False
    overwrite: bool = False
    init_from: str | None = None  # a saved model (folder or pretrained name) whose weights the run starts from

    def record(self) -> dict:
        """The settings run.json keeps (flat, family options beside the others)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("options", "out", "resume", "overwrite")}
        own = {opt.dest: None for opt in family(self.model).options}  # every one, so a resume never guesses
        return {**fields, **own, **self.options}

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


RESUME_MAY_CHANGE = ("epochs", "lr", "patience", "grad_clip", "device", "threads", "precision", "compile",
                     "no_channels_last", "no_progress", "data_dir", "fit_prior")


def train(spec: TrainSpec, say=print, given: set | None = None) -> Run:
    """Train `spec.model` on `spec.data` into a run folder; `say` prints what happens.

    With `spec.resume` the run continues with the settings in its run.json; of the settings in
    `given` (default: every field that differs from TrainSpec's defaults) those in
    RESUME_MAY_CHANGE replace the run's, any other that differs is refused.

    One process at a time writes a run folder (a second is refused). A run that fails before its
    first epoch is saved removes the folder it created."""
    validate(spec, flags=True)
    check_fit_prior(spec.fit_prior)
    rank, world = distributed.setup()
    if world > 1 and not spec.out:
        raise InputError("Under torchrun give --out RUN_FOLDER, so that every process writes to the same run.")
    out = run_folder_for(spec)
    created, fresh = not out.exists(), not _has_content(out)
    with folder_lock(out) if rank == 0 else contextlib.nullcontext():
        replacing = rank == 0 and spec.overwrite and not spec.resume and not fresh
        stash = _stash_previous(out) if replacing else None  # the old run, aside until the new one saved an epoch
        try:
            run = _train_in(out, spec, rank, world, say, given)
        except BaseException as e:
            if rank == 0 and (fresh or stash is not None):
                _remove_stub(out, created)  # a run that failed before its first epoch leaves nothing behind
                if stash is not None and not (out / "checkpoint").exists():
                    _restore_previous(out, stash)
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, RunInterrupted):
                raise RunInterrupted(_interrupted(out)) from None
            raise
        if stash is not None:
            shutil.rmtree(stash, ignore_errors=True)
        return run


def _train_in(out: Path, spec: TrainSpec, rank: int, world: int, say, given) -> Run:
    from .data import load_dataset, train_val_split
    from .train import TrainConfig, Trainer

    distributed.barrier()  # every rank has checked the folder before rank 0 creates it
    if rank == 0:
        remove_all_debris(out)  # what killed runs left half-written
    stale_priors = []
    if spec.resume:
        from .priors import saved_priors

        spec = resumed_spec(out, spec, given, say)
        stale_priors = saved_priors(out / "model")  # fitted to the weights before this resume
    threads, why = choose_threads(spec.threads)
    fam = family(spec.model)  # an unknown model is an error before any data is read
    model_options = family_options(spec)
    data = load_dataset(spec.data, split="train", data_dir=spec.data_dir, limit=spec.limit)
    train_set, val = train_val_split(data, spec.val_fraction, seed=spec.seed) if spec.val_fraction > 0 else (data, None)
    shape = tuple(data.x.shape[1:])
    spec = resolve_defaults(spec, data.name, shape, len(data), data.x)
    stats = None
    if len(shape) == 1 and spec.likelihood != "bernoulli":  # a table: standardize with the training rows
        stats = Standardization.fit(train_set.x)
        train_set, val = stats.apply(train_set), (stats.apply(val) if val is not None else None)
    torch.manual_seed(spec.seed)
    model = build_model(fam.name, shape, data.num_classes, spec.latent_dim, spec.likelihood, sigma=spec.sigma,
                        **model_options)
    if spec.init_from and not spec.resume:
        start_from_saved(model, spec.init_from)
    elif not spec.resume:
        model.init_output_bias(train_set.x)  # for models whose init asks for it (--init he)
    config = TrainConfig(
        epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, lr_schedule=spec.lr_schedule,
        grad_clip=spec.grad_clip, ema=spec.ema,
        beta=1.0 if spec.beta is None else spec.beta, warmup_epochs=spec.warmup_epochs, free_bits=spec.free_bits,
        objective=spec.objective, k=spec.k, binarize=spec.binarize, corrupt=spec.corrupt or "",
        patience=spec.patience, seed=spec.seed, progress=not spec.no_progress, device=spec.device,
        precision=spec.precision, compile=spec.compile, channels_last=not spec.no_channels_last,
    )
    trainer = Trainer(model, config, out, say=say)
    if rank == 0:
        _prepare_folder(out, spec)
        if stats is not None:
            stats.save(out)
        lik = model.lik.name + (f" (sigma {spec.sigma:g})" if spec.likelihood == "gaussian" else "")
        procs = f", {world} processes" if world > 1 else ""
        procs += f", {threads} CPU thread{'s' if threads > 1 else ''} ({why})" if trainer.device.type == "cpu" else ""
        say(f"Training {spec.model} on {data.name} ({len(train_set)} train / {len(val) if val else 0} val examples, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters, {lik} likelihood, "
            f"{trainer.precision}{procs}) into {out}")
    distributed.barrier()
    history = trainer.fit(train_set, val, resume=spec.resume)
    files = {"model": out / "model", "metrics": out / "metrics.jsonl", "loss curve": out / "loss_curve.png"}
    if rank != 0:
        return Run(out, model, history, files)
    say(summary(history, spec))
    extra = second_stage(model, train_set, val, out, spec, say)  # before the pictures: samples need the prior
    fitted = run_prior_kind(spec.fit_prior, model, say)
    if fitted != "none":
        fit_run_prior(model, train_set, out, fitted, spec.seed, say, progress=not spec.no_progress)
    dropped = [kind for kind in stale_priors if kind != fitted]
    if dropped:
        say(f"The {' and '.join(dropped)} prior{'s' if len(dropped) > 1 else ''} fitted to the earlier weights no "
            f"longer match{'' if len(dropped) > 1 else 'es'} the codes and {'were' if len(dropped) > 1 else 'was'} "
            f"removed; fit again with `vaekit prior fit {out} --kind {dropped[0]}`.")
    say("Drawing samples and reconstructions" + (", then measuring sample quality" if shows_quality(model, data) else "")
        + ("" if getattr(getattr(model, "lik", None), "factorised", True)
           else " (an autoregressive decoder draws pixel by pixel: minutes)"))
    files.update(write_pictures(model, val or train_set, out, stats))
    files.update(extra)
    rows = run_quality(model, data, spec.data_dir, seed=spec.seed)
    if rows is not None:
        from .quality import format_quality

        say(format_quality(rows))
        files["sample quality"] = write_quality(rows, out)
    from .report import write_report

    files["report"] = write_report([out], out / "report.html")
    say("Wrote:")
    for what, path in files.items():
        say(f"  {what:<16} {path}")
    return Run(out, model, history, files)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; its message says what was saved and how to go on."""


def _interrupted(out: Path) -> str:
    counters = run_checkpoint_epochs(out)
    if counters is None:
        return "no epoch was saved, so nothing is left behind; run the command again"
    return f"epoch {counters} is saved in {out}; continue with: vaekit train --out {out} --resume"


def run_checkpoint_epochs(out: Path) -> int | None:
    """How many epochs the checkpoint of a run folder holds (None: no readable checkpoint)."""
    try:
        epochs = json.loads((Path(out) / "checkpoint" / "state.json").read_text())["counters"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) else None


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


def read_history(run) -> list[dict]:
    """The per-epoch rows of a run's metrics.jsonl ([] where it is missing or unreadable)."""
    try:
        rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("epoch"), int)
            and isinstance(r.get("train_loss"), (int, float))]


def best_epoch(history: list[dict]) -> tuple[dict | None, str]:
    """(the row of the epoch model/ holds, the loss it was chosen by): the lowest val_loss, else train_loss."""
    if not history:
        return None, "train_loss"
    key = "val_loss" if all(isinstance(r.get("val_loss"), (int, float)) for r in history) else "train_loss"
    return min(history, key=lambda row: row[key]), key


def summary(history: list[dict], spec: TrainSpec) -> str:
    """The last epoch's loss and which epoch the saved model is, with what the numbers mean."""
    if not history:
        return "No epochs were trained."
    last = history[-1]
    best, key = best_epoch(history)
    line = f"Epoch {last['epoch']}: {key} {last[key]:.2f} nats per example, {last['images_per_s']:.0f} images/s"
    if key == "val_loss":
        line += f"; model/ holds epoch {best['epoch']}, the best ({best[key]:.2f})"
    if spec.likelihood != "bernoulli" and best[key] < 0:
        line += (". The loss is a negative ELBO under a continuous density, so it can be negative: lower is "
                 "better, and it compares only between runs on the same data and likelihood")
    return line + "."


def resumed_spec(out: Path, spec: TrainSpec, given: set | None = None, say=print) -> TrainSpec:
    """The spec a run folder was started with, with the settings that may change on resume taken from
    `spec` (see `train`); the others must not differ."""
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
    resumed = dataclasses.replace(resumed, options={k: v for k, v in resumed.options.items() if k in own},
                                  out=spec.out, resume=True, overwrite=False)
    defaults = TrainSpec()
    if given is None:
        given = {f.name for f in dataclasses.fields(spec) if getattr(spec, f.name) != getattr(defaults, f.name)}
    given = set(given) - {"out", "resume", "overwrite"}
    changes = {}
    for name in sorted(given):
        new, old = getattr(spec, name, None), getattr(resumed, name, None)
        if name == "options" or name in {opt.dest for opt, _ in cli_options().values()}:
            new, old = spec.options.get(name, new), resumed.options.get(name, old)
        if new == old:
            continue
        if name not in RESUME_MAY_CHANGE:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"--resume continues the run with its own settings; {flag} was {old!r} there and cannot "
                             f"change to {new!r}. Start a new run (another --out) to change it.")
        changes[name] = new
    resumed = dataclasses.replace(resumed, **changes)
    done = run_checkpoint_epochs(out)
    if done is not None and resumed.epochs is not None and resumed.epochs <= done:
        say(f"The run in {out} already has {done} epochs, so there is nothing to train; give --epochs larger "
            f"than {done} to continue it.")
    if changes:
        say("Resuming with " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items())
            + " (the other settings as the run started).")
    return resumed


def start_from_saved(model, source: str) -> None:
    """Copy the weights of the saved model `source` into `model`, which must be the same family
    with the same config (the run's flags must build the architecture that was saved)."""
    from .loading import load

    saved = load(source, prior="standard")
    if type(saved) is not type(model):
        raise InputError(f"--init-from {source} holds a {type(saved).__name__}, but these flags build a "
                         f"{type(model).__name__}; give the --model it was trained as.")
    if saved.config != model.config:
        differ = [k for k, v in model.config_dict().items() if saved.config_dict().get(k) != v]
        raise InputError(f"--init-from {source} was saved with other settings than these flags give "
                         f"({', '.join(differ)}); give the flags it was trained with.")
    model.load_state_dict(saved.state_dict())


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


def default_likelihood(data_name: str, shape: tuple, x: torch.Tensor | None = None) -> tuple[str, float]:
    """(likelihood, sigma) for data: digits have their own; grey images in [0, 1] Bernoulli; colour
    images a Gaussian with sigma 0.1 (a Bernoulli per channel washes colours towards grey); images
    outside [0, 1] and tables (standardized) a Gaussian with sigma 1."""
    if data_name in DEFAULT_LIKELIHOOD:
        return DEFAULT_LIKELIHOOD[data_name]
    if len(shape) != 3:
        return "gaussian", 1.0
    if x is not None and x.numel() and (x.min() < 0 or x.max() > 1):
        return "gaussian", 1.0
    return ("gaussian", 0.1) if shape[0] == 3 else ("bernoulli", 1.0)


def resolve_defaults(spec: TrainSpec, data_name: str, shape: tuple, n: int, x: torch.Tensor | None = None) -> TrainSpec:
    """The spec with the data-dependent defaults filled in: likelihood, sigma and epochs."""
    default_lik, default_sigma = default_likelihood(data_name, shape, x)
    likelihood = spec.likelihood or default_lik
    sigma = spec.sigma or (default_sigma if likelihood == default_lik else 1.0)
    if spec.epochs == 0:
        raise InputError("--epochs must be 1 or more (leave it out for the default).")
    epochs = spec.epochs if spec.epochs is not None else (10 if n > LARGE_DATA else 100)
    return dataclasses.replace(spec, likelihood=likelihood, sigma=sigma, epochs=epochs)


def _prepare_folder(out: Path, spec: TrainSpec) -> None:
    """Create the run folder (--overwrite has moved the old run aside) and write run.json."""
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
    """Labels for n generated examples of a conditional model: `label` for all, else every class in
    turn, each for an equal run of examples; None for an unconditional model."""
    if not model.conditional:
        return None
    if label is not None:
        return torch.full((n,), label)
    return torch.arange(n) * model.config.num_classes // n  # classes in order: rows of a grid are classes


def write_pictures(model, data, out: Path, stats: "Standardization | None" = None) -> dict[str, Path]:
    """Samples, reconstructions of the first examples and latent interpolations, as PNGs in `out`
    (for tables: per-feature histograms of samples against data, and reconstruction scatter plots,
    in the data's own units)."""
    from .latent import interpolate
    from .plots import save_image_grid

    model.eval()
    device = next(model.parameters()).device
    data = type(data)(data.x.to(device), data.y.to(device) if data.y is not None else None, data.name, data.num_classes)
    shape = getattr(model, "image_shape", None)
    y = data.y if model.conditional else None
    n = min(8, len(data)) if not _is_table(model) else min(500, len(data))
    with torch.no_grad():
        samples = model.sample(64 if not _is_table(model) else 500, demo_labels(model, 64 if not _is_table(model) else 500))
        recon = model.reconstruct(data.x[:n], y[:n] if y is not None else None)
    if _is_table(model):
        unscale = stats.invert if stats is not None else (lambda t: t)
        return {"samples": save_examples(model, unscale(samples), out / "samples.png", data=unscale(data.x),
                                         title="samples from the prior against the data"),
                "reconstructions": save_table_reconstructions(unscale(data.x[:n]), unscale(recon),
                                                              out / "reconstructions.png")}
    rows = torch.stack([data.x[:n].reshape(recon.shape), recon])  # (2, n, ...)
    per_row = ", one class per row" if model.conditional else ""
    fitted = getattr(model, "fitted_prior", None)
    files = {
        "samples": save_image_grid(samples, out / "samples.png", image_shape=shape,
                                   title=(f"samples through the fitted {fitted.model_type} prior" if fitted is not None
                                          else "samples from the prior") + per_row),
        "reconstructions": save_image_grid(rows, out / "reconstructions.png", image_shape=shape,
                                           title="top: data, bottom: reconstruction"),
    }
    if fitted is not None:
        from .priors import without_fitted_prior

        with without_fitted_prior(model), torch.no_grad():
            standard = model.sample(64, demo_labels(model, 64))
        files["samples N(0, I)"] = save_image_grid(standard, out / "samples_standard.png", image_shape=shape,
                                                   title="samples from N(0, I), the prior it was trained with" + per_row)
    if model.capabilities.latent == "vector" and len(data) >= 2:
        strips = torch.stack([
            interpolate(model, data.x[2 * i], data.x[2 * i + 1], steps=10, y=(y[2 * i] if y is not None else None))
            for i in range(min(4, len(data) // 2))
        ])
        files["interpolation"] = save_image_grid(strips, out / "interpolation.png", image_shape=shape,
                                                 title="latent interpolation")
    return files


def _is_table(model) -> bool:
    """A model of table rows (flat examples that are not pictures)."""
    return getattr(model, "image_shape", None) is None and len(model.data_shape) == 1


def save_examples(model, x, path: Path, data=None, title: str | None = None) -> Path:
    """Examples as a picture: an image grid, or for tables per-feature histograms (against `data`)."""
    from .plots import save_feature_histograms, save_image_grid

    if _is_table(model):
        return save_feature_histograms(x, path, data=data, title=title)
    return save_image_grid(x, path, image_shape=getattr(model, "image_shape", None), title=title)


def save_table_reconstructions(x, recon, path: Path) -> Path:
    from .plots import save_feature_scatter

    return save_feature_scatter(x, recon, path)


# ---- tables: standardized for training, pictured in their own units ---------------------------------
STANDARDIZATION_FILE = "standardization.json"


@dataclass
class Standardization:
    """Per-feature mean and scale of a table's training rows: the model sees (x - mean) / scale."""

    mean: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Standardization":
        x = x.double()
        scale = x.std(0, unbiased=False)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # constant columns stay as they are
        return cls(x.mean(0).tolist(), scale.tolist())

    def apply(self, data):
        mean, scale = torch.tensor(self.mean), torch.tensor(self.scale)
        x = ((data.x.double() - mean) / scale).float()
        return dataclasses.replace(data, x=x)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach().cpu().double() * torch.tensor(self.scale) + torch.tensor(self.mean)).float()

    def save(self, out: Path) -> None:
        atomic_write_bytes(Path(out) / STANDARDIZATION_FILE, json.dumps(dataclasses.asdict(self)).encode())

    @classmethod
    def read(cls, run) -> "Standardization | None":
        """The standardization of a run folder (or its model/ folder), None where there is none."""
        try:
            info = json.loads((run_folder(run) / STANDARDIZATION_FILE).read_text())
            stats = cls(list(map(float, info["mean"])), list(map(float, info["scale"])))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return stats if len(stats.mean) == len(stats.scale) else None


def from_model_space(x: torch.Tensor, run) -> torch.Tensor:
    """Model outputs in the data's own units: a table run's standardization undone."""
    stats = Standardization.read(run) if Path(str(run)).exists() else None
    return stats.invert(x) if stats is not None and x.dim() == 2 and x.shape[1] == len(stats.mean) else x


# ---- what a run folder may hold -----------------------------------------------------------------
RUN_ENTRIES = {"model", "checkpoint", RUN_FILE, "metrics.jsonl", "train_config.json", "evaluation.json",
               "standardization.json", "reconstruct.png", "report.html",
               "loss_curve.png", "samples.png", "reconstructions.png", "interpolation.png", "codebook_usage.png",
               "traversal.png", "interpolation_linear.png", "interpolation_slerp.png", "sample_quality.json",
               "disentanglement.json", "traversal_factors.png",
               "samples_standard.png", LOCK_NAME}


RUN_PATTERNS = ("sample_seed*.png", "samples_*.png", "interpolation_*.png", "denoised.npy", "noisy.npy", "denoising.png",
                "onnx")  # later commands


def _vaekit_wrote(entry: str) -> bool:
    return entry in RUN_ENTRIES or any(fnmatch.fnmatchcase(entry, pattern) for pattern in RUN_PATTERNS)


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
    foreign = sorted(e for e in entries if not _vaekit_wrote(e))
    if foreign:
        raise InputError(f"Refusing to overwrite {out}: it holds {foreign[0]!r}, which vaekit did not write; move "
                         "it away or choose another --out.")
    return [e for e in entries if e != LOCK_NAME]


def _stash_previous(out: Path) -> Path:
    """Move the entries of the run being overwritten into a temporary folder inside it."""
    entries = check_replaceable(out)
    stash = out / f".previous{TMP_TAG}{os.getpid()}-stash"
    stash.mkdir()
    for entry in entries:
        os.rename(out / entry, stash / entry)
    return stash


def _restore_previous(out: Path, stash: Path) -> None:
    """Put an overwritten run back where a replacement failed before saving anything."""
    for entry in os.listdir(stash):
        if not (out / entry).exists():
            os.rename(stash / entry, out / entry)
    shutil.rmtree(stash, ignore_errors=True)


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
        if entry in RUN_ENTRIES or (is_temporary(entry) and not entry.startswith(".previous")):
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
