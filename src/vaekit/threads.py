"""How many CPU threads a command uses: --threads, else $VAEKIT_THREADS, else the cores that are
idle right now. Beside one busy process on two cores, one thread trains about 3x faster than two
that keep waiting for each other (benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import time

import torch

from .errors import InputError

ENV = "VAEKIT_THREADS"


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def idle_cores(window: float = 0.25) -> float | None:
    """Cores' worth of idle time over a short window (Linux /proc/stat), None where unknown."""
    def snapshot():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = snapshot()
        time.sleep(window)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    machine = os.cpu_count() or 1
    return machine * (idle1 - idle0) / (total1 - total0)


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """(threads, why) for this process, and set them: the request, $VAEKIT_THREADS, or the idle cores."""
    if requested is None and os.environ.get(ENV):
        try:
            requested = int(os.environ[ENV])
        except ValueError:
            raise InputError(f"${ENV} must be a whole number of threads, not {os.environ[ENV]!r}.") from None
        why = f"${ENV}"
    else:
        why = "--threads"
    if requested is not None:
        if requested < 1:
            raise InputError(f"{why} must be 1 or more, got {requested}.")
        n = requested
    else:
        available, idle = cores(), idle_cores()
        n = available if idle is None else max(1, min(available, round(idle)))
        why = "all cores" if n == available else f"{available - n} of {available} cores busy"
    torch.set_num_threads(n)
    return n, why
