"""In-process training as `ns-train` runs it, under a step or wall-clock budget, for both benchmarks.

`train` sets up a TrainerConfig's pipeline, runs the model's training callbacks around each iteration and
records the training seconds (GPU work synchronised, evaluation excluded), the peak memory of training and,
when asked, a held-out PSNR curve. `aenerf-bench` gives every method the same budget; `aenerf-method-bench`
compares runs of equal steps.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from aenerf_ns.bench.heldout import HeldoutFrames, heldout_cameras, heldout_psnr

RECENT_LOSSES = 20
"""Training steps whose mean loss each curve point reports."""


@dataclass(frozen=True)
class TrainingBudget:
    """How long a run trains: a number of steps, or seconds of training (evaluation excluded)."""

    steps: int | None = None
    """Training steps (None: train for `seconds`)."""
    seconds: float | None = None
    """Training wall-clock seconds, when no step count is set."""
    schedule_steps: int = 30000
    """Steps the learning-rate schedules span under a time budget (a step budget spans its own steps)."""

    def __post_init__(self):
        if (self.steps is None) == (self.seconds is None):
            raise ValueError(
                f"a training budget has either steps or seconds, got steps={self.steps}, seconds={self.seconds}"
            )
        if (self.steps is not None and self.steps < 1) or (self.seconds is not None and self.seconds <= 0):
            raise ValueError(f"the training budget must be positive, got {self.total}")

    @property
    def total(self) -> float:
        """The budget in its own unit (steps or seconds)."""
        return self.steps if self.steps is not None else self.seconds

    def used(self, step: int, seconds: float) -> float:
        """How much of the budget `step` steps taking `seconds` seconds have used, in the budget's unit."""
        return step if self.steps is not None else seconds

    def spent(self, step: int, seconds: float) -> bool:
        return self.used(step, seconds) >= self.total

    def evenly(self, points: int) -> tuple[float, ...]:
        """Marks dividing the budget into `points` equal parts (the start and the end excluded)."""
        return tuple(self.total * k / points for k in range(1, points))

    def every(self, steps: int) -> tuple[float, ...]:
        """Marks every `steps` steps of a step budget, before its end (none when `steps` is 0)."""
        if self.steps is None:
            raise ValueError("marks every so many steps need a step budget")
        return tuple(range(steps, self.steps, steps)) if steps > 0 else ()


@dataclass
class TrainingRun:
    """One training run and what it records besides training."""

    label: str
    """Name on the progress bar and in errors."""
    budget: TrainingBudget
    """Steps or seconds of training."""
    curve_marks: Sequence[float] | None = None
    """Budget positions (steps or seconds) after which held-out PSNR is measured, besides the start and the
    end (None: no held-out curve at all)."""
    curve_frames: int = 4
    """Evenly spaced held-out frames each curve point averages."""
    reference: HeldoutFrames | None = None
    """Held-out frames to measure and return (None: the pipeline's own held-out split)."""
    callbacks: bool = True
    """Run the pipeline's training callbacks (samplers fed by the loss, annealing...) as ns-train does."""
    checkpoint: Path | None = None
    """Where to save the trained pipeline, as ns-train's `step-*.ckpt` (None: not saved)."""
    seed: int = 0
    """Seed of Python's, numpy's and torch's random generators, set before the pipeline is built."""
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    """Device to train on."""


@dataclass
class CurvePoint:
    """One held-out PSNR measurement during training."""

    seconds: float
    """Training seconds spent."""
    step: int
    """Training steps done."""
    psnr: float
    """Held-out PSNR (dB)."""
    train_loss: float
    """Mean training loss of the last `RECENT_LOSSES` steps (NaN at the start)."""


@dataclass
class TrainedPipeline:
    """A trained pipeline with its held-out frames and the figures of its training."""

    pipeline: object
    """The nerfstudio pipeline, left in training mode."""
    heldout: HeldoutFrames
    """The held-out frames the curve was measured on."""
    cameras: Cameras
    """The pipeline's own cameras of those frames."""
    steps: int
    """Training steps done."""
    train_seconds: float
    """Training wall-clock seconds (evaluation excluded)."""
    curve: list[CurvePoint]
    """Held-out PSNR at the start, at each mark and at the end (empty without marks)."""
    train_peak_mb: float
    """Peak memory of setting up and training (CUDA allocated on a GPU, resident set on a CPU)."""

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.train_seconds / max(self.steps, 1)


