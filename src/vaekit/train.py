"""The Trainer: in-memory batches, Adam, KL warm-up, validation, early stopping, checkpoints.

    trainer = Trainer(model, TrainConfig(epochs=10), out_dir="runs/mnist")
    history = trainer.fit(train_data, val_data)

With `out_dir`, each epoch appends to `metrics.jsonl`, redraws `loss_curve.png`, saves the best
model to `model/` and a resumable `checkpoint/` (all written atomically).
"""

from __future__ import annotations

import copy
import inspect
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .corruption import corrupt, parse_corruption
from .distributions import InputError
from .io import atomic_write_bytes, load
from .objectives import KLWarmup, StepOutput, iwae_loss


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training data
    batch_size: int = 128  # examples per optimizer step
    lr: float = 1e-3  # Adam learning rate
    beta: float = 1.0  # weight of the KL term (beta-VAE); 1 is the ELBO
    warmup_epochs: float = 0.0  # KL warm-up: beta rises linearly from 0 over this many epochs
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised
    objective: str = "elbo"  # 'elbo' or 'iwae' (importance-weighted bound with k samples)
    k: int = 5  # samples for the IWAE objective
    binarize: bool = False  # dynamic binarization: resample Bernoulli pixels every time a batch is used
    corrupt: str = ""  # denoising VAE: encode inputs corrupted by this spec ("gaussian:0.5"), decode the clean ones
    patience: int = 0  # stop after this many epochs without validation improvement (0: never)
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: no clipping)
    seed: int = 0  # seeds the weights' noise, shuffling and binarization
    device: str = "auto"  # 'auto' (CUDA when present), 'cpu', 'cuda', ...
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        if self.objective not in ("elbo", "iwae"):
            raise InputError(f"Unknown objective {self.objective!r}; choose 'elbo' or 'iwae'.")
        if self.corrupt:
            parse_corruption(self.corrupt)
            if self.objective != "elbo":
                raise InputError("Denoising training (corrupt=...) works with the 'elbo' objective only.")
        if self.epochs < 0 or self.batch_size < 1 or self.k < 1:
            raise InputError("epochs must be >= 0, and batch_size and k >= 1.")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _tensors(data, model):
    """(x, y) tensors from a Dataset, a tensor, or an (x, y) pair, checked against the model."""
    y = None
    if isinstance(data, (tuple, list)):
        data, y = data
    elif hasattr(data, "x"):
        data, y = data.x, getattr(data, "y", None)
    x = model.check_input(torch.as_tensor(data, dtype=torch.float32))
    if getattr(model, "conditional", False):
        if y is None:
            raise InputError("A conditional model needs labels: give a dataset with labels y.")
        y = torch.as_tensor(y).long()
    else:
        y = None
    return x, y


