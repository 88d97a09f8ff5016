"""The main job (`vaekit train` on the digits) beside one busy process, with the old default of
one thread per core (--threads = cores) and with the new default (the idle cores, measured at
start). Prints both wall times and their ratio, measured in one run.

    python benchmarks/busy_cpu.py --epochs 30
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

BUSY = "while True: pass"


def timed(args: list[str], out: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vaekit.cli", "train", "--out", out, "--no-progress", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    print("   ", [line for line in done.stdout.splitlines() if line.startswith("Training")][0])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(1.0)
        old, new = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):  # interleaved, so both see the same machine
                old.append(timed(["--epochs", str(args.epochs), "--threads", str(cores)], f"{tmp}/old{r}"))
                new.append(timed(["--epochs", str(args.epochs)], f"{tmp}/new{r}"))
    finally:
        busy.kill()
    o, n = min(old), min(new)
    print(f"beside one busy process on {cores} cores, {args.epochs} epochs of the digits VAE:")
    print(f"  --threads {cores} (the old default): {o:.1f} s")
    print(f"  default (idle cores):       {n:.1f} s")
    print(f"  speed-up: {o / n:.2f}x")


if __name__ == "__main__":
    main()
