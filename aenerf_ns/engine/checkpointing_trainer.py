"""nerfstudio's trainer with checkpoints that survive the process being killed.

nerfstudio writes `step-*.ckpt` straight to its final name and then deletes the older ones: a run killed
while saving (SIGKILL, a pre-empted cloud machine, out of memory) leaves a truncated newest checkpoint, and
`--load-dir` picks the newest, so the resume fails and the finished work is lost. Here each checkpoint is
written under a temporary name in a sibling folder, flushed to disk and renamed into place; older ones are
removed only after that. A killed run therefore always keeps a complete checkpoint, and resumes from it with
`ns-train <method> --data ... --load-dir <run>/nerfstudio_models`.

Checkpoints must also load under torch's restricted unpickler (`weights_only=True`, the default since torch 2.6),
which nerfstudio's `eval_setup` (`ns-render`, `ns-eval`, `ns-viewer`, `ns-export`) uses: nerfstudio's
exponential-decay scheduler computes learning rates with numpy, so the optimizer and scheduler states hold numpy
scalars, which that unpickler refuses. They are saved as plain Python numbers here; resuming a run saved before
that allows numpy scalars (see `aenerf_ns.utils.safe_checkpoint`), and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from aenerf_ns.engine.opening_calibration import calibrate_opening_gain
from aenerf_ns.utils.safe_checkpoint import numpy_scalar_globals, plain_numbers

PARTIAL_DIR = ".checkpoint_in_progress"
"""Folder next to `nerfstudio_models/` where a checkpoint is written before it is renamed into place (outside
the checkpoint folder, whose every entry nerfstudio's loader parses as `step-<n>.ckpt`)."""


class CheckpointingTrainer(Trainer):
    """`Trainer` whose checkpoints are written atomically and load back for `--load-dir` resumes.

    In a data-parallel run only rank 0 evaluates (nerfstudio evaluates on every rank; the other ranks then hold no
    evaluation frames at all, see `TalkingHeadDataManager`)."""

    @check_main_thread
    def eval_iteration(self, step: int) -> None:
        super().eval_iteration(step)

    def _plain_pipeline(self):
        """The pipeline, without a data-parallel wrapper."""
        return self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline

    def _after_train(self) -> None:
        """Before the final checkpoint, measure how far the fields draw the mouth opening they are told, so that the
        saved model renders new speech at the speaker's amplitude (`opening_calibration`)."""
        self._calibrate_opening()
        super()._after_train()

    def _calibrate_opening(self) -> None:
        """Rank 0 measures the gain; in a data-parallel run every rank then takes rank 0's (replicas stay equal)."""
        pipeline = self._plain_pipeline()
        gain = calibrate_opening_gain(pipeline) if comms.is_main_process() else None
        model = pipeline.model
        if gain is not None:
            CONSOLE.print(f"mouth-opening gain, measured on training frames: {gain:.2f}")
        elif comms.is_main_process() and hasattr(model, "opening_gain"):
            CONSOLE.print(
                "[yellow]mouth-opening gain not measured: the face tracker read too few training frames; rendering "
                f"keeps the gain at {float(model.opening_gain):.2f}[/yellow]"
            )
        if dist.is_available() and dist.is_initialized() and hasattr(model, "opening_gain"):
            dist.broadcast(model.opening_gain, src=0)

    def _load_checkpoint(self) -> None:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            super()._load_checkpoint()

    def checkpoint_contents(self, step: int) -> dict:
        """What nerfstudio's trainer saves (step, pipeline, optimizers, schedulers, scalers), numbers as plain Python
        numbers so that torch's restricted unpickler reads it."""
        pipeline = self._plain_pipeline()
        return plain_numbers(
            {
                "step": step,
                "pipeline": pipeline.state_dict(),
                "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
            }
        )

    @check_main_thread  # in a data-parallel run only rank 0 writes (all ranks hold the same weights)
    def save_checkpoint(self, step: int) -> None:
        final_dir: Path = self.checkpoint_dir
        partial_dir = final_dir.parent / PARTIAL_DIR
        partial_dir.mkdir(parents=True, exist_ok=True)
        for stale in partial_dir.glob("*.ckpt"):  # left by a run killed while saving
            stale.unlink()
        written = partial_dir / f"step-{step:09d}.ckpt"
        torch.save(self.checkpoint_contents(step), written)
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
