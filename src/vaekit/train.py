"""The Trainer: in-memory batches, Adam, KL warm-up, validation, early stopping, checkpoints.

    trainer = Trainer(model, TrainConfig(epochs=10), out_dir="runs/mnist")
    history = trainer.fit(train_data, val_data)

With `out_dir`, each epoch appends to `metrics.jsonl`, redraws `loss_curve.png`, saves the best
model to `model/` and a resumable `checkpoint/` (all written atomically).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .corruption import corrupt, parse_corruption
from .data import check_probabilities, dynamic_binarize
from . import distributed as dist
from .configs import validate
from .errors import InputError
from .precision import PRECISIONS, autocast, check_precision, resolve_precision
from .atomic import atomic_write_bytes
from .averaging import WeightAverage
from .io import WEIGHTS_NAME
from .models.core import trusted_inputs
from .objectives import KLWarmup, StepOutput, iwae_loss


LR_SCHEDULES = ("constant", "cosine", "trapezoid")
TRAPEZOID_RISE, TRAPEZOID_FALL = 0.03, 0.3  # shares of the steps: linear warm-up from 0, linear decay to 0
LOG_EVERY = 10.0  # seconds between per-epoch lines without a terminal
DIVERGED = 1e10  # nats per example beyond which no model is learning (MNIST is about 100)


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training data
    batch_size: int = 128  # examples per optimizer step
    lr: float = 1e-3  # Adam learning rate
    lr_schedule: str = "constant"  # 'constant', 'cosine' (from lr down to lr / 100 at the last step) or
    #                                'trapezoid' (up from 0 over the first 3% of the steps, down to 0 over the last 30%)
    beta: float = 1.0  # weight of the KL term (beta-VAE); 1 is the ELBO
    warmup_epochs: float = 0.0  # KL warm-up: beta rises linearly from 0 over this many epochs
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised
    objective: str = "elbo"  # 'elbo' or 'iwae' (importance-weighted bound with k samples)
    k: int = 5  # samples for the IWAE objective
    binarize: bool = False  # dynamic binarization: resample Bernoulli pixels every time a batch is used
    corrupt: str = ""  # denoising VAE: encode inputs corrupted by this spec ("gaussian:0.5"), decode the clean ones
    patience: int = 0  # stop after this many epochs without validation improvement (0: never)
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: no clipping)
    trim: float = 0.0  # share of each batch with the largest loss left out of the gradient: a fit that
    #                    training data holding outliers do not steer (0: off; validation is untrimmed)
    ema: float = 0.0  # decay of a moving average of the weights that validation, the saved and the returned
    #                   model use (0: off; 0.999 averages over about the last thousand steps)
    seed: int = 0  # seeds the weights' noise, shuffling and binarization
    device: str = "auto"  # 'auto' (CUDA when present), 'cpu', 'cuda', ...
    precision: str = "auto"  # 'auto' (bf16 where fast), 'fp32', 'bf16' (autocast; fp32 weights and losses), 'fp16' (CUDA)
    channels_last: bool = True  # channels-last memory layout for image models (faster convolutions)
    compile: bool = False  # torch.compile the training step (falls back to eager if it fails)
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"Unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.objective not in ("elbo", "iwae"):
            raise InputError(f"Unknown objective {self.objective!r}; choose 'elbo' or 'iwae'.")
        if self.trim and self.objective != "elbo":
            raise InputError("trim works with the 'elbo' objective only.")
        if self.corrupt:
            parse_corruption(self.corrupt)
            if self.objective != "elbo":
                raise InputError("Denoising training (corrupt=...) works with the 'elbo' objective only.")
        check_precision(self.precision, PRECISIONS)
        validate(self)  # types and ranges: whole epochs, positive lr, beta >= 0, ...


def _tensors(data, model):
    """(x, y) tensors from a Dataset, a tensor, or an (x, y) pair, checked against the model."""
    y = None
    if isinstance(data, (tuple, list)):
        data, y = data
    elif hasattr(data, "x"):
        data, y = data.x, getattr(data, "y", None)
    x = model.check_input(data if torch.is_tensor(data) else torch.as_tensor(data))  # uint8 pixels scaled there
    if model.conditional:
        if y is None:
            raise InputError("A conditional model needs labels: give a dataset with labels y.")
        y = torch.as_tensor(y).long()
    else:
        y = None
    return x, y


class Trainer:
    """Fits a model by minimising its loss over in-memory mini-batches.

    Under `torchrun` every process trains its share of each global batch of `batch_size`
    examples, gradients are averaged across processes, and only rank 0 writes files.
    """

    def __init__(self, model, config: TrainConfig | None = None, out_dir=None, say=None, local: bool = False):
        """`say` (e.g. print): where notices go when there is no progress bar to write them into (the
        early-stopping notice; one line per epoch when no terminal shows the bar). None: silent.
        `local`: train in this process alone even under torchrun (no collectives)."""
        self.say = say
        self.dist = dist.Local if local else dist
        self.config = config or TrainConfig()
        self.model = model
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rank, self.world = self.dist.setup()
        self.device = self.dist.device_for_rank(self.config.device)
        self.precision = resolve_precision(self.config.precision, self.device)
        self.history: list[dict] = []
        self.average: WeightAverage | None = None  # the weight average of a run with config.ema
        self._step_fn = self._eager_step

    # ---- one step --------------------------------------------------------------------------
    def objective(self, x, y, beta: float, generator: torch.Generator | None = None) -> StepOutput:
        """The step's loss on a batch: `config.trim` trims it in training mode only."""
        out = self._objective(x, y, beta, generator)
        return out.trimmed(self.config.trim) if self.config.trim and self.model.training else out

    def _objective(self, x, y, beta: float, generator: torch.Generator | None = None) -> StepOutput:
        cfg = self.config
        with self._autocast():
            if cfg.objective == "iwae":
                return iwae_loss(self.model, x, y, cfg.k)
            if cfg.corrupt:
                return self.model.loss(corrupt(x, cfg.corrupt, generator), y, beta=beta,
                                       free_bits=cfg.free_bits, target=x)
            return self.model.loss(x, y, beta=beta, free_bits=cfg.free_bits)

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _eager_step(self, xb, yb, beta, gen):
        out = self.objective(xb, yb, beta, gen)
        self.scaler.scale(out.loss).backward()
        return out

    def _batch(self, x, y, idx, binarize_gen):
        xb = x[idx]
        if self.config.binarize:
            xb = dynamic_binarize(xb, binarize_gen, check=False)  # checked once in _prepare
        return xb, (y[idx] if y is not None else None)

    def _prepare(self, train, val):
        """Move model and data to the device, in the memory layout and checks the model wants."""
        cfg, model = self.config, self.model
        if cfg.corrupt and not model.capabilities.denoising:
            raise InputError(f"{type(model).__name__} cannot be trained as a denoising model; use a VAE family.")
        layout = torch.channels_last if cfg.channels_last and len(getattr(model, "data_shape", ())) == 3 \
            else torch.contiguous_format
        model.to(self.device, memory_format=layout)
        self.dist.broadcast_module(model)

        def place(data):
            x, y = _tensors(data, model)
            x = x.to(self.device, memory_format=layout) if x.dim() == 4 else x.to(self.device)
            return x, (y.to(self.device) if y is not None else None)

        x, y = place(train)
        if cfg.binarize:
            check_probabilities(x)
        xv = yv = None
        if val is not None:
            xv, yv = place(val)
            if cfg.binarize:  # the validation set is binarized once, like a test set
                xv = dynamic_binarize(xv, torch.Generator(device=xv.device).manual_seed(cfg.seed + 2))
        if model.capabilities.needs_dataset_size:
            model.set_dataset_size(len(x))  # e.g. beta-TC-VAE's N in its estimate of q(z)
        if cfg.compile:
            self._step_fn = _compiled(self._eager_step)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        return x, y, xv, yv

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, train, val=None, resume: bool = False) -> list[dict]:
        """Train on `train` (Dataset, tensor or (x, y)); validate on `val` each epoch."""
        torch.manual_seed(self.config.seed)
        x, y, xv, yv = self._prepare(train, val)  # every example checked here, once
        with trusted_inputs(self.model):
            return self._fit(x, y, xv, yv, val is not None, resume)

    def _fit(self, x, y, xv, yv, validate: bool, resume: bool) -> list[dict]:
        cfg, model = self.config, self.model
        torch.manual_seed(cfg.seed + self.rank)  # each process draws its own noise
        gens = {"shuffle": torch.Generator().manual_seed(cfg.seed),  # the same permutation on every rank
                "binarize": torch.Generator(device=self.device).manual_seed(cfg.seed + 1 + 1000 * self.rank)}
        # every rank must take part in every step, so multi-process training drops a last partial batch
        steps_per_epoch = math.ceil(len(x) / cfg.batch_size) if self.world == 1 else len(x) // cfg.batch_size
        if steps_per_epoch == 0:
            raise InputError(f"{len(x)} training examples do not fill one batch of {cfg.batch_size} across "
                             f"{self.world} processes; lower --batch-size.")
        n = min(len(x), steps_per_epoch * cfg.batch_size)  # examples seen per epoch
        warmup = KLWarmup(cfg.beta, int(cfg.warmup_epochs * steps_per_epoch))
        optimizer = _adam(model.parameters(), cfg.lr)
        self.average = WeightAverage(model.parameters(), cfg.ema) if cfg.ema else None
        state = {"epoch": 0, "step": 0, "best": math.inf, "stale": 0, "history": []}
        if resume:
            state = load_checkpoint(self.out_dir / "checkpoint", model, optimizer, gens, self.average)
            for group in optimizer.param_groups:  # a learning rate changed on resume takes effect
                group["lr"] = cfg.lr
        self.history = state["history"]
        best_weights = None
        bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
                   disable=None if cfg.progress and self.rank == 0 else True,  # None: off when not a terminal
                   unit="batch", dynamic_ncols=True)
        while state["epoch"] < cfg.epochs:
            t0 = time.perf_counter()
            try:
                sums = self._train_epoch(x, y, steps_per_epoch, optimizer, warmup, state, gens, bar)
            except _Diverged as e:
                bar.close()
                raise self._diverged(e.loss, state, best_weights) from None
            elapsed = time.perf_counter() - t0
            row = {"epoch": state["epoch"] + 1, "beta": warmup(state["step"] - 1), "seconds": round(elapsed, 3),
                   "images_per_s": round(n / elapsed, 1)}
            row.update({f"train_{k}": v.item() / n for k, v in sums.items()})
            state["epoch"] += 1
            with self._averaged():  # validation and the saved model see the weight average, if kept
                if validate:
                    row.update({f"val_{k}": v for k, v in self.evaluate(xv, yv, row["beta"]).items()})
                monitored = row.get("val_loss", row["train_loss"])
                # losses under different KL weights (a warm-up) do not compare: the first epoch at a new beta
                # is the best so far, so the saved model is never one from early in a warm-up
                comparable = state.get("best_beta") == row["beta"]
                improved = self.dist.broadcast_flag(not comparable or monitored < state["best"])
                if improved:
                    state["best"], state["best_beta"], state["stale"] = monitored, row["beta"], 0
                    best_weights = copy.deepcopy(model.state_dict())
                    if self.rank == 0 and self.out_dir is not None:
                        model.save_pretrained(self.out_dir / "model")
            if not improved and state["epoch"] * steps_per_epoch > warmup.steps:
                state["stale"] += 1
            self.history.append(row)
            bar.set_postfix(epoch=row["epoch"], loss=f"{row['train_loss']:.2f}",
                            val=f"{row.get('val_loss', float('nan')):.2f}")
            if cfg.progress and self.rank == 0 and self.say is not None and not _terminal():
                self._log_line(row, state["epoch"], cfg.epochs)
            if self.rank == 0:
                self._write_epoch(state, optimizer, gens)
            if cfg.patience and state["stale"] >= cfg.patience:
                notice = f"Early stopping after epoch {state['epoch']}: no validation improvement for {cfg.patience} epochs."
                if self.rank == 0 and cfg.progress:
                    bar.write(notice)
                elif self.rank == 0 and self.say is not None:
                    self.say(notice)
                break
        bar.close()
        if self.average is not None:
            self.average.copy_to_params()  # without validation, the model returned is the last average
        if validate and best_weights is not None:
            model.load_state_dict(best_weights)
        elif validate and self.out_dir is not None and (self.out_dir / "model").exists():
            model.load_state_dict(load_file(str(self.out_dir / "model" / WEIGHTS_NAME), device=str(self.device)))
        self.dist.barrier()
        model.eval()
        return self.history

    def _train_epoch(self, x, y, steps, optimizer, warmup, state, gens, bar) -> dict:
        """One pass over the data; returns batch-summed loss and terms (summed over ranks)."""
        cfg, model = self.config, self.model
        model.train()
        sums: dict[str, torch.Tensor] = {}
        perm = torch.randperm(len(x), generator=gens["shuffle"]).to(self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        for start in range(0, steps * cfg.batch_size, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size][self.rank::self.world]  # this rank's share of the batch
            xb, yb = self._batch(x, y, idx, gens["binarize"])
            optimizer.zero_grad(set_to_none=True)
            if cfg.lr_schedule != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, state["step"], steps * cfg.epochs)
            out = self._step_fn(xb, yb, warmup(state["step"]), gens["binarize"])
            self.dist.average_gradients(params)
            if cfg.grad_clip > 0:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
            if self.average is not None:
                self.average.update(state["step"])
            state["step"] += 1
            _accumulate(sums, out, len(xb))
            bar.update(1)
        sums = {k: self.dist.all_sum(v) for k, v in sums.items()}
        per_example = sums["loss"].item() / max(steps * cfg.batch_size, 1)
        if not math.isfinite(per_example) or abs(per_example) > DIVERGED:
            raise _Diverged(per_example)
        return sums

    def _log_line(self, row: dict, epoch: int, epochs: int) -> None:
        """One plain line per epoch (at most one per LOG_EVERY seconds, and the last) where no
        terminal shows the progress bar: logs, CI, nohup."""
        now = time.perf_counter()
        if epoch < epochs and now - getattr(self, "_logged", -math.inf) < LOG_EVERY:
            return
        self._logged = now
        left = (epochs - epoch) * row["seconds"]
        val = f", val_loss {row['val_loss']:.2f}" if "val_loss" in row else ""
        self.say(f"epoch {epoch}/{epochs}: train_loss {row['train_loss']:.2f}{val}, {row['images_per_s']:.0f} images/s, "
                 f"about {left:.0f} s left")

    def _diverged(self, loss: float, state: dict, best_weights) -> TrainingDiverged:
        """Put back the best weights so far (in memory; the saved model/ is never a diverged one)
        and say what to change."""
        epoch = state["epoch"] + 1
        saved = self.out_dir is not None and (self.out_dir / "model").exists()
        if best_weights is not None:
            self.model.load_state_dict(best_weights)
        elif saved:
            self.model.load_state_dict(load_file(str(self.out_dir / "model" / WEIGHTS_NAME), device=str(self.device)))
        kept = (f"the saved model is the best of the first {state['epoch']} epochs" if saved and state["epoch"]
                else "no epoch was saved")
        return TrainingDiverged(f"Training diverged in epoch {epoch} (loss {loss:.3g} nats per example); {kept}. "
                                f"Lower the learning rate (now {self.config.lr:g}) or clip gradients (--grad-clip 1).")

    @torch.no_grad()
    def evaluate(self, x, y=None, beta: float | None = None, batch_size: int = 1000) -> dict:
        """Mean loss and terms over (x, y) with the training objective, in eval mode."""
        self.model.eval()
        beta = self.config.beta if beta is None else beta
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            out = self.objective(x[sl], y[sl] if y is not None else None, beta)
            _accumulate(sums, out, len(x[sl]))
        self.model.train()
        return {k: v.item() / len(x) for k, v in sums.items()}

    # ---- files -----------------------------------------------------------------------------
    def _averaged(self):
        """A context in which the model holds its weight average (nothing changes without one)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _write_epoch(self, state, optimizer, gens) -> None:
        """The epoch's files beside the model: metrics, config, checkpoint and the loss curve."""
        if self.out_dir is None:
            return
        from .plots import save_loss_curve

        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write_bytes(out / "metrics.jsonl", lines.encode())
        atomic_write_bytes(out / "train_config.json", json.dumps(dataclasses.asdict(self.config), indent=2).encode())
        save_checkpoint(out / "checkpoint", self.model, optimizer, state, gens, self.average)
        save_loss_curve(self.history, out / "loss_curve.png")


