"""PyOD's conventions over vaekit's AnomalyDetector, so that it drops into PyOD's benchmark and
model-selection code:

    det = PyODDetector(contamination=0.1).fit(X_train)
    det.decision_scores_      # outlier scores of the training data, higher = more anomalous
    det.labels_               # 0 inlier / 1 outlier for the training data
    det.decision_function(X)  # outlier scores, higher = more anomalous
    det.predict(X)            # 0 / 1
    det.predict_proba(X)      # (n, 2): [P(inlier), P(outlier)], PyOD's "linear" min-max scaling

Everything else (parameters, scoring, saving, error maps) is AnomalyDetector's.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .detector import AnomalyDetector


class PyODDetector(AnomalyDetector):
    """AnomalyDetector with PyOD's method meanings (0/1 labels, raw outlier scores)."""

    def fit(self, X, y=None):
        super().fit(X, y)
        self.decision_scores_ = self.anomaly_score(X)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Outlier scores: higher is more anomalous (PyOD's convention)."""
        return self.anomaly_score(X)

    def predict(self, X) -> np.ndarray:
        """1 for outliers, 0 for inliers."""
        return (self.anomaly_score(X) > self.threshold_).astype(int)

    def predict_proba(self, X, method: str = "linear") -> np.ndarray:
        """[P(inlier), P(outlier)] per row: the outlier score min-max scaled by the training scores."""
        if method != "linear":
            raise InputError(f"Only method='linear' is offered (PyOD's default), not {method!r}.")
        train = self.decision_scores_
        low, high = float(train.min()), float(train.max())
        p = np.clip((self.anomaly_score(X) - low) / max(high - low, 1e-12), 0, 1)
        return np.stack([1 - p, p], axis=1)
