"""Data loading: digits, MNIST IDX files (local, env var, cache, verified download), user files, splits."""

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from vaekit import data
from vaekit.data import idx
from vaekit.data import (
    InputError,
    binarize_fixed,
    dynamic_binarize,
    from_arrays,
    load_dataset,
    train_val_split,
)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network, no user cache, no VAEKIT_DATA: every test sees only what it sets up."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)

    def no_network(url, timeout=30.0):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(idx, "_fetch_url", no_network)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding `array`."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_idx(n=5, seed=0):
    """Images (n, 28, 28) and labels (n,) as uint8 arrays."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_idx_folder(folder, split="train", n=5, gz=True, seed=0):
    images, labels = small_idx(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(idx._IDX_STEMS[split], (images, labels)):
        raw = idx_bytes(array)
        (folder / (f"{stem}.gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return images, labels


# ---- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_range_labels_and_fixed_split():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.x.min() == 0 and train.x.max() == 1
    assert set(train.y.tolist()) == set(range(10)) and train.num_classes == 10
    assert train.image_shape == (1, 8, 8) and len(train) == 1437
    assert torch.equal(load_dataset("digits").x, train.x)  # the split is deterministic
    train_rows = {tuple(r) for r in train.x.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in test.x.flatten(1).tolist())
    assert overlap == 0


def test_limit_subset_and_repr():
    ds = load_dataset("digits", limit=10)
    assert len(ds) == 10 and ds.y.shape == (10,)
    assert torch.equal(ds.x, load_dataset("digits").x[:10])
    assert ds.subset(3).x.shape == (1, 1, 8, 8)
    assert torch.equal(ds.subset(torch.tensor([1, 2])).y, ds.y[1:3])
    assert "digits" in repr(ds) and "(10, 1, 8, 8)" in repr(ds)
    with pytest.raises(InputError):
        load_dataset("digits", limit=0)
    with pytest.raises(InputError, match="split"):
        load_dataset("digits", split="valid")


# ---- MNIST from IDX files -------------------------------------------------------------------------


def test_mnist_from_shared_copy(mnist_dir):
    train = load_dataset("mnist", data_dir=mnist_dir)
    test = load_dataset("mnist", split="test", data_dir=mnist_dir)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.y.shape == (60000,) and test.y.shape == (10000,)
    assert train.y[0].item() == 5 and test.y[0].item() == 7
    assert train.x.dtype == torch.float32 and 0 == train.x.min() and train.x.max() == 1
    assert train.num_classes == 10 and train.image_shape == (1, 28, 28)


def test_mnist_from_parent_folder(mnist_dir):
    ds = load_dataset("mnist", split="test", data_dir=mnist_dir.parent, limit=3)
    assert ds.y.tolist() == [7, 2, 1]


def test_env_var_lookup_with_subfolder(tmp_path, monkeypatch):
    images, labels = write_idx_folder(tmp_path / "root" / "mnist", split="test")
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "root"))
    ds = load_dataset("mnist", split="test", download=False)
    assert torch.equal(ds.y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(ds.x, torch.from_numpy(images).float().div(255).unsqueeze(1))


def test_data_dir_comes_before_env_var_and_uncompressed_files_work(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "env", seed=1)
    _, labels = write_idx_folder(tmp_path / "arg", gz=False, seed=2)
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    ds = load_dataset("mnist", data_dir=tmp_path / "arg")
    assert ds.y.tolist() == labels.tolist()


def test_missing_data_dir_is_reported(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_offline_message_names_files_and_folder(tmp_path):
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte.gz.*VAEKIT_DATA"):
        load_dataset("fashion-mnist", split="test")  # the download fails: no network
    with pytest.raises(InputError, match="download=True") as err:
        load_dataset("mnist", download=False)
    assert str(tmp_path / "cache" / "vaekit" / "mnist") in str(err.value)


@pytest.mark.parametrize(
    "truncate, message",
    [(lambda raw: raw[:-10], "bytes where its header promises"), (lambda raw: b"\x00\x00\x09" + raw[3:], "header")],
)
def test_corrupt_idx_raises_naming_the_file(tmp_path, truncate, message):
    write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(truncate(path.read_bytes()))
    with pytest.raises(InputError, match=message) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert "train-images-idx3-ubyte" in str(err.value)


def test_truncated_gzip_raises(tmp_path):
    write_idx_folder(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(InputError, match="train-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx_folder(tmp_path, n=5)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(InputError, match="5 images but"):
        load_dataset("mnist", data_dir=tmp_path)


# ---- verified download (the network function and the checksum table are replaced) ---------------


def fake_mirror(monkeypatch, name, corrupt=None):
    """Serve small gzip IDX files for `name`'s test split; return (images, labels, fetched URLs)."""
    images, labels = small_idx(4)
    served = {}
    for stem, array in zip(idx._IDX_STEMS["test"], (images, labels)):
        raw = idx_bytes(array)
        gz = gzip.compress(raw)
        served[f"{stem}.gz"] = gz
        digests = {"idx_sha256": hashlib.sha256(raw).hexdigest(), "gz_md5": hashlib.md5(gz).hexdigest()}
        kinds = idx._CHECKSUMS[name][stem]  # the kinds of checksum the real table holds for this file
        monkeypatch.setitem(idx._CHECKSUMS[name], stem, {kind: digests[kind] for kind in kinds})
        if corrupt == stem:  # a valid gzip of different content: only the checksum can tell
            bad = bytearray(raw)
            bad[-1] ^= 0xFF
            served[f"{stem}.gz"] = gzip.compress(bytes(bad))
    fetched = []

    def fetch(url, timeout=30.0):
        fetched.append(url)
        return served[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(idx, "_fetch_url", fetch)
    return images, labels, fetched


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_download_is_verified_and_cached(tmp_path, monkeypatch, name):
    images, labels, fetched = fake_mirror(monkeypatch, name)
    ds = load_dataset(name, split="test")
    assert ds.y.tolist() == labels.tolist() and ds.x.shape == (4, 1, 28, 28)
    assert all(url.startswith(idx._MIRRORS[name][0]) for url in fetched) and len(fetched) == 2
    cached = tmp_path / "cache" / "vaekit" / name
    assert sorted(p.name for p in cached.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    load_dataset(name, split="test")
    assert len(fetched) == 2  # the second load reads the cache


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_download_with_wrong_checksum_raises_and_writes_nothing(tmp_path, monkeypatch, name):
    _, _, fetched = fake_mirror(monkeypatch, name, corrupt="t10k-images-idx3-ubyte")
    with pytest.raises(InputError, match="checksum mismatch"):
        load_dataset(name, split="test")
    assert len(fetched) == len(idx._MIRRORS[name])  # every mirror was tried
    cached = tmp_path / "cache" / "vaekit" / name
    assert not cached.exists() or not any(cached.iterdir())


def test_checksum_table_covers_every_file():
    for name in ("mnist", "fashion-mnist"):
        stems = idx._IDX_STEMS["train"] + idx._IDX_STEMS["test"]
        assert all(idx._CHECKSUMS[name][stem] for stem in stems)


# ---- the user's files -----------------------------------------------------------------------------


def test_npy_images_are_scaled_and_channels_first(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    ds = load_dataset(tmp_path / "grey.npy", split="test")  # a file has no split: same data
    assert ds.x.shape == (6, 1, 28, 28) and ds.y is None and ds.name == "grey"
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(grey).float() / 255)
    np.save(tmp_path / "rgb.npy", np.ones((2, 8, 8, 3), np.float32))
    assert load_dataset(str(tmp_path / "rgb.npy")).image_shape == (3, 8, 8)
    table = np.random.default_rng(0).normal(size=(7, 3))
    np.save(tmp_path / "table.npy", table)
    ds = load_dataset(tmp_path / "table.npy")
    assert ds.image_shape is None and torch.allclose(ds.x, torch.from_numpy(table).float())


@pytest.mark.parametrize("keys", [("x", "y"), ("X", "y"), ("arr_0", "arr_1")])
def test_npz_round_trip(tmp_path, keys):
    x, y = np.random.default_rng(0).random((5, 4), dtype=np.float32), np.array([0, 2, 1, 2, 0])
    np.savez(tmp_path / "d.npz", **dict(zip(keys, (x, y))))
    ds = load_dataset(tmp_path / "d.npz")
    assert torch.equal(ds.x, torch.from_numpy(x)) and ds.y.tolist() == y.tolist() and ds.num_classes == 3


def test_csv_with_header_and_label_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,label,b\n1.5,0,2\n3,1,4\n5,1,6.25\n")
    ds = load_dataset(tmp_path / "t.csv")
    assert ds.x.tolist() == [[1.5, 2], [3, 4], [5, 6.25]] and ds.y.tolist() == [0, 1, 1]
    (tmp_path / "plain.csv").write_text("1,2\n3,4\n")
    ds = load_dataset(tmp_path / "plain.csv")
    assert ds.x.tolist() == [[1, 2], [3, 4]] and ds.y is None


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("bad.csv", "a,b\n1,x\n", "not a numeric CSV"),
        ("nan.csv", "1,2\nnan,4\n", "NaN"),
        ("lab.csv", "a,y\n1,0.5\n2,1\n", "not integers"),
        ("neg.csv", "a,y\n1,-1\n2,1\n", "class numbers"),
        ("broken.npy", "not numpy", "not a readable .npy"),
        ("broken.npz", "PK not a zip", "not a readable .npz"),
    ],
)
def test_bad_user_files_raise(tmp_path, filename, content, message):
    (tmp_path / filename).write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(tmp_path / filename)


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="npy"):
        load_dataset(tmp_path / "obj.npy")