def train_step(pipeline, optimizers, callbacks: list, step: int) -> Tensor:
    """One training iteration as ns-train runs it (without mixed precision); returns the summed loss."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    pipeline.train()
    for callback in callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    _, loss_dict, _ = pipeline.get_train_loss_dict(step)
    loss = sum(loss_dict.values())
    optimizers.zero_grad_all()
    loss.backward()
    optimizers.optimizer_step_all()
    optimizers.scheduler_step_all(step)
    for callback in callbacks:
        callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return loss


class _CurveRecorder:
    """Measures held-out PSNR when training passes the next mark (one measurement per step at most)."""

    def __init__(self, model, heldout: HeldoutFrames, cameras: Cameras, run: TrainingRun):
        self.model, self.heldout, self.cameras = model, heldout, cameras
        self.enabled = run.curve_marks is not None
        self.marks = sorted(run.curve_marks or ())
        self.picks = heldout.evenly_spaced(run.curve_frames)
        self.points: list[CurvePoint] = []

    def measure(self, step: int, seconds: float, recent_losses: list[float]) -> None:
        if self.enabled:
            loss = float(np.mean(recent_losses)) if recent_losses else float("nan")
            psnr = heldout_psnr(self.model, self.cameras, self.heldout, self.picks)
            self.points.append(CurvePoint(seconds, step, psnr, loss))

    def after_step(self, position: float, step: int, seconds: float, recent_losses: list[float]) -> None:
        if self.marks and position >= self.marks[0]:
            self.marks.pop(0)
            self.measure(step, seconds, recent_losses)


def _set_schedules(config, budget: TrainingBudget) -> None:
    """Learning-rate schedules span the budget's steps, as `ns-train --max-num-iterations` would set them."""
    steps = budget.steps or budget.schedule_steps
    config.max_num_iterations = steps
    for group in config.optimizers.values():
        if group.get("scheduler") is not None:
            group["scheduler"].max_steps = steps


def _progress(label: str):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"training {label}"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    return Progress(*columns, transient=True)


def save_checkpoint(path: Path, pipeline, step: int) -> None:
    """The pipeline's weights as ns-train saves them (`step`, `pipeline`), written atomically."""
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"step": step, "pipeline": pipeline.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _train_loop(pipeline, optimizers, callbacks: list, curve: _CurveRecorder, run: TrainingRun) -> tuple[int, float]:
    """Training iterations until the budget is spent; returns the steps done and their seconds."""
    from aenerf_ns.bench.resource_meter import now, synchronize

    budget = run.budget
    seconds, step, recent_losses = 0.0, 0, []
    curve.measure(step, seconds, recent_losses)
    with _progress(run.label) as progress:
        task = progress.add_task("", total=budget.total)
        while not budget.spent(step, seconds):
            start = now()
            loss = train_step(pipeline, optimizers, callbacks, step)
            synchronize(run.device)
            seconds += now() - start
            step += 1
            recent_losses = (recent_losses + [loss.item()])[-RECENT_LOSSES:]
            if not math.isfinite(recent_losses[-1]):
                raise FloatingPointError(f"{run.label}: the training loss became {recent_losses[-1]} at step {step}")
            progress.update(task, completed=budget.used(step, seconds), description=f"step {step}")
            curve.after_step(budget.used(step, seconds), step, seconds, recent_losses)
    curve.measure(step, seconds, recent_losses)
    return step, seconds


def train(config, run: TrainingRun) -> TrainedPipeline:
    """Build `config`'s pipeline (held-out split in evaluation mode) and train it as `run` says."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes
    from nerfstudio.engine.optimizers import Optimizers

    from aenerf_ns.bench.resource_meter import PeakMemory
    from aenerf_ns.engine.opening_calibration import calibrate_opening_gain

    random.seed(run.seed)  # nerfstudio's image cache draws its order from Python's generator
    np.random.seed(run.seed)
    torch.manual_seed(run.seed)
    _set_schedules(config, run.budget)
    with PeakMemory(run.device) as memory:
        pipeline = config.pipeline.setup(device=run.device, test_mode="val")
        optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
        attributes = TrainingCallbackAttributes(optimizers, None, pipeline, None)
        callbacks = pipeline.get_training_callbacks(attributes) if run.callbacks else []
        heldout = run.reference or HeldoutFrames(pipeline.datamanager.eval_dataset)
        cameras = heldout_cameras(pipeline, heldout)
        curve = _CurveRecorder(pipeline.model, heldout, cameras, run)
        steps, seconds = _train_loop(pipeline, optimizers, callbacks, curve, run)
        if run.callbacks:  # as ns-train's trainer does before its final checkpoint
            calibrate_opening_gain(pipeline)
    if run.checkpoint is not None:
        save_checkpoint(run.checkpoint, pipeline, steps - 1)
    return TrainedPipeline(pipeline, heldout, cameras, steps, seconds, curve.points, memory.peak_mb)
