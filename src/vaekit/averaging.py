"""An exponential moving average (EMA) of a model's weights, kept beside the trained ones.

After each optimizer step t, every parameter's average moves towards it:

    avg <- d_t * avg + (1 - d_t) * param,    d_t = min(decay, (1 + t) / (10 + t))

(the warm-up of d_t keeps the first averages from being dominated by the initial weights). The
average is what validation sees and what is saved and returned; the optimizer keeps stepping the
trained weights, which the checkpoint keeps too, so a resumed run continues exactly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import InputError

PREFIX = "average."  # names of the averaged tensors in a checkpoint


class WeightAverage:
    """The EMA of `params` with `decay` in (0, 1)."""

    def __init__(self, params, decay: float):
        if not 0.0 < decay < 1.0:
            raise InputError(f"The weight average's decay must lie between 0 and 1 (e.g. 0.999), not {decay!r}.")
        self.decay = decay
        self.params = list(params)
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average again at the current weights."""
        for avg, p in zip(self.average, self.params):
            avg.copy_(p.detach())

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the weights after optimizer step `step` (0 for the first)."""
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], weight)  # one call for all tensors

    @contextmanager
    @torch.no_grad()
    def applied(self):
        """Inside, the parameters hold the average; the trained weights are put back after."""
        trained = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            for p, w in zip(self.params, trained):
                p.copy_(w)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the parameters with the average (at the end of training)."""
        for p, avg in zip(self.params, self.average):
            p.copy_(avg)

    def state(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by checkpoint name."""
        return {f"{PREFIX}{i}": avg.detach().contiguous().cpu() for i, avg in enumerate(self.average)}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state` wrote; a missing or misshapen tensor is a ValueError."""
        for i, avg in enumerate(self.average):
            saved = tensors[f"{PREFIX}{i}"]
            if saved.shape != avg.shape:
                raise ValueError(f"averaged tensor {i} has shape {tuple(saved.shape)}, not {tuple(avg.shape)}")
            avg.copy_(saved)