def test_unknown_name_and_missing_file():
    with pytest.raises(InputError, match="digits, mnist, fashion-mnist.*path"):
        load_dataset("cifar")
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("/no/such/file.npz")
    with pytest.raises(InputError, match=".npy, .npz and .csv"):
        load_dataset("pictures/cat.png")


def test_from_arrays_rules():
    assert from_arrays(np.ones((3, 5), np.int64) * 7).x.max() == 7  # integer tables are not pixels
    assert from_arrays(np.ones((3, 4, 4), np.int64) * 255).x.max() == 1  # integer images are
    assert from_arrays(np.ones((3, 4, 4), np.uint8)).x.max() == 1  # 0/1 bytes stay 0/1
    with pytest.raises(InputError, match="0..255"):
        from_arrays(np.full((3, 4, 4), 1000))
    with pytest.raises(InputError, match="one label each"):
        from_arrays(np.zeros((3, 2)), y=[0, 1])


# ---- binarization and splits ----------------------------------------------------------------------


def test_binarization():
    x = torch.rand(64, 1, 8, 8)
    fixed = binarize_fixed(x, seed=3)
    assert set(fixed.unique().tolist()) <= {0.0, 1.0} and fixed.dtype == x.dtype
    assert torch.equal(fixed, binarize_fixed(x, seed=3)) and not torch.equal(fixed, binarize_fixed(x, seed=4))
    a, b = dynamic_binarize(x), dynamic_binarize(x)
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    assert torch.equal(dynamic_binarize(x, g[0]), dynamic_binarize(x, g[1]))
    assert (binarize_fixed(torch.rand(20000)).mean() - 0.5).abs() < 0.02  # P(1) = value
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        dynamic_binarize(x * 2)
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(40000, 1)  # (40000, 5): P(1) is each column's value
    assert torch.allclose(dynamic_binarize(p).mean(0), p[0], atol=0.01)
    assert torch.equal(dynamic_binarize(p[:, [0, 4]]), p[:, [0, 4]])  # 0 and 1 are kept exactly


def test_trainer_refuses_to_binarize_values_outside_0_1():
    from vaekit import VAE
    from vaekit.train import TrainConfig, Trainer

    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Trainer(VAE(4, 2), TrainConfig(epochs=1, binarize=True, progress=False)).fit(torch.rand(16, 4) * 3)


def test_train_val_split_sizes_disjoint_reproducible(digits_data):
    train, val = train_val_split(digits_data, 0.1, seed=0)
    assert len(train) + len(val) == len(digits_data) and len(val) == round(0.1 * len(digits_data))
    ds = from_arrays(torch.arange(100.0).view(100, 1), y=torch.arange(100))
    tr, va = train_val_split(ds, 0.25, seed=1)
    assert len(tr) == 75 and len(va) == 25
    assert set(tr.y.tolist()).isdisjoint(va.y.tolist()) and set(tr.y.tolist()) | set(va.y.tolist()) == set(range(100))
    assert torch.equal(train_val_split(ds, 0.25, seed=1)[1].y, va.y)
    assert not torch.equal(train_val_split(ds, 0.25, seed=2)[1].y, va.y)
    with pytest.raises(InputError):
        train_val_split(ds, 1.0)
