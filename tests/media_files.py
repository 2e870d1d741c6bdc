"""Test media written on the fly: frames to an mp4, with or without a sound track."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np


def encode_mp4(
    frames: list[np.ndarray], fps: float, out: Path, audio: Path | None = None, shortest: bool = True
) -> Path:
    """Frames (RGB uint8) to an h264 mp4 at `fps`, with the audio muxed in when given (cut to the video's length
    unless `shortest` is False)."""
    from aenerf_ns.inference.video_io import ffmpeg_executable

    folder = out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    cmd = [ffmpeg_executable(), "-y", "-loglevel", "error", "-framerate", f"{fps:g}", "-i", str(folder / "%05d.png")]
    if audio is not None:
        cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac"]
        cmd += ["-shortest"] if shortest else []
    cmd += ["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True)
    return out


def write_speech_wav(path: Path, seconds: float, seed: int) -> Path:
    """`seconds` of synthetic speech (16 kHz mono) written to `path` as a wav; returns `path`."""
    from aenerf_ns.audio.audio_io import write_wav
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    track = synthesize_speech(seconds, seed=seed)
    write_wav(path, track.audio, track.sample_rate)
    return path


def face_crop_clip(out: Path, seconds: float = 1.2, size: int = 48, seed: int = 0) -> Path:
    """A 25 fps clip standing in for a pre-cropped face video (moving smooth noise, `size` px) with synthetic
    speech as its sound track; any container ffmpeg knows from `out`'s suffix (.avi, .mp4)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 25))
    coarse = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    frames = [cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse]
    # the sound track a little longer than the frames, as recordings often are
    wav = write_speech_wav(out.with_name(out.stem + "_speech.wav"), seconds + 0.2, seed)
    return encode_mp4(frames, 25.0, out, wav, shortest=False)
