"""The shipped feature networks and the sample-quality rows built on them."""

import pytest
import torch

from vaekit.data import load_dataset
from vaekit.errors import InputError
from vaekit.features import FEATURE_SETS, accuracy, load_feature_net, train_feature_net
from vaekit.quality import compare, compare_features, feature_net_for, quality_rows


def test_shipped_feature_networks():
    assert set(FEATURE_SETS) >= {"digits", "mnist"}
    digits = load_dataset("digits", "test")
    net = load_feature_net("digits")
    assert accuracy(net, digits) > 0.97
    assert net.features(load_dataset("digits").x).pow(2).mean().item() == pytest.approx(1.0, rel=0.05)  # calibrated


def test_shipped_mnist_features_classify(mnist_dir):
    test = load_dataset("mnist", "test", data_dir=mnist_dir, limit=2000)
    assert accuracy(load_feature_net("mnist"), test) > 0.98


def test_a_set_against_itself_is_perfect():
    x = load_dataset("digits", "test").x
    row = compare(load_feature_net("digits"), x, x)
    assert abs(row["fid"]) < 1e-6 and row["precision"] == 1.0 and row["recall"] == 1.0
    assert row["classes_seen"] == 10


def test_one_pass_gives_the_features_and_classes_of_separate_passes():
    x = load_dataset("digits", "test").x
    net = load_feature_net("digits")
    features, classes = net.features_and_classes(x, batch_size=7)  # uneven batches
    torch.testing.assert_close(features, net.features(x, batch_size=1000))
    assert torch.equal(classes, net(x).argmax(1))
    assert compare_features(net, net.features(x[:100]), x[100:]) == compare(net, x[:100], x[100:])


def test_noise_is_far_from_digits():
    x = load_dataset("digits", "test").x
    net = load_feature_net("digits")
    noise = torch.rand_like(x)
    assert compare(net, x, noise)["fid"] > 20 * compare(net, x, load_dataset("digits").x[:360])["fid"]


def test_feature_net_of_another_image_size_is_refused():
    with pytest.raises(InputError, match=r"takes images of shape \(1, 28, 28\)"):
        load_feature_net("mnist").features(torch.rand(4, 1, 8, 8))


def test_unknown_data_needs_its_own_feature_net():
    with pytest.raises(InputError, match="vaekit features train"):
        feature_net_for("fashion-mnist")


def test_train_save_load_round_trip(tmp_path):
    data = load_dataset("digits", limit=300)
    net, acc = train_feature_net(data, data, epochs=1)
    net.save_pretrained(tmp_path / "f")
    again = load_feature_net(tmp_path / "f")
    assert torch.equal(net.features(data.x[:10]), again.features(data.x[:10]))
    assert acc is not None


def test_quality_rows_of_a_model(digits_data):
    from vaekit.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("vae", (1, 8, 8), 10, 4, "gaussian", sigma=0.2)
    rows = quality_rows(model, load_dataset("digits", "test"), train=digits_data, n=200)
    assert list(rows) == ["samples", "reconstructions", "reconstructions, training images", "real data"]
    assert rows["samples"]["n"] == 200 and rows["real data"]["n"] == 360


def test_training_reconstructions_pair_with_the_real_data_row(digits_data):
    """A model that reconstructs exactly scores what the real-data floor scores: same training images."""
    from vaekit.quality import real_floor, training_reconstructions

    class Exact(torch.nn.Module):
        conditional = False

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def reconstruct(self, x, y=None):
            return x

    test = load_dataset("digits", "test")
    net = feature_net_for("digits")
    assert training_reconstructions(net, Exact(), digits_data, test, seed=3) == real_floor(net, digits_data, test, seed=3)
