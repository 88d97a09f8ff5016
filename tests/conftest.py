"""Shared fixtures: the MNIST copy beside the project, small data, and small trained models."""

import os
from pathlib import Path

import pytest
import torch

MNIST_DIR = Path(os.environ.get("VAEKIT_TEST_MNIST", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir():
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_small(mnist_dir):
    """First 6000 MNIST training images (N, 1, 28, 28) in [0, 1] and their labels."""
    from vaekit.data import load_dataset

    return load_dataset("mnist", data_dir=mnist_dir, limit=6000)


@pytest.fixture(scope="session")
def digits_data():
    from vaekit.data import load_dataset

    return load_dataset("digits")
