"""Data-parallel training with torchrun on CPU (gloo): ranks stay identical, rank 0 writes the run."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import vaekit


def test_two_processes_agree_and_the_checkpoint_loads(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           str(worker), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    loaded = vaekit.load(tmp_path / "run")  # written by rank 0 only
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, w0[k])
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
