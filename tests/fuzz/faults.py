"""Killing training runs and racing readers against writers: the harness of tests/test_faults.py,
and the full campaign as a script.

    python tests/fuzz/faults.py --random-kills 50 --reads 300      # benchmarks/RESULTS.md

A short `vaekit train` is killed (SIGKILL) just before each of its renames in turn, and at random
moments; each killed run is then finished the way a user would (--resume once an epoch was saved,
else started again) and its weights compared bit for bit with an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

# Runs `vaekit ARGS` with every rename counted; the KILL_AT-th one is preceded by SIGKILL.
KILLABLE = textwrap.dedent("""
    import os, signal, sys
    kill_at, count = int(os.environ["KILL_AT"]), [0]
    import vaekit.atomic as atomic

    def counted(fn):
        def inner(*args, **kwargs):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return inner

    os.rename, os.replace, atomic._exchange = counted(os.rename), counted(os.replace), counted(atomic._exchange)
    from vaekit.cli import main
    code = main(sys.argv[1:])
    print("RENAMES", count[0])
    sys.exit(code)
""")
TRAIN = ["train", "--limit", "64", "--epochs", "2", "--latent-dim", "2", "--batch-size", "32", "--val-fraction", "0.25",
         "--precision", "fp32", "--no-progress"]


def run_vaekit(args, kill_at: int = -1, popen: bool = False, **kwargs):
    """`vaekit ARGS` in a fresh process (killed before its kill_at-th rename when kill_at > 0)."""
    env = {**os.environ, "KILL_AT": str(kill_at), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", KILLABLE, *args]
    if popen:
        return subprocess.Popen(command, env=env, **kwargs)
    return subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)


def weights(folder) -> dict:
    import vaekit

    return vaekit.load(folder).state_dict()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finish(out: Path):
    """Complete an interrupted run the way a user would: --resume once an epoch is saved, else start over."""
    if (out / "checkpoint").exists():
        return run_vaekit([*TRAIN, "--out", str(out), "--resume"])
    if (out / "run.json").exists():
        return run_vaekit([*TRAIN, "--out", str(out), "--overwrite"])
    return run_vaekit([*TRAIN, "--out", str(out)])


def reference_run(out: Path) -> tuple[int, dict]:
    """(renames of an uninterrupted short run, its final weights)."""
    done = run_vaekit([*TRAIN, "--out", str(out)])
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return int(done.stdout.split("RENAMES")[-1]), weights(out)


def killed_and_finished(out: Path, reference: dict, kill_at: int = -1, delay: float | None = None) -> list[str]:
    """Kill a run (before rename `kill_at`, or after `delay` seconds), finish it; the problems found."""
    import vaekit
    from vaekit.atomic import is_temporary

    problems = []
    if delay is None:
        killed = run_vaekit([*TRAIN, "--out", str(out)], kill_at=kill_at)
        if killed.returncode != -signal.SIGKILL:
            problems.append(f"not killed: {killed.stderr[-200:]}")
    else:
        proc = run_vaekit([*TRAIN, "--out", str(out)], popen=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if (out / "checkpoint").exists():
        try:
            vaekit.load(out)
        except Exception as e:  # once an epoch completed the model must load
            problems.append(f"load after the kill: {e}")
    done = finish(out)
    if done.returncode != 0:
        return problems + [f"finishing failed: {done.stderr[-300:]}"]
    if not same(weights(out), reference):
        problems.append("weights differ from the uninterrupted run")
    debris = [e for e in os.listdir(out) if is_temporary(e)]
    if debris:
        problems.append(f"debris left: {debris}")
    return problems


def reader_against_writer(folder: Path, saves: int, min_reads: int = 0) -> tuple[int, list[str]]:
    """Load `folder` in a loop while another process saves a model into it `saves` times:
    (loads done, failures)."""
    import vaekit

    torch.manual_seed(0)
    vaekit.VAE(64, 4, hidden_dims=(32,)).save_pretrained(folder)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import torch, vaekit
        for i in range({saves}):
            torch.manual_seed(i)
            vaekit.VAE(64, 4, hidden_dims=(32,)).save_pretrained({str(folder)!r})
    """)])
    loads, failures = 0, []
    while writer.poll() is None or loads < min_reads:
        try:
            vaekit.load(folder)
        except Exception as e:
            failures.append(str(e))
        loads += 1
    return loads, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-kills", type=int, default=50)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vaekit-faults-") as tmp:
        root = Path(tmp)
        renames, reference = reference_run(root / "reference")
        with ThreadPoolExecutor(2) as pool:
            at_renames = list(pool.map(lambda n: killed_and_finished(root / f"kill-{n}", reference, kill_at=n),
                                       range(1, renames + 1)))
            rng = random.Random(args.seed)
            delays = [rng.uniform(1.0, 6.0) for _ in range(args.random_kills)]
            at_random = list(pool.map(lambda i: killed_and_finished(root / f"random-{i}", reference,
                                                                     delay=delays[i]), range(args.random_kills)))
        loads, failures = reader_against_writer(root / "model", saves=400, min_reads=args.reads)
    bad_renames = [p for p in at_renames if p]
    bad_random = [p for p in at_random if p]
    print(f"kills before each of {renames} renames: {renames - len(bad_renames)} of {renames} resumed bit-identical, "
          "no debris")
    print(f"kills at {args.random_kills} random moments: {args.random_kills - len(bad_random)} of "
          f"{args.random_kills} resumed bit-identical, no debris")
    print(f"reader during 400 saves: {loads} loads, {len(failures)} failed")
    for problem in (bad_renames + bad_random)[:5] + failures[:5]:
        print("  ", problem)
    print(f"{time.perf_counter() - start:.0f} s")
    sys.exit(1 if bad_renames or bad_random or failures else 0)


if __name__ == "__main__":
    main()
