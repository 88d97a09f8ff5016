"""Anomaly detection by reconstruction error, as in the chapter."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def detect_anomaly(x, model, threshold, y=None):
    """The chapter's detector: (is_anomaly, recon_error), the summed squared error of one
    stochastic reconstruction per example, flagged where it exceeds `threshold`."""
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"detect_anomaly(x, model, threshold): model must be a vaekit model, not {type(model).__name__} "
                         "(check the order of the arguments).")
    x = model.as_batch(x)  # NumPy arrays, float64, uint8 pixels: as the model takes them
    x_recon, mu, logvar = model(x) if y is None else model(x, y)
    recon_error = F.mse_loss(x_recon.reshape(len(x_recon), -1), x.reshape(len(x_recon), -1), reduction="none").sum(dim=1)
    is_anomaly = recon_error > threshold
    return is_anomaly, recon_error
