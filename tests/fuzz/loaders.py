"""Fuzzing every loader a user can point vaekit at: each mutated input must give a result or an
InputError with a sentence; any other exception is a finding.

    python tests/fuzz/loaders.py --cases 10000 --seed 0      # the full campaign (benchmarks/RESULTS.md)

The test suite runs a bounded number of cases per loader (tests/test_faults.py). Loaders: IDX
(raw and .gz), .npy, .npz, .csv, image folders (PNG), model folders (config.json and
model.safetensors), checkpoints (state.json and state.safetensors) and run.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch


# ---- seeds: small valid files of each kind ----------------------------------------------------
def _idx_bytes(ndim: int) -> bytes:
    shape = (3, 4, 4) if ndim == 3 else (3,)
    arr = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    return b"\x00\x00\x08" + bytes([ndim]) + struct.pack(f">{ndim}I", *shape) + arr.tobytes()


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).random((6, 8)).astype(np.float32))
    return buf.getvalue()


def _npz_bytes(compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, x=np.random.default_rng(0).random((6, 8)), y=np.arange(6))
    return buf.getvalue()


def _csv_bytes() -> bytes:
    return b"a,b,label\n0.1,0.2,1\n0.3,0.4,0\n0.5,0.6,1\n"


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(buf, format="PNG")
    return buf.getvalue()


# ---- mutations -----------------------------------------------------------------------------------
INTERESTING = [0, 1, -1, 255, 256, 2**31 - 1, 2**32 - 1, 2**63 - 1, 10**9]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One of: bit flips, truncation, extension, overwriting a 4-byte field with an extreme value,
    a random block, or random bytes altogether."""
    data = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and data:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        data = data[: rng.randrange(len(data) + 1)]
    elif kind == 2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 3 and len(data) >= 4:
        i = rng.randrange(len(data) - 3)
        value = rng.choice(INTERESTING) & 0xFFFFFFFF
        data[i:i + 4] = struct.pack(rng.choice([">I", "<I"]), value)
    elif kind == 4 and data:
        i = rng.randrange(len(data))
        data[i:i + rng.randint(1, 32)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:
        data = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 256)))
    return bytes(data)


JSON_VALUES = [None, True, False, 0, -1, 1.5, 1e308, float("nan"), float("inf"), "", "x", "os.system", [], [0], {},
               {"a": 1}, 10**7, -10**7, [10**6, 10**6], "Infinity"]


def mutate_json(obj, rng: random.Random):
    """Replace, delete or add one value somewhere in a JSON object."""
    obj = json.loads(json.dumps(obj))
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + [i])
                walk(v, path + [i])

    walk(obj, [])
    if not paths:
        return rng.choice(JSON_VALUES)
    path = rng.choice(paths)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    action = rng.randrange(3)
    if action == 0 or not isinstance(parent, dict):
        parent[path[-1]] = rng.choice(JSON_VALUES)
    elif action == 1:
        del parent[path[-1]]
    else:
        parent["extra_" + str(rng.randrange(100))] = rng.choice(JSON_VALUES)
    return obj


