"""Test media written on the fly: frames to an mp4, with or without a sound track."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np


def encode_mp4(frames: list[np.ndarray], fps: float, out: Path, audio: Path | None = None) -> Path:
    """Frames (RGB uint8) to an h264 mp4 at `fps`, with the audio muxed in when given."""
    from aenerf_ns.inference.video_io import ffmpeg_executable

    folder = out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    cmd = [ffmpeg_executable(), "-y", "-loglevel", "error", "-framerate", f"{fps:g}", "-i", str(folder / "%05d.png")]
    if audio is not None:
        cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True)
    return out
