"""`aenerf-process`: a talking video to a training dataset, offline, in one command.

    aenerf-process --video my_clip.mp4 --output data/me
    ns-train aenerf --data data/me

Re-running the same command after an interruption skips the finished stages. Open `preview.png`
(landmarks, head axes, parsing, background plate) and `pose_angles.png` in the output folder to check
the tracking before training.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from aenerf_ns.preprocess.process_video import ProcessConfig


@dataclass
class ProcessArgs:
    """Turn a talking-head video into an aenerf_ns dataset (frames, poses, parsing maps, background, audio)."""

    video: Path
    """Input video: any common container and codec, with the person's speech as its audio track."""
    output: Path
    """Dataset folder to write (created; re-running resumes)."""
    settings: ProcessConfig = field(default_factory=ProcessConfig)
    """Processing settings."""


def main(args: ProcessArgs) -> int:
    from rich.console import Console

    from aenerf_ns.preprocess.process_video import ProcessError, process_video

    console = Console()
    start = time.perf_counter()
    try:
        report = process_video(args.video, args.output, args.settings, console)
    except ProcessError as exc:
        console.print(f"[bold red]aenerf-process: error:[/] {exc}")
        return 2
    wall = time.perf_counter() - start
    frames = report["frames"]
    rep = report["reprojection_error_px"]
    console.print(
        f"[bold green]dataset written to {args.output}[/]: {frames['kept']} frames "
        f"({frames['interpolated']} interpolated, {frames['dropped']} dropped), "
        f"mean reprojection error {rep['rigid_mean']:.2f} px (rigid landmarks), {rep['all_mean']:.2f} px (all), "
        f"{wall:.1f} s ({1000 * wall / max(frames['resampled'], 1):.0f} ms per frame)"
    )
    if rep["pnp_failed_frames"]:
        failed = rep["pnp_failed_frames"]
        console.print(f"[yellow]pose solving did not converge in {len(failed)} frame(s), e.g. {failed[:5]}[/]")
    console.print(f"check the tracking: {args.output / 'preview.png'} and {args.output / 'pose_angles.png'}")
    console.print(f"train: ns-train aenerf --data {args.output}")
    return 0


def entrypoint() -> None:
    from aenerf_ns.utils.cli_output import warnings_to_log

    args = tyro.cli(ProcessArgs)
    with warnings_to_log(args.output):
        status = main(args)
    sys.exit(status)


if __name__ == "__main__":
    entrypoint()
