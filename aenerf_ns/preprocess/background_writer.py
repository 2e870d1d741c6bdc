"""PNG saves in a background thread, so encoding and disk writes overlap the face models and parsing."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from jaxtyping import UInt8

from aenerf_ns.utils.atomic_io import atomic_save_png


class BackgroundPngWriter:
    """Saves PNGs atomically in one worker thread; at most `max_pending` saves wait, which bounds memory.

    Use as a context manager: leaving the block waits for every save and raises the first failure.
    """

    def __init__(self, max_pending: int, compress_level: int = 1):
        self.max_pending = max(1, max_pending)
        self.compress_level = compress_level
        self._pending: deque[Future] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> BackgroundPngWriter:
        self._pool = ThreadPoolExecutor(max_workers=1)
        return self

    def save(self, path: Path, image: UInt8[np.ndarray, "h w"] | UInt8[np.ndarray, "h w 3"]) -> None:
        """Queue `image` for `path`; waits for the oldest save first when `max_pending` are queued."""
        assert self._pool is not None, "BackgroundPngWriter.save is used inside its `with` block"
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(atomic_save_png, path, image, self.compress_level))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            while self._pending and exc_type is None:
                self._pending.popleft().result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
