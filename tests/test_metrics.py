"""Sample-quality metrics on cases where the answer is known."""

import math

import numpy as np
import pytest

from vaekit.errors import InputError
from vaekit.metrics import (class_coverage, frechet_distance, gaussian_frechet, kernel_distance,
                            precision_recall)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 6))
    assert abs(frechet_distance(x, x)) < 1e-6


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    # diagonal covariances: d = |mu1 - mu2|^2 + sum (s1 - s2)^2 with s the standard deviations
    mu1, mu2 = np.zeros(3), np.array([1.0, -2.0, 0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    exact = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert gaussian_frechet(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == pytest.approx(exact, rel=1e-9)
    rng = np.random.default_rng(1)
    a, b = mu1 + s1 * rng.normal(size=(200000, 3)), mu2 + s2 * rng.normal(size=(200000, 3))
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02)


def test_kid_is_unbiased_for_independent_sets_of_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    pairs = [kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), subsets=1, subset_size=300)[0]
             for _ in range(60)]
    mean, se = np.mean(pairs), np.std(pairs, ddof=1) / math.sqrt(len(pairs))
    assert abs(mean) < 3 * se  # zero in expectation: no small-sample bias
    shifted, _ = kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.0, subsets=5, subset_size=300)
    assert shifted > 20 * se


def test_precision_and_recall_are_one_for_identical_sets_and_drop_when_shifted():
    x = np.random.default_rng(3).normal(size=(800, 4))
    assert precision_recall(x, x) == (1.0, 1.0)
    p, r = precision_recall(x, x + 3.0)
    assert p < 0.5 and r < 0.5
    # samples covering only half of the real set: precision stays high, recall drops
    half = x[x[:, 0] > 0]
    p, r = precision_recall(x, half)
    assert p > 0.9 and r < 0.75


def test_class_coverage_and_bad_inputs():
    cover = class_coverage(np.array([0, 1, 2, 3] * 25), 4)
    assert cover["classes_seen"] == 4 and cover["entropy"] == pytest.approx(math.log(4))
    assert class_coverage(np.zeros(10, dtype=int), 4)["entropy"] == 0
    with pytest.raises(InputError, match="differ in size"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(InputError, match="finite"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
