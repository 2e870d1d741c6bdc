"""Peak memory of a block of work: CUDA allocator statistics on a GPU, resident set size on a CPU.

The process-wide peak (`ru_maxrss`) never goes down, so it cannot tell the peaks of successive renders
apart; on a CPU a background thread samples the resident set size instead (every 2 ms, from
/proc/self/statm, falling back to `ru_maxrss` where /proc does not exist).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import threading
import time
from pathlib import Path

import torch

_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _load_libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def release_free_memory() -> None:
    """Hand memory the allocator keeps after frees back to the system (glibc), so that the resident set
    grows again when new work needs memory; without it, a render after training reuses training's freed
    pages and seems to need nothing."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def resident_mb() -> float:
    """Resident set size of this process now (MB); the peak so far where /proc is missing."""
    if _STATM.exists():
        return int(_STATM.read_text().split()[1]) * _PAGE / 2**20
    return peak_resident_mb()


def peak_resident_mb() -> float:
    """Largest resident set size this process has had (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class PeakMemory:
    """`with PeakMemory(device) as meter:` ... then `meter.peak_mb` (highest use inside the block) and
    `meter.added_mb` (that peak minus the use when the block began). GPU: allocated CUDA memory; CPU: RSS."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.002):
        self.cuda = torch.device(device).type == "cuda"
        self.interval_s = interval_s
        self.start_mb = self.peak_mb = self.added_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, resident_mb())

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_mb = torch.cuda.memory_allocated() / 2**20
        else:
            release_free_memory()
            self.start_mb = resident_mb()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        self.peak_mb = self.start_mb
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak_mb = max(self.peak_mb, resident_mb())
        self.added_mb = max(0.0, self.peak_mb - self.start_mb)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so that wall-clock timings include it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def now() -> float:
    """Monotonic seconds."""
    return time.perf_counter()