# ---- the loaders under test ----------------------------------------------------------------------
class Loaders:
    """Builds the seeds once in a scratch folder and runs one mutated case of a loader at a time."""

    def __init__(self, root: Path):
        import vaekit
        from vaekit.train import TrainConfig, Trainer

        self.root = root
        self.seeds = {
            "idx3": _idx_bytes(3), "idx1": _idx_bytes(1), "npy": _npy_bytes(), "npz": _npz_bytes(False),
            "npz-compressed": _npz_bytes(True), "csv": _csv_bytes(), "png": _png_bytes(),
        }
        torch.manual_seed(0)
        model = vaekit.VAE(16, 2, hidden_dims=(8,), likelihood="gaussian")
        run = root / "seed-run"
        Trainer(model, TrainConfig(epochs=1, batch_size=8, progress=False, precision="fp32"), run).fit(torch.rand(16, 16))
        self.model_folder = run / "model"
        self.checkpoint = run / "checkpoint"
        self.config = json.loads((self.model_folder / "config.json").read_text())
        self.weights = (self.model_folder / "model.safetensors").read_bytes()
        self.state = json.loads((self.checkpoint / "state.json").read_text())
        self.state_tensors = (self.checkpoint / "state.safetensors").read_bytes()
        self.run_json = {"data": "digits", "data_dir": None, "args": {
            "model": "vae", "data": "digits", "latent_dim": 2, "epochs": 1, "batch_size": 8, "lr": 0.001, "seed": 0}}
        self.model = model

    KINDS = ("idx", "idx-gz", "npy", "npz", "csv", "image-folder", "model-config", "model-weights",
             "checkpoint-json", "checkpoint-tensors", "run-json")

    def case(self, kind: str, rng: random.Random) -> None:
        """Run one mutated input through the loader of `kind`; returns or raises."""
        getattr(self, "_" + kind.replace("-", "_"))(rng, self.root / f"case-{kind}")

    def _fresh(self, folder: Path) -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def _idx_pair(self, rng, folder, gz: bool):
        from vaekit.data import idx

        folder = self._fresh(folder)
        for stem, seed in zip(idx._IDX_STEMS["test"], ("idx3", "idx1")):
            data = mutate_bytes(self.seeds[seed], rng) if rng.random() < 0.7 else self.seeds[seed]
            if gz:
                data = gzip.compress(data) if rng.random() < 0.7 else mutate_bytes(gzip.compress(data), rng)
            (folder / (stem + (".gz" if gz else ""))).write_bytes(data)
        idx._read_idx_cached.cache_clear()
        from vaekit.data import load_dataset

        load_dataset("mnist", split="test", data_dir=folder, download=False)

    def _idx(self, rng, folder):
        self._idx_pair(rng, folder, gz=False)

    def _idx_gz(self, rng, folder):
        self._idx_pair(rng, folder, gz=True)

    def _file(self, rng, folder, name, seed):
        from vaekit.data import load_dataset

        path = self._fresh(folder) / name
        path.write_bytes(mutate_bytes(self.seeds[seed], rng))
        load_dataset(path)

    def _npy(self, rng, folder):
        self._file(rng, folder, "d.npy", "npy")

    def _npz(self, rng, folder):
        self._file(rng, folder, "d.npz", rng.choice(["npz", "npz-compressed"]))

    def _csv(self, rng, folder):
        self._file(rng, folder, "d.csv", "csv")

    def _image_folder(self, rng, folder):
        from vaekit.data import load_dataset

        folder = self._fresh(folder)
        for i in range(2):
            data = mutate_bytes(self.seeds["png"], rng) if i == 0 or rng.random() < 0.5 else self.seeds["png"]
            (folder / f"{i}.png").write_bytes(data)
        load_dataset(folder)

    def _model_folder(self, folder, config, weights):
        import vaekit

        folder = self._fresh(folder)
        (folder / "config.json").write_text(json.dumps(config) if not isinstance(config, str) else config)
        (folder / "model.safetensors").write_bytes(weights)
        vaekit.load(folder)

    def _model_config(self, rng, folder):
        config = mutate_json(self.config, rng) if rng.random() < 0.8 else mutate_bytes(json.dumps(self.config).encode(), rng).decode("latin-1")
        self._model_folder(folder, config, self.weights)

    def _model_weights(self, rng, folder):
        self._model_folder(folder, self.config, mutate_bytes(self.weights, rng))

    def _checkpoint(self, folder, state, tensors):
        from vaekit.checkpoint import load_checkpoint
        from vaekit.train import _adam

        folder = self._fresh(folder)
        (folder / "state.json").write_text(json.dumps(state) if not isinstance(state, str) else state)
        (folder / "state.safetensors").write_bytes(tensors)
        model = type(self.model)(config=self.model.config)
        load_checkpoint(folder, model, _adam(model.parameters(), 1e-3), {"shuffle": torch.Generator(),
                                                                           "binarize": torch.Generator()})

    def _checkpoint_json(self, rng, folder):
        self._checkpoint(folder, mutate_json(self.state, rng), self.state_tensors)

    def _checkpoint_tensors(self, rng, folder):
        self._checkpoint(folder, self.state, mutate_bytes(self.state_tensors, rng))

    def _run_json(self, rng, folder):
        from vaekit.runs import RUN_FILE, TrainSpec, resumed_spec

        folder = self._fresh(folder)
        info = mutate_json(self.run_json, rng)
        (folder / RUN_FILE).write_text(json.dumps(info))
        spec = resumed_spec(folder, TrainSpec(out=str(folder), resume=True))
        from vaekit.configs import validate
        from vaekit.runs import family_options

        validate(spec, flags=True)
        family_options(spec)


def run_campaign(cases: int, seed: int, kinds=None, root: Path | None = None, verbose: bool = False) -> dict:
    """{kind: {"cases", "results", "input_errors", "findings": [(case, traceback)]}} for `cases` cases in all."""
    from vaekit.errors import InputError

    own = root is None
    root = Path(tempfile.mkdtemp(prefix="vaekit-fuzz-")) if own else root
    try:
        loaders = Loaders(root)
        kinds = list(kinds or Loaders.KINDS)
        report = {k: {"cases": 0, "results": 0, "input_errors": 0, "findings": []} for k in kinds}
        rng = random.Random(seed)
        for i in range(cases):
            kind = kinds[i % len(kinds)]
            case_rng = random.Random(rng.random())
            entry = report[kind]
            entry["cases"] += 1
            try:
                loaders.case(kind, case_rng)
                entry["results"] += 1
            except InputError as e:
                if not str(e).strip():
                    entry["findings"].append((i, "InputError without a message"))
                else:
                    entry["input_errors"] += 1
            except Exception:
                entry["findings"].append((i, traceback.format_exc(limit=4)))
                if verbose:
                    print(f"case {i} ({kind}):\n{entry['findings'][-1][1]}", file=sys.stderr)
        return report
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = run_campaign(args.cases, args.seed, verbose=args.verbose)
    total = {"cases": 0, "results": 0, "input_errors": 0, "findings": 0}
    print(f"{'loader':<20} {'cases':>6} {'results':>8} {'InputError':>11} {'findings':>9}")
    for kind, entry in report.items():
        print(f"{kind:<20} {entry['cases']:>6} {entry['results']:>8} {entry['input_errors']:>11} {len(entry['findings']):>9}")
        for key in ("cases", "results", "input_errors"):
            total[key] += entry[key]
        total["findings"] += len(entry["findings"])
    print(f"{'all':<20} {total['cases']:>6} {total['results']:>8} {total['input_errors']:>11} {total['findings']:>9}")
    print(f"{time.perf_counter() - start:.0f} s, seed {args.seed}")
    sys.exit(1 if total["findings"] else 0)


if __name__ == "__main__":
    main()
