"""`aenerf-sync-check`: can the weight-free lip-sync measure tell good sync from bad on this video?

    aenerf-sync-check --video talking.mp4                          # the whole clip, its own audio track
    aenerf-sync-check --video talking.mp4 --start 20 --seconds 10  # a 10 s segment
    aenerf-sync-check --video render.mp4 --audio speech.wav        # audio from a separate file
    aenerf-sync-check --video talking.mp4 --syncnet-weights syncnet_v2.model  # SyncNet's LSE-C/LSE-D too
    aenerf-sync-check --video example.avi --pre-cropped --syncnet-weights syncnet_v2.model  # face crops already

The face is tracked in every frame and the mouth opening read from the face mesh; the measure
(`aenerf_ns.evaluation.sync_metrics`) is then scored for the video with its own audio at offset 0, for the
video shifted by 3, 4 and 5 frames either way, and for unrelated audio taken from elsewhere in the audio
track. A measure that works scores offset 0 clearly above every shifted video and unrelated audio near zero.
When SyncNet's weights are on disk, the segment's LSE-C, LSE-D and SyncNet offset are given as well (any
video: a real recording, or a render from `aenerf-render`). The figures are printed and written as JSON
(with the per-frame mouth opening). The check is `aenerf_ns.evaluation.video_sync_check`.

With `--pre-cropped` the frames already are the face crops SyncNet sees (syncnet_python's demo feeds its
`data/example.avi` this way): they are resized to 224 x 224 and scored by SyncNet alone, with no face mesh
and no weight-free measure (it needs the face mesh's mouth), so the result can be set against the reference's.
"""

from __future__ import annotations

from pathlib import Path

import tyro

from aenerf_ns.evaluation.video_sync_check import SyncCheckArgs, SyncCheckError, run_sync_check

__all__ = ["SyncCheckArgs", "SyncCheckError", "main", "entrypoint"]


def main(args: SyncCheckArgs) -> dict:
    """Run the check with the parsed settings (`video_sync_check.run_sync_check`)."""
    return run_sync_check(args)


def entrypoint() -> None:
    from aenerf_ns.audio.audio_io import AudioError
    from aenerf_ns.preprocess.video_frames import VideoInputError
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(SyncCheckArgs)
    log_folder = (args.output or Path.cwd() / "x").parent
    run_cli("aenerf-sync-check", lambda: main(args), log_folder, (SyncCheckError, VideoInputError, AudioError), False)


if __name__ == "__main__":
    entrypoint()
