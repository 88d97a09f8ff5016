"""The anomaly detector's choices and defaults, for the command line to offer without importing
the detector (and scikit-learn with it)."""

SCORES = ("elbo", "nll", "recon")
DETECTOR_MODELS = ("vae", "conv")  # the families a detector is built from
DEFAULT_SCORING = "nll"
DEFAULT_LATENT_DIM = 40
