"""A live audio stream turned into a growing table of per-frame feature windows, on a background thread.

The thread reads chunks from a source (`audio_sources`), computes the windows each chunk completes
(`StreamingFeatures`), appends them and notes when the chunk that completed each frame arrived, so whoever
renders the frame can measure the latency from arrival to picture. `on_frames` is called (from the thread)
after every chunk that completed at least one frame, e.g. to ask the viewer for a re-render.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import numpy as np
from jaxtyping import Float

from aenerf_ns.audio.audio_stream import StreamingFeatures


class LiveAudio:
    """Feature windows of a stream as they complete; thread-safe reads of the newest frames."""

    def __init__(
        self,
        source: Iterable[np.ndarray],
        features: StreamingFeatures,
        on_frames: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.features = features
        self.on_frames = on_frames
        self._lock = threading.Lock()
        self._windows: list[np.ndarray] = []
        self.arrival: list[float] = []
        """`time.monotonic()` at which the chunk that completed each frame arrived."""
        self.error: str | None = None
        self.done = False
        self._thread = threading.Thread(target=self._run, name="aenerf-live-audio", daemon=True)

    def start(self) -> LiveAudio:
        self._thread.start()
        return self

    def stop(self) -> None:
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _add(self, windows: np.ndarray, arrived: float) -> None:
        if not len(windows):
            return
        with self._lock:
            self._windows.extend(windows)
            self.arrival.extend([arrived] * len(windows))
            count = len(self._windows)
        if self.on_frames is not None:
            self.on_frames(count)

    def _run(self) -> None:
        try:
            for chunk in self.source:
                arrived = time.monotonic()
                self._add(self.features.push(chunk), arrived)
            self._add(self.features.finish(), time.monotonic())
        except Exception as exc:  # reported to whoever shows the stream's status
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done = True
            if self.on_frames is not None:
                self.on_frames(len(self))

    def __len__(self) -> int:
        with self._lock:
            return len(self._windows)

    def rows(self, rows: Iterable[int]) -> Float[np.ndarray, "n window dim"]:
        """The windows of the given frames (each clamped to the frames that exist so far)."""
        with self._lock:
            last = len(self._windows) - 1
            if last < 0:
                raise IndexError("no audio frame has arrived yet")
            return np.stack([self._windows[min(max(int(r), 0), last)] for r in rows])
