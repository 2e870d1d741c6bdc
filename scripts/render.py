"""`aenerf-render`: a trained talking head speaking a new audio track, as an mp4 with the audio muxed in.

    aenerf-render --load-config outputs/.../config.yml --audio speech.wav --output-path renders/out.mp4

One frame is rendered per audio-feature frame (the training frame rate), so video and audio last equally
long. Frames go to a hidden folder beside the output first and the mp4 appears under its final name only
when complete; rerunning the same command after an interruption keeps the frames already rendered.
The job is `aenerf_ns.inference.video_render`.
"""

from __future__ import annotations

from pathlib import Path

import tyro

from aenerf_ns.inference.video_render import RenderArgs, RenderInputError, render_video

__all__ = ["RenderArgs", "RenderInputError", "main", "entrypoint"]


def main(args: RenderArgs) -> Path:
    """Render the mp4 with the parsed settings (`video_render.render_video`)."""
    return render_video(args)


def entrypoint() -> None:
    from aenerf_ns.audio.audio_io import AudioError
    from aenerf_ns.inference.checkpoints import CheckpointError
    from aenerf_ns.inference.video_io import VideoEncodeError
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(RenderArgs)
    errors = (RenderInputError, AudioError, CheckpointError, VideoEncodeError, ValueError)
    run_cli("aenerf-render", lambda: main(args), args.load_config.parent, errors, create_folder=False)


if __name__ == "__main__":
    entrypoint()
