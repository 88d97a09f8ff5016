"""A scikit-learn style anomaly detector: a VAE fitted on normal data scores how unusual new data are.

    det = AnomalyDetector(epochs=30).fit(X_normal)
    det.predict(X)            # +1 normal, -1 anomaly
    det.score_samples(X)      # higher is more normal (scikit-learn's convention)
    det.anomaly_score(X)      # higher is more anomalous: -score_samples
    det.error_map(X)          # which pixels / features make an example unusual

Images (N, H, W), (N, C, H, W) or flat rows with `image_shape` are modelled as they are (pixels
in [0, 1]) with a fixed-variance Gaussian likelihood (sigma 0.1); tables (N, D) are standardized with the training mean and standard
deviation and modelled with a Gaussian likelihood whose variance the decoder predicts. A share of
the data is held out to pick the best epoch. The threshold is the score that a `contamination`
fraction of the training data exceed, or, with `target_fpr`, the score that that fraction of the
held-out normal data exceed (the false-positive rate one asks for).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError, InputTypeError
from .choices import DEFAULT_LATENT_DIM, DEFAULT_SCORING, DETECTOR_MODELS, SCORES
from ..objectives import log_mean_exp

GRAD_CLIP = 10.0  # gradient-norm clip: heavy-tailed tables (ODDS shuttle) drove a learned-variance decoder to NaN
SCORE_BATCH = 256  # rows per scoring pass (fixed: see AnomalyDetector._batches)
# Standardized table values are clipped here. A column that barely varies in the training rows
# (a pixel that is almost always 0) puts a new value hundreds of standard deviations out, where the
# VAE's ELBO overflows to -inf (seen on 8x8 digits with one digit's images as training data);
# clipped, such a row still scores far below every normal one, and the scores stay finite.
MAX_STANDARD = 25.0
IMAGE_SIGMA = 0.1  # the images' Gaussian standard deviation unless told (see the `likelihood` parameter)
TABLE_TRIM = 0.05  # the share of each batch of table rows left out of the gradient unless told (`trim`)
TABLE_MIN_SIGMA = math.exp(-2.0)  # the smallest standard deviation (in the feature's) a table's decoder predicts
FITTED = ("image_shape_", "n_features_in_", "mean_", "scale_", "likelihood_", "sigma_", "history_", "model_",
          "calibration_scores_", "threshold_", "offset_")  # what fit sets
DETECTOR_FILE = "detector.json"
FORMAT = "vaekit-anomaly-detector"


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """One-class anomaly detection with a VAE, with scikit-learn's outlier-detector interface.

    Parameters (stored as given; `fit` reads them):

    model: 'vae' (the chapter's MLP) or 'conv' (ConvVAE, images only).
    scoring: what makes an example anomalous, in nats or squared units, higher = more anomalous:
        'nll' (the default) the importance-sampled negative log-likelihood -log p(x) with
        `n_samples` samples; 'elbo' the negative ELBO (reconstruction log-likelihood averaged over
        `n_samples` posterior samples, plus the KL to the prior), a looser bound from the same
        passes; 'recon' the summed squared error of the deterministic reconstruction (the chapter's).
        'nll' is the default because it ranked best over the 12 ODDS tables (mean AUROC 0.796 over
        seeds 0-2 against 0.790 for 'elbo' and 0.791 for IsolationForest; benchmarks/RESULTS.md);
        a fixed-variance Gaussian was as good on average but fell on optdigits (0.54 against 0.71),
        and a narrower (128, 64) network fell on musk. The same defaults serve every table.
    latent_dim: 40 by default: over the ODDS tables (seeds 0-2, 'nll' scoring) 8 dimensions gave
        a mean AUROC of 0.778, 20 gave 0.796, 40 gave 0.804 and 64 gave 0.797 (optdigits fell);
        dimensions the data do not need stay at the prior and cost nothing in the score.
    hidden_dims: the MLP's hidden widths (model='vae') or the convolutions' channels (model='conv');
        None: the family's defaults, (512, 256) and (32, 64).
    latent_dim, epochs, batch_size, lr, beta, seed: the model's size and its training (Adam);
        epochs=None trains for about 2000 optimizer steps (at least 10 and at most 500 epochs).
    likelihood: p(x|z): None for a fixed-sigma Gaussian on images and, on (standardized) tables, a
        Gaussian whose standard deviation the decoder predicts per value ('gaussian-learned'); or
        'bernoulli', 'gaussian' (fixed sigma), 'gaussian-learned'. sigma: the fixed Gaussian's
        standard deviation (None: 0.1 for images, 1.0 for tables, in standard deviations of each
        feature). On one-class 8x8 digits (about 90 training images) sigma 0.1 scored a mean AUROC
        of 99.50 against 99.20 for sigma 0.2 and about 97 for a Bernoulli decoder, whose
        cross-entropy barely separates grey levels; sigma 0.1 is also what one-class MNIST uses.
    image_shape: (C, H, W) or (H, W) of flat rows that are images; None reads 3-D and 4-D arrays
        as images and 2-D arrays as tables.
    contamination: the share of X expected to be anomalous: the threshold is the (1 - contamination)
        quantile of the scores of all of X, so fit_predict(X) flags that share (without target_fpr).
    target_fpr: the false-positive rate wanted on normal data: the threshold is the (1 - target_fpr)
        quantile of the scores of the held-out part of X, which training never saw.
    validation_fraction: the share of X held out of training (0: none). It keeps the weights of the
        epoch with the best held-out loss, stops training after `patience` epochs without
        improvement (0: never), and sets the threshold for target_fpr.
    trim: the share of each training batch with the largest loss left out of the gradient, so that
        the outliers a training set holds do not steer the fit (TrainConfig.trim; 0: every example).
        None: 0.05 for tables and 0 for images (their one-class benchmarks train on clean sets, and
        their defaults were measured untrimmed). 0.05 was chosen together with TABLE_MIN_SIGMA over
        the 12 ODDS tables (benchmarks/RESULTS.md): trimming alone lifted musk from 0.93 to 1.00
        AUROC but sank optdigits, whose rarest normal rows it left out too, until a table's decoder
        was kept from predicting standard deviations below e^-2 of each feature's.
    n_samples: posterior samples per example for 'elbo' and importance samples for 'nll'. Every
        example gets the same standard-normal draws (fixed by `seed`), so a score is reproducible
        and does not depend on which other examples are scored with it, or in what order.
    device: 'auto' (CUDA when present), 'cpu', 'cuda', ...; progress: show a training progress bar.

    Fitted attributes: model_ (the trained VAE), threshold_ (anomaly-score threshold), offset_
    (= -threshold_, scikit-learn's), likelihood_, sigma_ (None unless 'gaussian'), image_shape_
    (None for tables), n_features_in_, mean_ and scale_ (standardization of tables, else None;
    standardized values are clipped at +-MAX_STANDARD),
    history_ (training log), calibration_scores_ (the scores the threshold was taken from).
    """

    def __init__(self, model: str = "vae", scoring: str = DEFAULT_SCORING, latent_dim: int = DEFAULT_LATENT_DIM, epochs: int | None = None,
                 batch_size: int = 128, lr: float = 1e-3, beta: float = 1.0, likelihood: str | None = None,
                 sigma: float | None = None, image_shape=None, contamination: float = 0.05,
                 target_fpr: float | None = None, validation_fraction: float = 0.2, patience: int = 20,
                 n_samples: int = 10, seed: int = 0, device: str = "auto", progress: bool = False,
                 hidden_dims: tuple | None = None, trim: float | None = None):
        self.model = model
        self.hidden_dims = hidden_dims
        self.scoring = scoring
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.likelihood = likelihood
        self.sigma = sigma
        self.image_shape = image_shape
        self.contamination = contamination
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.n_samples = n_samples
        self.seed = seed
        self.device = device
        self.progress = progress
        self.trim = trim

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train the VAE on X (normal data; y is ignored) and set the threshold. Returns self."""
        from ..models.registry import build_model
        from ..train import Trainer, TrainConfig

        self._check_params()
        for name in FITTED:  # a failed fit must not leave a previous fit's state half replaced
            self.__dict__.pop(name, None)
        x = _as_tensor(X)
        if len(x) < 2:
            raise InputError(f"fit needs at least 2 examples, got n_samples={len(x)}.")
        self.image_shape_ = self._image_shape(x)
        self.n_features_in_ = math.prod(x.shape[1:])
        x = x.reshape(len(x), *self.image_shape_) if self.image_shape_ else x.reshape(len(x), -1)
        self._check_pixels(x)
        if self.image_shape_ is None:
            stats = x.double()
            self.mean_ = stats.mean(0).numpy()
            scale = stats.std(0, correction=0).numpy()
            self.scale_ = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self.mean_)), scale, 1.0)
        else:
            self.mean_ = self.scale_ = None
        self.likelihood_ = self.likelihood or ("gaussian" if self.image_shape_ else "gaussian-learned")
        self.sigma_ = None if self.likelihood_ != "gaussian" else float(
            self.sigma if self.sigma is not None else (IMAGE_SIGMA if self.image_shape_ else 1.0))
        x = self._standardize(x)

        train, held_out = x, None
        n_val = round(len(x) * self.validation_fraction)
        if self.target_fpr is not None and not 1 <= n_val < len(x) - 1:
            raise InputError(
                f"target_fpr needs held-out normal data, but validation_fraction={self.validation_fraction} of "
                f"{len(x)} examples holds out {n_val}; give more data, or use contamination instead."
            )
        if 1 <= n_val < len(x) - 1:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
            train, held_out = x[order[n_val:]], x[order[:n_val]]

        steps = math.ceil(len(train) / self.batch_size)
        epochs = self.epochs if self.epochs is not None else min(500, max(10, math.ceil(2000 / steps)))
        device = _device(self.device)
        with _seeded(self.seed, device):
            net = build_model(self.model, self.image_shape_ or (self.n_features_in_,), None, self.latent_dim,
                              self.likelihood_, **self._model_options())
            config = TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr, beta=self.beta,
                                 grad_clip=GRAD_CLIP, trim=self._trim(),
                                 patience=self.patience if held_out is not None else 0, seed=self.seed,
                                 device=str(device), progress=self.progress)
            self.history_ = Trainer(net, config).fit(train, held_out)
        self.model_ = net.eval()
        if self.target_fpr is None:
            calibration, quantile = x, 1 - self.contamination
        else:
            calibration, quantile = held_out, 1 - self.target_fpr
        self.calibration_scores_ = self._anomaly_scores(calibration)
        self.threshold_ = float(np.quantile(self.calibration_scores_, quantile))
        self.offset_ = -self.threshold_
        return self

    def calibrate(self, X_normal, target_fpr: float):
        """Move the threshold so that a `target_fpr` share of X_normal (held-out normal data) is flagged."""
        check_is_fitted(self, "model_")
        if not 0 < target_fpr < 1:
            raise InputError(f"target_fpr must lie strictly between 0 and 1, not {target_fpr}.")
        self.calibration_scores_ = self.anomaly_score(X_normal)
        self.threshold_ = float(np.quantile(self.calibration_scores_, 1 - target_fpr))
        self.offset_ = -self.threshold_
        return self

    # ---- scikit-learn's outlier interface ----------------------------------------------------
    def anomaly_score(self, X) -> np.ndarray:
        """Per-example anomaly score (N,): higher is more anomalous (negative ELBO, NLL or squared error)."""
        check_is_fitted(self, "model_")
        return self._anomaly_scores(self._transform(X))

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's normality score (N,): the negated anomaly score, so higher is more normal."""
        return -self.anomaly_score(X)

    def decision_function(self, X) -> np.ndarray:
        """score_samples - offset_ (N,): negative for anomalies, positive for normal examples."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for normal examples, -1 for anomalies (anomaly score above threshold_)."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    # ---- explaining a flagged example ----------------------------------------------------------
    def reconstruct(self, X) -> np.ndarray:
        """The model's reconstructions (decoded posterior means) in the data's units.

        Images come back as (N, C, H, W), tables as (N, D) in their original (unstandardized) units.
        """
        check_is_fitted(self, "model_")
        x = self._transform(X)
        with torch.no_grad():
            rec = torch.cat([self.model_.eval().reconstruct(b)[:n].cpu() for b, n in self._batches(x)]).double().numpy()
        rec = rec.reshape(len(x), -1)
        if self.image_shape_:
            return rec.reshape(len(x), *self.image_shape_)
        return rec * self.scale_ + self.mean_

    def error_map(self, X) -> np.ndarray:
        """How much each pixel or feature contributes to an example's anomaly score: (N, C, H, W) or (N, D).

        For scoring='recon' the squared error of the reconstruction; otherwise each value's negative
        log-likelihood under the reconstruction, less what a perfect reconstruction would cost:
        the per-pixel KL(x || x_hat) for a Bernoulli likelihood, (x - x_hat)^2 / (2 sigma^2) for a
        Gaussian (sigma fixed, or the one the decoder predicts for that value; tables in standard
        deviations). Every value is >= 0; large values are what the model did not expect.
        """
        check_is_fitted(self, "model_")
        x = self._transform(X)
        maps = [self._error_map(b)[:n].cpu() for b, n in self._batches(x)]
        shape = self.image_shape_ or (self.n_features_in_,)
        return torch.cat(maps).double().numpy().reshape(len(x), *shape)

    # ---- saving ----------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write the fitted detector to `folder`: `model/` (config.json + safetensors) and detector.json."""
        from ..atomic import atomic_dir

        check_is_fitted(self, "model_")
        state = {
            "format": FORMAT,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()},
            "threshold": self.threshold_,
            "likelihood": self.likelihood_,
            "sigma": self.sigma_,
            "image_shape": list(self.image_shape_) if self.image_shape_ else None,
            "n_features_in": self.n_features_in_,
            "mean": None if self.mean_ is None else [float(v) for v in self.mean_],
            "scale": None if self.scale_ is None else [float(v) for v in self.scale_],
        }
        with atomic_dir(folder) as tmp:
            self.model_.save_pretrained(tmp / "model")
            (tmp / DETECTOR_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return Path(folder)

    @classmethod
    def load(cls, folder, device: str | None = None) -> "AnomalyDetector":
        """A detector saved by `save` (or the `detector/` folder of a `vaekit anomaly fit` run)."""
        from ..loading import load

        folder = Path(folder)
        if not (folder / DETECTOR_FILE).exists() and (folder / "detector" / DETECTOR_FILE).exists():
            folder = folder / "detector"
        path = folder / DETECTOR_FILE
        if not path.exists():
            raise InputError(f"{folder} is not a saved anomaly detector (it has no {DETECTOR_FILE}); give a folder "
                             "written by AnomalyDetector.save or `vaekit anomaly fit`.")
        try:
            state = json.loads(path.read_text())
            if state.get("format") != FORMAT:
                raise KeyError("format")
            params = {"trim": 0.0, **state["params"]}  # detectors saved before trim existed trained untrimmed
            if params.get("image_shape") is not None:
                params["image_shape"] = tuple(params["image_shape"])
            if device is not None:
                params["device"] = device
            det = cls(**params)
            det.threshold_ = float(state["threshold"])
            det.likelihood_, det.sigma_ = state["likelihood"], state["sigma"]
            det.image_shape_ = tuple(state["image_shape"]) if state["image_shape"] else None
            det.n_features_in_ = int(state["n_features_in"])
            det.mean_ = None if state["mean"] is None else np.asarray(state["mean"], dtype=np.float64)
            det.scale_ = None if state["scale"] is None else np.asarray(state["scale"], dtype=np.float64)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{path} is corrupt or not a vaekit detector file ({e}); re-save the detector.") from None
        det.offset_ = -det.threshold_
        det.model_ = load(folder / "model", map_location=_device(det.device))
        return det

    # ---- internals -------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.model not in DETECTOR_MODELS:
            raise InputError(f"Unknown model {self.model!r} for anomaly detection; choose one of {', '.join(DETECTOR_MODELS)}.")
        if self.scoring not in SCORES:
            raise InputError(f"Unknown scoring {self.scoring!r}; choose one of {', '.join(SCORES)}.")
        if self.target_fpr is None and not 0 < self.contamination < 0.5:
            raise InputError(f"contamination must lie strictly between 0 and 0.5, not {self.contamination}.")
        if self.target_fpr is not None and not 0 < self.target_fpr < 1:
            raise InputError(f"target_fpr must lie strictly between 0 and 1, not {self.target_fpr}.")
        if not 0 <= self.validation_fraction < 1:
            raise InputError(f"validation_fraction must lie in [0, 1), not {self.validation_fraction}.")
        if self.patience < 0:
            raise InputError(f"patience must be 0 (never stop early) or a number of epochs, not {self.patience}.")
        if self.n_samples < 1 or self.latent_dim < 1 or self.batch_size < 1:
            raise InputError("n_samples, latent_dim and batch_size must be positive integers.")
        if self.trim is not None and not (isinstance(self.trim, (int, float)) and 0 <= self.trim < 1):
            raise InputError(f"trim must lie in [0, 1), not {self.trim!r}.")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be a positive integer or None, not {self.epochs}.")

    def _image_shape(self, x: torch.Tensor):
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            shape = (1, *shape) if len(shape) == 2 else shape
            if len(shape) != 3 or math.prod(shape) != math.prod(x.shape[1:]):
                raise InputError(f"image_shape {tuple(self.image_shape)} does not fit examples of "
                                 f"{math.prod(x.shape[1:])} values; give (C, H, W) or (H, W) of one image.")
            return shape
        if x.dim() == 4:
            return tuple(x.shape[1:])
        if self.model == "conv":
            raise InputError("model='conv' needs images: give (N, H, W) or (N, C, H, W) arrays, or image_shape.")
        return None

    def _trim(self) -> float:
        return float(self.trim) if self.trim is not None else (0.0 if self.image_shape_ else TABLE_TRIM)

    def _model_options(self) -> dict:
        options = {"sigma": self.sigma_} if self.likelihood_ == "gaussian" else {}
        if self.likelihood_ == "gaussian-learned" and self.image_shape_ is None:
            options["min_sigma"] = TABLE_MIN_SIGMA
        if self.hidden_dims is not None:
            options["hidden_dims" if self.model == "vae" else "channels"] = tuple(self.hidden_dims)
        return options

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Table rows in standard units, clipped at +-MAX_STANDARD (images unchanged)."""
        if self.mean_ is None:
            return x.float()
        z = (x.double() - torch.from_numpy(self.mean_)) / torch.from_numpy(self.scale_)
        return z.clamp(-MAX_STANDARD, MAX_STANDARD).float()

    def _transform(self, X) -> torch.Tensor:
        """X as the fitted model's input: checked, reshaped, standardized for tables."""
        x = _as_tensor(X)
        size = math.prod(x.shape[1:])
        if size != self.n_features_in_:
            what = f" (images of shape {self.image_shape_})" if self.image_shape_ else ""
            raise InputError(f"X has {size} features, but AnomalyDetector is expecting {self.n_features_in_} features "
                             f"as input{what}; give data of the same layout.")
        x = x.reshape(len(x), *self.image_shape_) if self.image_shape_ else x.reshape(len(x), -1)
        self._check_pixels(x)
        return self.model_.check_input(self._standardize(x))  # e.g. values outside [0, 1] for a Bernoulli

    def _check_pixels(self, x: torch.Tensor) -> None:
        """Images under the default likelihood must be in [0, 1], the units of its sigma."""
        if self.image_shape_ and self.likelihood is None and len(x) and not 0 <= float(x.min()) <= float(x.max()) <= 1:
            raise InputError(
                f"Images are expected with pixels in [0, 1] (the default Gaussian's sigma {IMAGE_SIGMA} is in "
                f"those units), but these range over [{float(x.min()):.4g}, {float(x.max()):.4g}]; scale them "
                "(e.g. divide by 255), or give likelihood='gaussian' with a sigma in their units.")

    def _batches(self, x: torch.Tensor, size: int = SCORE_BATCH):
        """Batches of exactly `size` rows, the last one padded with copies of its first row: every
        example then goes through the same kernels wherever it sits, so its score does not depend
        on the other rows of X (not even in the last bits)."""
        device = next(self.model_.parameters()).device
        for start in range(0, len(x), size):
            batch = x[start:start + size]
            pad = size - len(batch)
            if pad:
                batch = torch.cat([batch, batch[:1].expand(pad, *batch.shape[1:])])
            yield batch.to(device), len(batch) - pad

    @torch.no_grad()
    def _anomaly_scores(self, x: torch.Tensor) -> np.ndarray:
        model = self.model_.eval()
        device = next(model.parameters()).device
        # Common random numbers: every example gets the same n_samples standard-normal draws, so its
        # score is deterministic and does not depend on the other examples in X or their order.
        eps = torch.randn(self.n_samples, 1, model.latent_dim, generator=torch.Generator().manual_seed(self.seed))
        eps = eps.to(device)
        parts = [self._batch_scores(model, b, eps)[:n].double().cpu() for b, n in self._batches(x)]
        return torch.cat(parts).numpy() if parts else np.zeros(0)

    def _batch_scores(self, model, b: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Anomaly scores (B,) of one batch; eps: (S, 1, L) standard-normal draws shared by all examples."""
        b = model.as_batch(b)
        if self.scoring == "recon":
            return (model.reconstruct(b) - b).pow(2).flatten(1).sum(1)
        if self.scoring == "elbo":  # -E_q[log p(x|z)] + KL(q || p), the expectation over the S draws
            return -model.elbo(b, noise=eps)
        # -log p(x) importance-sampled (Burda et al.), the weights chunked over the S draws
        log_w = torch.cat([model.log_weights(b, noise=e) for e in eps.split(64)]).double()  # (S, B)
        return -log_mean_exp(log_w, 0)

    @torch.no_grad()
    def _error_map(self, b: torch.Tensor) -> torch.Tensor:
        model = self.model_.eval()
        b = model.as_batch(b)
        mu = model.encode(b)[0]
        if self.scoring == "recon":
            return (model.decode(mu) - b).pow(2)
        params = model.decoder_params(mu)
        if self.likelihood_ == "bernoulli":
            # cross-entropy less the pixel's own entropy: KL(x || sigmoid(params)), 0 for a perfect fit
            return F.binary_cross_entropy_with_logits(params, b, reduction="none") - _entropy(b)
        normal = model.likelihood(mu).base_dist  # a Gaussian, its sigma fixed or predicted per value
        return 0.5 * ((b - normal.loc) / normal.scale).pow(2)


def _device(name: str) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of Bernoulli(p) per value, with 0 log 0 = 0."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


def _as_tensor(X) -> torch.Tensor:
    """Any array-like (NumPy, tensor, DataFrame, vaekit Dataset) as a tensor: tables (N, D) in float64,
    images float32 with the data-file rules (uint8 pixels / 255, (N, H, W) -> (N, 1, H, W), ...)."""
    from ..data import from_arrays

    from scipy.sparse import issparse

    if hasattr(X, "x") and torch.is_tensor(getattr(X, "x")):  # a vaekit Dataset
        X = X.x
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    if issparse(X):
        raise InputError("Sparse input is not supported; convert X to a dense array (X.toarray()) first.")
    try:
        X = np.asarray(X)
        X = X.astype(np.float64) if X.dtype == object else X
    except TypeError as e:
        raise InputTypeError(f"X is not an array of numbers ({e}); give a NumPy array, tensor or table.") from None
    except ValueError as e:
        raise InputError(f"X is not an array of numbers ({e}); give a NumPy array, tensor or table.") from None
    if X.dtype.kind == "c":
        raise InputError("Complex data not supported; give real numbers.")
    if X.ndim == 1:
        raise InputError(f"Reshape your data: X is 1-D (shape {X.shape}), give a table (N, D) or images (N, H, W).")
    if X.ndim == 2 and X.shape[1] == 0:
        raise InputError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required; give some columns.")
    if X.ndim == 2 and X.dtype != np.uint8 and X.dtype.kind in "biuf" and X.size:  # a table: keep float64 precision
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise InputError("X contains NaN or infinite values; clean or impute them first.")
        return torch.from_numpy(X.astype(np.float64))
    return from_arrays(X, name="X").x


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Run a block with torch's random state seeded, then put the caller's random state back."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


# ---- pictures ------------------------------------------------------------------------------------

def save_error_maps(detector: AnomalyDetector, X, path, index=None, n: int = 8, feature_names=None,
                    title: str | None = None) -> Path:
    """Picture why examples look anomalous, and return the PNG's path.

    `index` picks the examples (default: the `n` with the highest anomaly scores). Images: three rows,
    the input, its reconstruction and its error map (`detector.error_map`, one colour scale for all:
    black is no error, yellow the largest); tables: a heat map of the per-feature errors, one row
    per example, with `feature_names` along the bottom.
    """
    from ..plots import save_image_grid

    x = _as_tensor(X)
    if index is None:
        index = np.argsort(-detector.anomaly_score(x), kind="stable")[:n]
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(index) == 0:
        raise InputError("No examples to picture; pass at least one index.")
    scores = dict(zip(index.tolist(), detector.anomaly_score(x[index])))  # the same as scored with all of X
    errors = detector.error_map(x[index])
    top = float(np.quantile(errors, 0.99)) or 1.0  # one colour scale; the top 1% saturate
    labels = [f"#{i} ({scores[i]:.4g})" for i in index.tolist()]
    if detector.image_shape_ is not None:
        from matplotlib import colormaps

        inputs = _rgb(x[index].reshape(len(index), *detector.image_shape_).numpy())
        recon = _rgb(detector.reconstruct(x[index]))
        heat = colormaps["inferno"](np.clip(errors.sum(1) / top, 0, 1))[..., :3].transpose(0, 3, 1, 2)  # (N, 3, H, W)
        grid = np.stack([inputs, recon, heat])  # (3 rows, N, 3, H, W)
        head = title or "anomaly scores " + ", ".join(f"{scores[i]:.4g}" for i in index[:5].tolist()) + (
            " ..." if len(index) > 5 else "")
        return save_image_grid(grid, path, title=head, row_labels=["input", "reconstruction", "error"])
    unit = "squared error, standardized units" if detector.scoring == "recon" else "nats"
    return _save_feature_errors(errors, labels, path, feature_names, top, title, unit)


def _rgb(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images with C = 1 or 3 as RGB (N, 3, H, W) clipped to [0, 1]; other C are averaged."""
    if images.shape[1] != 3:
        images = images.mean(1, keepdims=True).repeat(3, axis=1)
    return np.clip(images, 0, 1)


def _save_feature_errors(errors, labels, path, feature_names, top, title, unit) -> Path:
    from matplotlib.figure import Figure

    from ..plots import _save

    n, d = errors.shape
    names = list(feature_names) if feature_names is not None else [str(j) for j in range(d)]
    if len(names) != d:
        raise InputError(f"Got {len(names)} feature names for {d} features; pass one name per column.")
    fig = Figure(figsize=(min(20, 2.5 + 0.3 * d), 1.6 + 0.35 * n), dpi=100, layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(errors, cmap="inferno", vmin=0, vmax=top, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(n), labels, fontsize=8)
    step = max(1, d // 60)
    ax.set_xticks(range(0, d, step), names[::step], rotation=90, fontsize=7)
    ax.set_xlabel("feature")
    fig.colorbar(shown, ax=ax, label=f"error ({unit})")
    ax.set_title(title or "per-feature errors of the most anomalous examples (row: #index (score))", fontsize=10)
    return _save(fig, path)