def _terminal() -> bool:
    """Whether stderr (where the progress bar draws) is a terminal."""
    return sys.stderr.isatty()


class TrainingDiverged(InputError):
    """The loss became NaN, infinite or absurdly large: the settings, not the data, need changing."""


class _Diverged(Exception):
    def __init__(self, loss: float):
        self.loss = loss


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of `step` out of `total`: constant, a cosine from lr to lr / 100, or a
    trapezoid (linear rise from 0, flat at lr, linear fall to 0 at the last step)."""
    if cfg.lr_schedule == "constant" or total <= 1:
        return cfg.lr
    progress = min(step / (total - 1), 1.0)
    if cfg.lr_schedule == "trapezoid":
        rise = (step + 1) / (TRAPEZOID_RISE * total)  # the first step already moves the weights
        return cfg.lr * min(1.0, rise, (1.0 - progress) / TRAPEZOID_FALL)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def _accumulate(sums: dict, out: StepOutput, n: int) -> None:
    """Add a step's batch-summed loss and terms to running sums (no host sync)."""
    loss = out.loss.detach() * n
    sums["loss"] = sums.get("loss", 0) + loss
    for k, v in out.terms.items():
        v = v.detach()
        sums[k] = sums.get(k, 0) + (v.sum() if v.dim() else v * n)


def _compiled(step):
    """torch.compile(step), falling back to the eager step (with a warning) if compiling fails."""
    try:
        fast = torch.compile(step)
    except Exception as e:  # no compiler backend on this platform
        warnings.warn(f"torch.compile is unavailable ({e}); training without it.")
        return step

    def run(*args):
        nonlocal fast
        try:
            return fast(*args)
        except Exception as e:
            if fast is step:
                raise
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); training without it.")
            fast = step
            return step(*args)

    return run


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has one for the device (same update rule)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
