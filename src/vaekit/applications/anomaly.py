"""Anomaly detection by reconstruction error, as in the chapter."""

from __future__ import annotations

import torch.nn.functional as F


def detect_anomaly(x, model, threshold, y=None):
    """The chapter's detector: (is_anomaly, recon_error), the summed squared error of one
    stochastic reconstruction per example, flagged where it exceeds `threshold`."""
    x_recon, mu, logvar = model(x) if y is None else model(x, y)
    recon_error = F.mse_loss(x_recon.reshape(len(x_recon), -1), x.reshape(len(x_recon), -1), reduction="none").sum(dim=1)
    is_anomaly = recon_error > threshold
    return is_anomaly, recon_error
