"""Plots: image layouts, valid crisp PNGs written atomically, and clear errors for bad shapes."""

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from vaekit import plots
from vaekit.distributions import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    """The PNG's pixels (H, W, channels) after checking the file really is a PNG."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    return imread(path)


# ---- to_images -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "shape, image_shape, expected",
    [
        ((5, 64), None, (5, 1, 8, 8)),  # flat, perfect square
        ((64,), None, (1, 1, 8, 8)),  # one flat image
        ((5, 8, 8), None, (5, 1, 8, 8)),  # (N, H, W)
        ((5, 3, 4, 6), None, (5, 3, 4, 6)),  # (N, C, H, W)
        ((2, 4, 64), None, (8, 1, 8, 8)),  # a grid of flat images
        ((2, 4, 1, 8, 8), None, (8, 1, 8, 8)),  # a grid of (C, H, W) images
        ((5, 48), (1, 6, 8), (5, 1, 6, 8)),  # flat, not square: needs image_shape
        ((5, 48), (6, 8), (5, 1, 6, 8)),  # (H, W) means one channel
        ((5, 3 * 16), (3, 4, 4), (5, 3, 4, 4)),
        ((5, 6, 8), (1, 6, 8), (5, 1, 6, 8)),
    ],
)
def test_to_images_layouts(shape, image_shape, expected):
    assert plots.to_images(torch.rand(shape), image_shape).shape == expected


def test_to_images_clamps_and_accepts_numpy():
    out = plots.to_images(np.array([[-1.0, 0.5, 2.0, 0.25]]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.5, 1.0, 0.25]))


@pytest.mark.parametrize(
    "shape, image_shape",
    [((5, 50), None), ((50,), None), ((5, 64), (1, 7, 7)), ((5, 2, 8, 8), (2, 8, 8)), ((5, 64), (5,))],
)
def test_to_images_rejects_bad_shapes(shape, image_shape):
    with pytest.raises(InputError):
        plots.to_images(torch.rand(shape), image_shape)


def test_to_images_rejects_non_finite_and_empty():
    with pytest.raises(InputError, match="NaN"):
        plots.to_images(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(InputError, match="empty"):
        plots.to_images(torch.zeros(0, 64))


# ---- save_image_grid -------------------------------------------------------------------------

def test_image_grid_is_a_valid_crisp_png(tmp_path):
    # black and white pixels only: with nearest-neighbour drawing nothing grey may appear
    images = (torch.rand(10, 64) > 0.5).float()
    path = plots.save_image_grid(images, tmp_path / "grid.png", nrow=5)
    assert path == tmp_path / "grid.png"
    pixels = read_png(path)
    height, width = pixels.shape[:2]
    assert 2.0 < width / height < 3.0  # 5 columns by 2 rows of squares
    grey = pixels[..., :3].mean(-1)
    assert set(np.unique(grey)) <= {0.0, 1.0}
    assert (grey == 0).any()


def test_image_grid_of_digits_with_title_and_row_labels(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().images[:30] / 16  # (30, 8, 8)
    grid = torch.tensor(digits).reshape(3, 10, 8, 8)  # 3 rows of 10
    path = plots.save_image_grid(grid, tmp_path / "digits.png", title="digits", row_labels=["a", "b", "c"])
    height, width = read_png(path).shape[:2]
    assert width > 2.5 * height


def test_image_grid_takes_traversal_shaped_input(tmp_path):
    traversal = torch.rand(4, 9, 1, 8, 8)  # (dims, values, C, H, W)
    pixels = read_png(plots.save_image_grid(traversal, tmp_path / "t.png"))
    assert pixels.shape[1] > 2 * pixels.shape[0]  # 9 columns, 4 rows


def test_image_grid_draws_rgb_colours(tmp_path):
    red = torch.zeros(2, 3, 8, 8)
    red[:, 0] = 1.0
    pixels = read_png(plots.save_image_grid(red, tmp_path / "red.png"))
    is_red = (pixels[..., 0] == 1) & (pixels[..., 1] == 0) & (pixels[..., 2] == 0)
    assert is_red.mean() > 0.5


def test_image_grid_bad_requests(tmp_path):
    with pytest.raises(InputError, match="row labels"):
        plots.save_image_grid(torch.rand(2, 3, 64), tmp_path / "x.png", row_labels=["only one"])
    with pytest.raises(InputError):
        plots.save_image_grid(torch.rand(4, 50), tmp_path / "x.png")
    with pytest.raises(InputError, match="nrow"):
        plots.save_image_grid(torch.rand(4, 64), tmp_path / "x.png", nrow=0)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_writes_are_atomic_and_replace_old_files(tmp_path):
    path = tmp_path / "sub" / "grid.png"
    plots.save_image_grid(torch.rand(4, 64), path)
    first = path.read_bytes()
    plots.save_image_grid(torch.rand(9, 64), path)
    assert path.read_bytes() != first
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary files left


# ---- curves, maps, histograms ----------------------------------------------------------------

HISTORY = [
    {"epoch": 1, "train_loss": 120.0, "val_loss": 118.0, "train_kl": 5.0, "lr": 1e-3},
    {"epoch": 2, "train_loss": 100.0, "train_kl": 7.5, "lr": 1e-3},  # no validation this epoch
    {"epoch": 3, "train_loss": 95.0, "val_loss": 96.0, "train_kl": 8.0, "lr": 1e-3},
]


def test_loss_curve_has_a_kl_panel_only_when_there_is_kl(tmp_path):
    both = read_png(plots.save_loss_curve(HISTORY, tmp_path / "a.png"))
    no_kl = [{k: v for k, v in r.items() if "kl" not in k} for r in HISTORY]
    loss_only = read_png(plots.save_loss_curve(no_kl, tmp_path / "b.png"))
    assert both.shape[0] == loss_only.shape[0]
    assert both.shape[1] == 2 * loss_only.shape[1]


def test_loss_curve_skips_non_numbers(tmp_path):
    history = [{"epoch": e, "train_loss": np.float32(10 / e), "kl_per_layer": [1.0, 2.0]} for e in (1, 2)]
    one_panel = read_png(plots.save_loss_curve(history, tmp_path / "a.png"))
    assert one_panel.shape[1] < one_panel.shape[0] * 2  # the list-valued KL gets no panel


@pytest.mark.parametrize("history", [[], [{"epoch": 1, "lr": 0.1}], {"train_loss": [1, 2]}, [3.0]])
def test_loss_curve_rejects_unplottable_history(tmp_path, history):
    with pytest.raises(InputError):
        plots.save_loss_curve(history, tmp_path / "x.png")


@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_latent_map_any_latent_size(tmp_path, latent_dim):
    z = torch.randn(60, latent_dim)
    path = plots.save_latent_map(z, torch.arange(60) % 3, tmp_path / "map.png")
    assert read_png(path).shape[:2] == (500, 600)


def test_latent_map_continuous_string_or_missing_labels(tmp_path):
    z = np.random.randn(40, 3)
    read_png(plots.save_latent_map(z, np.random.rand(40), tmp_path / "c.png"))
    read_png(plots.save_latent_map(z, ["cat", "dog"] * 20, tmp_path / "s.png"))
    read_png(plots.save_latent_map(z, None, tmp_path / "n.png", title="codes"))


def test_latent_map_label_count_must_match(tmp_path):
    with pytest.raises(InputError, match="labels"):
        plots.save_latent_map(torch.randn(10, 2), torch.zeros(9), tmp_path / "x.png")


def test_histogram_with_threshold_and_groups(tmp_path):
    scores = np.random.randn(200)
    read_png(plots.save_histogram(scores, tmp_path / "h.png", threshold=1.5, title="scores"))
    groups = {"normal": scores, "anomalous": np.random.randn(20) + 4}
    read_png(plots.save_histogram(groups, tmp_path / "g.png", threshold=2.0))


def test_histogram_rejects_bad_values(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        plots.save_histogram([1.0, float("inf")], tmp_path / "x.png")
    with pytest.raises(InputError, match="empty"):
        plots.save_histogram([], tmp_path / "x.png")
