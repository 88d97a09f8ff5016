"""The fault suite: kills at every rename and at random moments, concurrent readers and writers,
hostile folders for --overwrite, fuzzed loaders and memory bombs. Each keeps a property that a
reliability probe once found broken."""

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit.atomic import is_temporary
from vaekit.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from faults import TRAIN, killed_and_finished, reader_against_writer, reference_run, run_vaekit  # noqa: E402
from loaders import run_campaign  # noqa: E402

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory.mktemp("reference") / "run")


def test_a_kill_at_every_rename_resumes_bit_identical(reference, tmp_path):
    renames, weights = reference
    assert renames >= 10
    with ThreadPoolExecutor(2) as pool:
        problems = list(pool.map(lambda n: killed_and_finished(tmp_path / f"kill-{n}", weights, kill_at=n),
                                 range(1, renames + 1)))
    assert not any(problems), [(n + 1, p) for n, p in enumerate(problems) if p]


def test_kills_at_random_moments_resume_bit_identical(reference, tmp_path):
    _, weights = reference
    rng = random.Random(0)
    for i in range(3):
        assert not killed_and_finished(tmp_path / f"random-{i}", weights, delay=rng.uniform(1.5, 5.0))


def test_a_reader_never_sees_a_missing_or_corrupt_model_while_a_writer_saves(tmp_path):
    loads, failures = reader_against_writer(tmp_path / "m", saves=150)
    assert not failures and loads >= 20
    assert not [e for e in os.listdir(tmp_path) if is_temporary(e)]


