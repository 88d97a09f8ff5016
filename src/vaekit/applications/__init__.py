"""Uses of a trained VAE: anomaly detection, data augmentation, denoising."""

from .anomaly import detect_anomaly

__all__ = ["detect_anomaly"]
