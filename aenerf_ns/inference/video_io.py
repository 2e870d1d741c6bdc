"""Writing rendered frames plus a speech track into one mp4 (h264 + aac), and reading an mp4's layout back.

Encoding uses the ffmpeg binary bundled with imageio-ffmpeg (no system ffmpeg needed), which reads any
audio container ffmpeg knows (wav, mp3, m4a, flac, a video's audio track). Probing uses PyAV.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PROVENANCE_KEY = "synthesized"
"""mp4 metadata key every rendered video carries, with value "true"."""


class VideoEncodeError(RuntimeError):
    """ffmpeg could not write the video; the message holds the end of its log."""


@dataclass
class MediaInfo:
    """What an mp4 holds, as a player would see it."""

    video_codec: str | None
    """Codec of the first video stream (None: no video)."""
    audio_codec: str | None
    """Codec of the first audio stream (None: no audio)."""
    width: int = 0
    """Frame width in pixels."""
    height: int = 0
    """Frame height in pixels."""
    fps: float = 0.0
    """Average video frame rate."""
    num_frames: int = 0
    """Decoded video frames."""
    video_duration_s: float = 0.0
    """Video stream duration."""
    audio_duration_s: float = 0.0
    """Audio stream duration."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Container-level metadata tags."""


def ffmpeg_executable() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _encode_command(
    frame_pattern: str, fps: float, num_frames: int, audio_path: Path, metadata: dict[str, str], crf: int
) -> list[str]:
    """ffmpeg arguments (output file excluded): h264 frames plus aac audio, both cut to `num_frames / fps` s."""
    inputs = ["-framerate", f"{fps:g}", "-start_number", "0", "-i", frame_pattern, "-i", str(audio_path)]
    length = ["-map", "0:v:0", "-map", "1:a:0", "-frames:v", str(num_frames), "-t", f"{num_frames / fps:.6f}"]
    even_size = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]  # yuv420p needs even sizes
    video = ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    audio = ["-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart+use_metadata_tags"]
    tags = [arg for key, value in metadata.items() for arg in ("-metadata", f"{key}={value}")]
    quiet = ["-y", "-hide_banner", "-loglevel", "error"]
    return [ffmpeg_executable(), *quiet, *inputs, *length, *even_size, *video, *audio, *tags]


def encode_frames_with_audio(
    frame_pattern: str,
    fps: float,
    num_frames: int,
    audio_path: Path,
    output_path: Path,
    metadata: dict[str, str] | None = None,
    crf: int = 18,
) -> None:
    """Encode PNG frames (`frame_pattern`, e.g. ".../%06d.png", numbered from 0) with the audio as one mp4.

    The audio is cut to the video's length, so both streams last `num_frames / fps` seconds (aac frame
    padding aside). The file appears under `output_path` only once complete.
    """
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(f".{output_path.stem}.partial{output_path.suffix}")
    cmd = _encode_command(frame_pattern, fps, num_frames, audio_path, metadata or {}, crf) + [str(partial)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise VideoEncodeError(f"ffmpeg failed to write {output_path} (exit {result.returncode}):\n{tail}")
        os.replace(partial, output_path)
    finally:
        partial.unlink(missing_ok=True)


def probe_media(path: Path) -> MediaInfo:
    """Codecs, size, frame rate, decoded frame count and both stream durations of a media file."""
    import av

    with av.open(str(path)) as container:
        info = MediaInfo(video_codec=None, audio_codec=None, metadata=dict(container.metadata))
        if container.streams.video:
            stream = container.streams.video[0]
            info.video_codec = stream.codec_context.name
            info.width, info.height = stream.codec_context.width, stream.codec_context.height
            info.fps = float(stream.average_rate or 0)
            if stream.duration is not None:
                info.video_duration_s = float(stream.duration * stream.time_base)
        if container.streams.audio:
            stream = container.streams.audio[0]
            info.audio_codec = stream.codec_context.name
            if stream.duration is not None:
                info.audio_duration_s = float(stream.duration * stream.time_base)
        if container.streams.video:
            info.num_frames = sum(1 for _ in container.decode(video=0))
    return info
