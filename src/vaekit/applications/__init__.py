"""Uses of a trained VAE: anomaly detection, data augmentation, denoising.

The names load on first use, so that importing the package (as every `vaekit` command does) does
not import scikit-learn, which the detector is built on (1.7 s).
"""

import importlib

from .augment import augment, pseudo_label, save_npz  # named like their modules: bound here, not lazily
from .denoise import denoise, psnr

_HOME = {"detect_anomaly": "anomaly", "AnomalyDetector": "detector", "save_error_maps": "detector",
         "PyODDetector": "pyod_style"}  # name -> the module that defines it, imported on first use

__all__ = [*_HOME, "augment", "pseudo_label", "save_npz", "denoise", "psnr"]


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
