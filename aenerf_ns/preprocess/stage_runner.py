"""Named, timed, resumable stages: `.process/state.json` records which stages finished under which settings.

A stage with a key is skipped when an earlier run finished it with the same key (its settings and inputs
unchanged) and the files it leaves behind still exist; its result is then read back from those files.
Every stage, run or skipped, is timed once under `<name>_s`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from aenerf_ns.utils.atomic_io import atomic_write_bytes

STATE_VERSION = 1
"""Bumped when a stage's output changes meaning, so old work folders are recomputed."""

T = TypeVar("T")


def stage_key(*parts) -> str:
    """Short digest of a stage's settings and inputs (anything JSON can show, others by `str`)."""
    return hashlib.sha256(json.dumps([STATE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageState:
    """`state.json` in the work folder: the key each finished stage ran with."""

    def __init__(self, work: Path):
        self.path = work / "state.json"
        self.done: dict[str, str] = {}
        if self.path.is_file():
            try:
                self.done = json.loads(self.path.read_text()).get("done", {})
            except (json.JSONDecodeError, OSError):
                self.done = {}

    def finished(self, stage: str, key: str) -> bool:
        """Whether `stage` finished with `key` in this or an earlier run."""
        return self.done.get(stage) == key

    def mark(self, stage: str, key: str) -> None:
        """Record that `stage` finished with `key` (written at once, so an interrupted run keeps it)."""
        self.done[stage] = key
        atomic_write_bytes(self.path, json.dumps({"done": self.done}, indent=1).encode())


class StageRunner:
    """Runs the stages of one work folder, skipping finished ones and collecting their times."""

    def __init__(self, work: Path, console: Console):
        self.state = StageState(work)
        self.console = console
        self.timings_s: dict[str, float] = {}
        """Seconds per stage, `<name>_s`, in the order the stages ran."""

    def run(
        self,
        name: str,
        produce: Callable[[], T],
        key: str | None = None,
        load: Callable[[], T] | None = None,
        outputs: Sequence[Path] = (),
    ) -> T | None:
        """Stage `name`'s result: from `produce`, or from `load` when the stage is finished already.

        Without a `key` the stage always runs. With one, it is skipped (and says so) when `state.json` holds
        the same key and every path in `outputs` exists; `load` (when given) then reads its result back.
        """
        start = time.perf_counter()
        if key is not None and self.state.finished(name, key) and all(Path(p).exists() for p in outputs):
            self.console.print(f"[dim]{name}: finished by an earlier run with the same settings, skipped[/]")
            result = load() if load is not None else None
        else:
            result = produce()
            if key is not None:
                self.state.mark(name, key)
        self.timings_s[f"{name}_s"] = time.perf_counter() - start
        return result