def test_two_trainings_into_one_folder_one_refuses(tmp_path):
    out = tmp_path / "run"
    first = run_vaekit(["train", "--epochs", "40", "--out", str(out), "--no-progress"], popen=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = run_vaekit(["train", "--epochs", "1", "--out", str(out), "--resume"])
    third = run_vaekit(["train", "--epochs", "1", "--out", str(out), "--overwrite"])
    first.communicate(timeout=300)
    assert first.returncode == 0
    for refused in (second, third):
        assert refused.returncode == 2 and "being written by another vaekit process" in refused.stderr
    assert json.loads((out / "run.json").read_text())["args"]["epochs"] == 40


def test_overwrite_refuses_folders_vaekit_did_not_write(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "run.json").write_text(json.dumps({"args": {"model": "vae"}}))
    (project / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(project), "--overwrite", "--epochs", "1"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (project / ".git").is_dir() and (project / "notes.txt").read_text() == "mine"

    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    monkeypatch.chdir(run)
    assert main(["train", "--out", ".", "--overwrite", "--epochs", "1"]) == 2
    assert "current folder" in capsys.readouterr().err
    assert (run / "model").is_dir()
    (run / "run.json").write_text(json.dumps({"data": "digits", "args": {**json.loads(
        (run / "run.json").read_text())["args"], "overwrite": True, "epochs": 1e999}}))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", str(run), "--resume"]) == 2  # a tampered run.json deletes nothing
    assert "--epochs" in capsys.readouterr().err and (run / "model").is_dir()


def test_fuzzed_loaders_give_results_or_one_sentence():
    report = run_campaign(cases=660, seed=12345)
    findings = {kind: entry["findings"][:1] for kind, entry in report.items() if entry["findings"]}
    assert not findings, findings
    assert all(entry["input_errors"] > 0 for entry in report.values())


BOMBS = textwrap.dedent("""
    import gzip, io, json, struct, sys, zipfile, zlib
    from pathlib import Path
    import numpy as np
    import vaekit
    from vaekit.data import load_dataset
    from vaekit.data import idx
    root = Path(sys.argv[1])
    outcomes = []

    def attempt(what, fn):
        try:
            fn()
            outcomes.append((what, "loaded"))
        except vaekit.InputError as e:
            outcomes.append((what, str(e)[:60]))

    # an IDX .gz whose header promises 200 MB of zeros, compressed 1000 times
    mnist = root / "mnist"; mnist.mkdir()
    images, labels = idx._IDX_STEMS["test"]
    n = 255000
    with gzip.open(mnist / (images + ".gz"), "wb") as f:
        f.write(b"\\x00\\x00\\x08\\x03" + struct.pack(">3I", n, 28, 28))
        for _ in range(n // 5000):
            f.write(bytes(5000 * 784))
    with gzip.open(mnist / (labels + ".gz"), "wb") as f:
        f.write(b"\\x00\\x00\\x08\\x01" + struct.pack(">I", n) + bytes(n))
    attempt("idx gzip bomb", lambda: load_dataset("mnist", split="test", data_dir=mnist, download=False))
    # a 4 KB .npy declaring (10^9, 784) float64 values, and the same inside an .npz
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 784), }"
    header += " " * (118 - len(header)) + "\\n"
    npy = b"\\x93NUMPY\\x01\\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(4000)
    (root / "big.npy").write_bytes(npy)
    attempt("npy header bomb", lambda: load_dataset(root / "big.npy"))
    with zipfile.ZipFile(root / "big.npz", "w") as z:
        z.writestr("x.npy", npy)
    attempt("npz header bomb", lambda: load_dataset(root / "big.npz"))
    # a PNG whose header asks for 100000 x 100000 pixels
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    (root / "images").mkdir(); (root / "images" / "a.png").write_bytes(png)
    attempt("png size bomb", lambda: load_dataset(root / "images"))
    # a config asking for 10^7 latent dimensions beside small weights
    model = root / "model"
    vaekit.VAE(16, 2, hidden_dims=(8,)).save_pretrained(model)
    config = json.loads((model / "config.json").read_text())
    config["config"]["latent_dim"], config["config"]["hidden_dims"] = 60000, [60000, 60000]
    (model / "config.json").write_text(json.dumps(config))
    attempt("config size bomb", lambda: vaekit.load(model))
    # the peak resident memory of this process (VmHWM; ru_maxrss would include the forked parent's)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"outcomes": outcomes, "max_rss_mb": peak / 1024}))
""")


def test_memory_bombs_are_refused_under_a_ceiling(tmp_path):
    done = subprocess.run([sys.executable, "-c", BOMBS, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(outcome != "loaded" for _, outcome in result["outcomes"]), result
    assert result["max_rss_mb"] < 1024, result  # torch itself takes about 300 MB


def test_python_api_inputs_get_one_sentence():
    torch.manual_seed(0)
    model = vaekit.VAE(16, 2, hidden_dims=(8,))
    x64 = np.random.default_rng(0).random((4, 16))  # NumPy's default float64
    assert model(x64)[0].dtype == torch.float32 and torch.isfinite(model.loss(x64).loss)
    pixels = (np.random.default_rng(0).random((4, 16)) * 255).astype(np.uint8)
    assert torch.allclose(model.encode(pixels)[0], model.encode(torch.from_numpy(pixels) / 255)[0])
    for bad, message in [(torch.full((2, 16), float("nan")), "NaN"), (torch.rand(2, 16) * 5, r"\[0, 1\]"),
                         (torch.zeros(0, 16), "empty"), (np.array([[object()] * 16]), "numbers")]:
        for call in (model, model.loss, model.elbo, model.encode):
            with pytest.raises(vaekit.InputError, match=message):
                call(bad)
    for kwargs in ({"latent_dim": 0}, {"hidden_dims": (0,)}):
        with pytest.raises(vaekit.InputError, match="sizes"):
            vaekit.VAE(16, **{"latent_dim": 2, **kwargs})
    with pytest.raises(vaekit.InputError, match="epochs"):
        vaekit.TrainConfig(epochs=1.5)


def test_divergence_is_one_sentence_and_keeps_the_last_good_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--lr", "10", "--epochs", "3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "--grad-clip" in err and err.count("\n") == 1
    assert not out.exists()  # no epoch was saved, so no stub folder is left


def test_a_failed_overwrite_puts_the_old_run_back(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    before = vaekit.load(run).state_dict()
    assert main(["train", "--out", str(run), "--overwrite", "--lr", "10", "--epochs", "2", "--no-progress"]) == 2
    assert "diverged" in capsys.readouterr().err
    after = vaekit.load(run).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [e for e in os.listdir(run) if is_temporary(e)]


def test_a_resumed_betatc_run_keeps_its_weights_meaning(tmp_path):
    run = tmp_path / "tc"
    assert main(["train", "--model", "betatc", "--beta", "0.5", "--epochs", "1", "--limit", "64", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert vaekit.load(run).config.beta == 6.0  # the TC weight stays its default
    assert json.loads((run / "train_config.json").read_text())["beta"] == 0.5  # and --beta the KL weight
