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


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The test models are tiny: one thread beats two that wait on each other at every barrier,
    above all on a shared CPU. Restored after the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
