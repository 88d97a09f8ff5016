"""Uses of a trained VAE: anomaly detection, data augmentation, denoising."""

from .anomaly import detect_anomaly
from .detector import AnomalyDetector, save_error_maps
from .pyod_style import PyODDetector
from .augment import augment, pseudo_label, save_npz
from .denoise import denoise, psnr

__all__ = ["detect_anomaly", "AnomalyDetector", "PyODDetector", "save_error_maps", "augment", "pseudo_label", "save_npz", "denoise", "psnr"]
