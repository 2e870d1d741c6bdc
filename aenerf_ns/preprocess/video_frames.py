"""Reading a user's video: probing it, and decoding frames resampled to a fixed frame rate by timestamp.

Phones record variable frame rates and store rotation as metadata, so frames are chosen by presentation
time (the source frame nearest to each output instant), never by index, and are turned upright.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VideoInputError(ValueError):
    """The video cannot be used; the message names the file and the problem."""


@dataclass
class VideoInfo:
    """What a video file holds."""

    path: Path
    """The file."""
    width: int
    """Frame width after rotation metadata is applied."""
    height: int
    """Frame height after rotation metadata is applied."""
    duration_s: float
    """Time of the last frame plus one average frame interval."""
    average_fps: float
    """Frames per second over the whole clip."""
    variable_frame_rate: bool
    """Whether frame intervals vary by more than 10%."""
    num_source_frames: int
    """Frames decoded."""
    has_audio: bool
    """Whether the file has an audio stream."""
    audio_duration_s: float | None
    """Length of the audio stream, when known."""
    rotation: int
    """Display rotation in degrees applied to the frames."""


def _open(path: Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoInputError(f"video file {path} does not exist")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several error types for damaged files
        raise VideoInputError(f"could not open {path} as a video (corrupt or unsupported format): {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoInputError(f"{path} has no video stream")
    return container


def _frame_times(path: Path) -> tuple[np.ndarray, int]:
    """Presentation time (seconds, from the first frame) of every frame, and the display rotation."""
    container = _open(path)
    times, rotation = [], 0
    try:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            for frame in packet.decode():
                if not times:
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                times.append(frame.time if frame.time is not None else len(times) / float(stream.average_rate or 25))
    except Exception as exc:
        raise VideoInputError(f"{path} is damaged: decoding failed after {len(times)} frames ({exc})") from None
    finally:
        container.close()
    times = np.sort(np.asarray(times, dtype=np.float64))
    return times - (times[0] if len(times) else 0.0), rotation


def probe_video(path: Path) -> VideoInfo:
    """Decode the whole video once to learn its real frame timing (containers' frame rates can lie)."""
    path = Path(path)
    times, rotation = _frame_times(path)
    if len(times) < 2:
        raise VideoInputError(f"{path} holds {len(times)} decodable frame(s): not a usable video")
    intervals = np.diff(times)
    intervals = intervals[intervals > 0]
    mean_interval = float(np.median(intervals)) if len(intervals) else 1 / 25
    variable = bool(len(intervals) and np.std(intervals) > 0.1 * mean_interval)
    container = _open(path)
    try:
        first = container.streams.video[0]
        width, height = first.codec_context.width, first.codec_context.height
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_duration = None
        if audio is not None and audio.duration is not None and audio.time_base is not None:
            audio_duration = float(audio.duration * audio.time_base)
        elif audio is not None and container.duration:
            audio_duration = container.duration / 1e6
    finally:
        container.close()
    if rotation % 180:
        width, height = height, width
    duration = float(times[-1] + mean_interval)
    return VideoInfo(
        path,
        width,
        height,
        duration,
        (len(times) - 1) / max(times[-1], 1e-9),
        variable,
        len(times),
        audio is not None,
        audio_duration,
        rotation,
    )


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply display rotation (degrees counter-clockwise, as stored by phones)."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def resampled_frames(path: Path, fps: float, num_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, RGB uint8 frame) for output frames 0..num_frames-1 at `fps`.

    Output frame k shows the source frame whose timestamp is nearest to k / fps, so variable frame
    rates and rates other than `fps` come out evenly timed; source frames repeat or drop as needed.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = None
        previous: tuple[float, np.ndarray] | None = None
        k = 0
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else 0.0
            if start is None:
                start = t
                rotation = int(getattr(frame, "rotation", 0) or 0)
            t -= start
            image = _upright(frame.to_ndarray(format="rgb24"), rotation)
            while k < num_frames and t >= k / fps:
                target = k / fps
                if previous is not None and abs(previous[0] - target) <= abs(t - target):
                    yield k, previous[1]
                else:
                    yield k, image
                k += 1
            if k >= num_frames:
                return
            previous = (t, image)
        while k < num_frames and previous is not None:  # the clip's last frame covers the remainder
            yield k, previous[1]
            k += 1
    finally:
        container.close()
