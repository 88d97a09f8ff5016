"""What a training run does for generation once the model is trained: fit a prior to its codes
(so that samples come from where the decoder was trained), save it with the model, and measure
sample quality against the test images, with N(0, I) samples and the reference rows beside."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import InputError
from .features import FEATURE_SETS

QUALITY_FILE = "sample_quality.json"
RUN_QUALITY_IMAGES = 2000  # a run measures this many samples against the first this many test images
FIT_PRIOR_CHOICES = ("auto", "gmm", "diffusion", "none")
# 'auto' fits the mixture to codes of at most this many values: a full-covariance mixture's EM costs
# codes x components x values^2, about 20 s for MNIST's 20-value codes on two cores; for the 392 values
# of the hierarchical VAE's top group (8 x 7 x 7) 10 components on 5,000 codes took 22 s of one core,
# so the BIC search on 60,000 codes would take about 40 core-minutes
AUTO_GMM_MAX_DIM = 64


def takes_fitted_prior(model) -> bool:
    """Models whose samples can come from a fitted prior: continuous codes of a fixed size."""
    return hasattr(model, "use_prior") and model.capabilities.latent == "vector"


def run_prior_kind(kind: str, model, say=print) -> str:
    """The prior a run fits after training: `kind`, with 'auto' as 'gmm' for codes of at most
    AUTO_GMM_MAX_DIM values and 'none' (said, with how to fit one later) for larger codes."""
    if not takes_fitted_prior(model):
        return "none"
    if kind != "auto":
        return kind
    if model.latent_dim <= AUTO_GMM_MAX_DIM:
        return "gmm"
    say(f"No prior fitted to the codes: a mixture over {model.latent_dim} values per code would take tens of "
        "minutes; samples come from the model's own prior (fit one later with `vaekit prior fit RUN --kind gmm`).")
    return "none"


def fit_run_prior(model, train_set, out: Path, kind: str, seed: int = 0, say=print, progress: bool = False) -> None:
    """Fit a `kind` prior to the training codes, attach it and re-save the model with it."""
    from .priors import fit_prior

    start = time.perf_counter()
    prior = fit_prior(model, train_set, kind, seed=seed, say=say if progress else None, progress=progress)
    what = f"{prior.config.components} components" if kind == "gmm" else f"{prior.config.sample_steps} DDIM steps"
    say(f"Fitted a {kind} prior ({what}) to the codes of {codes_used(kind, len(train_set))} training examples in "
        f"{time.perf_counter() - start:.1f} s; samples come from it (vaekit sample RUN --prior standard: from N(0, I))")
    model.save_pretrained(out / "model")


def codes_used(kind: str, n: int) -> str:
    """How many of n training codes a prior of `kind` is fitted to, in words."""
    from .priors.gmm import MAX_CODES

    return f"a random {MAX_CODES} of the {n}" if kind == "gmm" and n > MAX_CODES else str(n)


def shows_quality(model, train) -> bool:
    """Whether a run measures sample quality: image models on data vaekit has a feature network for."""
    return train.name in FEATURE_SETS and getattr(model, "image_shape", None) is not None


def run_quality(model, train, data_dir, seed: int = 0) -> dict[str, dict] | None:
    """Sample-quality rows (`vaekit.quality`) of a run's model against the first RUN_QUALITY_IMAGES
    images of the test split of its training data `train`, or None where vaekit ships no feature
    network for the data. (`vaekit evaluate RUN --samples 10000` measures on the whole test set.)"""
    from .data import load_dataset
    from .quality import quality_rows

    if not shows_quality(model, train):
        return None
    test = load_dataset(train.name, "test", data_dir=data_dir, limit=RUN_QUALITY_IMAGES)
    return quality_rows(model, test, train=train, seed=seed)


def write_quality(rows: dict[str, dict], out: Path) -> Path:
    path = Path(out) / QUALITY_FILE
    atomic_write_bytes(path, (json.dumps(rows, indent=2) + "\n").encode())
    return path


def check_fit_prior(kind: str) -> str:
    if kind not in FIT_PRIOR_CHOICES:
        raise InputError(f"--fit-prior {kind!r}: choose one of {', '.join(FIT_PRIOR_CHOICES)}.")
    return kind