class Trainer:
    """Fits a model by minimising its loss over in-memory mini-batches."""

    def __init__(self, model, config: TrainConfig | None = None, out_dir=None):
        self.config = config or TrainConfig()
        self.model = model
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = _device(self.config.device)
        self.history: list[dict] = []

    # ---- one step --------------------------------------------------------------------------
    def objective(self, x, y, beta: float, generator: torch.Generator | None = None) -> StepOutput:
        cfg = self.config
        if cfg.objective == "iwae":
            return iwae_loss(self.model, x, y, cfg.k)
        if cfg.corrupt:
            return self.model.loss(corrupt(x, cfg.corrupt, generator), y, beta=beta, free_bits=cfg.free_bits, target=x)
        return self.model.loss(x, y, beta=beta, free_bits=cfg.free_bits)

    def _batch(self, x, y, idx, binarize_gen):
        xb = x[idx]
        if self.config.binarize:
            xb = torch.bernoulli(xb, generator=binarize_gen)
        return xb, (y[idx] if y is not None else None)

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, train, val=None, resume: bool = False) -> list[dict]:
        """Train on `train` (Dataset, tensor or (x, y)); validate on `val` each epoch."""
        cfg, model = self.config, self.model
        if cfg.corrupt and "target" not in inspect.signature(model.loss).parameters:
            raise InputError(f"{type(model).__name__} cannot be trained as a denoising VAE; use VAE, ConvVAE or CVAE.")
        torch.manual_seed(cfg.seed)
        gens = {"shuffle": torch.Generator().manual_seed(cfg.seed),
                "binarize": torch.Generator(device=self.device).manual_seed(cfg.seed + 1)}
        model.to(self.device)
        x, y = (t.to(self.device) if t is not None else None for t in _tensors(train, model))
        if val is not None:
            xv, yv = (t.to(self.device) if t is not None else None for t in _tensors(val, model))
            if cfg.binarize:
                xv = torch.bernoulli(xv, generator=torch.Generator(device=xv.device).manual_seed(cfg.seed + 2))
        n = len(x)
        if getattr(model.config, "dataset_size", 0) is None:
            model.config.dataset_size = n  # beta-TC-VAE's N in its estimate of q(z)
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        warmup = KLWarmup(cfg.beta, int(cfg.warmup_epochs * steps_per_epoch))
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        state = {"epoch": 0, "step": 0, "best": math.inf, "stale": 0, "history": []}
        if resume:
            state = load_checkpoint(self.out_dir / "checkpoint", model, optimizer, gens)
        self.history = state["history"]
        best_weights = None
        bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
                   disable=None if cfg.progress else True, unit="batch", dynamic_ncols=True)  # None: off when not a terminal
        while state["epoch"] < cfg.epochs:
            t0 = time.perf_counter()
            model.train()
            sums: dict[str, torch.Tensor] = {}
            perm = torch.randperm(n, generator=gens["shuffle"]).to(self.device)
            for start in range(0, n, cfg.batch_size):
                xb, yb = self._batch(x, y, perm[start:start + cfg.batch_size], gens["binarize"])
                beta = warmup(state["step"])
                out = self.objective(xb, yb, beta, gens["binarize"])
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                state["step"] += 1
                _accumulate(sums, out, len(xb))
                bar.update(1)
            if not math.isfinite(sums["loss"].item()):
                raise FloatingPointError(
                    f"The loss became {sums['loss'].item()} in epoch {state['epoch'] + 1}; "
                    "lower the learning rate or set grad_clip."
                )
            elapsed = time.perf_counter() - t0
            row = {"epoch": state["epoch"] + 1, "beta": beta, "seconds": round(elapsed, 3),
                   "images_per_s": round(n / elapsed, 1)}
            row.update({f"train_{k}": v.item() / n for k, v in sums.items()})
            if val is not None:
                row.update({f"val_{k}": v for k, v in self.evaluate(xv, yv, beta).items()})
            state["epoch"] += 1
            monitored = row.get("val_loss", row["train_loss"])
            improved = monitored < state["best"]
            if improved:
                state["best"], state["stale"] = monitored, 0
                best_weights = copy.deepcopy(model.state_dict())
            elif state["epoch"] * steps_per_epoch > warmup.steps:
                state["stale"] += 1
            self.history.append(row)
            bar.set_postfix(epoch=row["epoch"], loss=f"{row['train_loss']:.2f}",
                            val=f"{row.get('val_loss', float('nan')):.2f}")
            self._write_epoch(state, optimizer, gens, improved)
            if cfg.patience and state["stale"] >= cfg.patience:
                bar.write(f"Early stopping after epoch {state['epoch']}: no validation improvement "
                          f"for {cfg.patience} epochs.")
                break
        bar.close()
        if val is not None and best_weights is not None:
            model.load_state_dict(best_weights)
        elif val is not None and self.out_dir is not None and (self.out_dir / "model").exists():
            model.load_state_dict(load(self.out_dir / "model", map_location=self.device).state_dict())
        model.eval()
        return self.history

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
    def _write_epoch(self, state, optimizer, gens, improved: bool) -> None:
        if self.out_dir is None:
            return
        from .plots import save_loss_curve

        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        if improved:
            self.model.save_pretrained(out / "model")
        lines = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write_bytes(out / "metrics.jsonl", lines.encode())
        atomic_write_bytes(out / "train_config.json", json.dumps(dataclasses.asdict(self.config), indent=2).encode())
        save_checkpoint(out / "checkpoint", self.model, optimizer, state, gens)
        save_loss_curve(self.history, out / "loss_curve.png")


def _accumulate(sums: dict, out: StepOutput, n: int) -> None:
    """Add a step's batch-summed loss and terms to running sums (no host sync)."""
    loss = out.loss.detach() * n
    sums["loss"] = sums.get("loss", 0) + loss
    for k, v in out.terms.items():
        v = v.detach()
        sums[k] = sums.get(k, 0) + (v.sum() if v.dim() else v * n)
