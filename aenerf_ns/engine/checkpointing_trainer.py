"""nerfstudio's trainer with checkpoints that survive the process being killed.

nerfstudio writes `step-*.ckpt` straight to its final name and then deletes the older ones: a run killed
while saving (SIGKILL, a pre-empted cloud machine, out of memory) leaves a truncated newest checkpoint, and
`--load-dir` picks the newest, so the resume fails and the finished work is lost. Here each checkpoint is
written under a temporary name in a sibling folder, flushed to disk and renamed into place; older ones are
removed only after that. A killed run therefore always keeps a complete checkpoint, and resumes from it with
`ns-train <method> --data ... --load-dir <run>/nerfstudio_models`.

Resuming also needs the checkpoint to load under torch's safe unpickler (the default since torch 2.6):
nerfstudio's exponential-decay scheduler computes learning rates with numpy, so the optimizer and scheduler
states hold numpy scalars, which that unpickler refuses. They are allowed here, and nothing else is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread

PARTIAL_DIR = ".checkpoint_in_progress"
"""Folder next to `nerfstudio_models/` where a checkpoint is written before it is renamed into place (outside
the checkpoint folder, whose every entry nerfstudio's loader parses as `step-<n>.ckpt`)."""


def numpy_scalar_globals() -> list:
    """What torch's safe unpickler needs to read numpy float scalars (numpy 1 and 2 name the module differently)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return [scalar, np.dtype, *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64))]


class CheckpointingTrainer(Trainer):
    """`Trainer` whose checkpoints are written atomically and load back for `--load-dir` resumes.

    In a data-parallel run only rank 0 evaluates (nerfstudio evaluates on every rank; the other ranks then hold no
    evaluation frames at all, see `TalkingHeadDataManager`)."""

    @check_main_thread
    def eval_iteration(self, step: int) -> None:
        super().eval_iteration(step)

    def _load_checkpoint(self) -> None:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            super()._load_checkpoint()

    @check_main_thread  # in a data-parallel run only rank 0 writes (all ranks hold the same weights)
    def save_checkpoint(self, step: int) -> None:
        final_dir: Path = self.checkpoint_dir
        partial_dir = final_dir.parent / PARTIAL_DIR
        for stale in partial_dir.glob("*.ckpt"):  # left by a run killed while saving
            stale.unlink()
        self.checkpoint_dir = partial_dir
        try:
            super().save_checkpoint(step)  # nerfstudio's own contents, written into partial_dir
        finally:
            self.checkpoint_dir = final_dir
        written = partial_dir / f"step-{step:09d}.ckpt"
        with open(written, "rb") as handle:
            os.fsync(handle.fileno())
        final_dir.mkdir(parents=True, exist_ok=True)
        os.replace(written, final_dir / written.name)
        if self.config.save_only_latest_checkpoint:
            for older in final_dir.glob("*.ckpt"):
                if older.name != written.name:
                    older.unlink()


@dataclass
class CheckpointingTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig, building the `CheckpointingTrainer`."""

    _target: type = field(default_factory=lambda: CheckpointingTrainer)
