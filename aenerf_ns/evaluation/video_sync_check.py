"""`aenerf-sync-check`'s check: can the weight-free lip-sync measure tell good sync from bad on a given video?

The face is tracked in every frame of a segment and the mouth opening read from the face mesh; the measure
(`sync_metrics`) is then scored for the video with its own audio at offset 0, for the video shifted by a few
frames either way, and for unrelated audio taken from elsewhere in the audio track. When SyncNet's weights are on
disk, the segment's LSE-C, LSE-D and SyncNet offset are added. Pre-cropped frames (SyncNet's face crops already)
are scored by SyncNet alone (`check_pre_cropped`). Kept in the package, apart from the command, so that the check
can be run and tested on any video without the command line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class SyncCheckError(ValueError):
    """The video cannot be checked; the message names the file and the problem."""


@dataclass
class SyncCheckArgs:
    """Check the weight-free lip-sync measure on a talking-head video: own audio at offset 0 against shifted
    video and unrelated audio."""

    video: Path
    """Talking-head video (mp4 or any common container), with the speech as its audio track unless --audio."""
    audio: Path | None = None
    """Speech to use instead of the video's audio track (wav, flac, mp3, m4a); it starts with the video."""
    start: float = 0.0
    """Start of the segment to check, in seconds of the video."""
    seconds: float | None = None
    """Length of the segment (default: to the end of the video)."""
    output: Path | None = None
    """JSON file to write (default: <video name>_sync_check.json in the current folder)."""
    fps: float | None = None
    """Frame rate to read the video at (default: the video's own)."""
    max_offset: int = 5
    """Largest delay, in frames either way, searched for the best offset."""
    shifts: tuple[int, ...] = (3, 4, 5)
    """Shifts (frames, each applied both ways) the clip's own sync must beat."""
    shuffles: int = 10
    """Number of unrelated-audio scores."""
    seed: int = 0
    """Seed of the unrelated-audio draws."""
    batch_size: int = 64
    """Frames tracked at once."""
    device: str = "cpu"
    """Where the face models and SyncNet run."""
    syncnet_weights: Path | None = None
    """SyncNet's weights file for LSE-C / LSE-D (default: the documented location; skipped when absent)."""
    pre_cropped: bool = False
    """The frames already are SyncNet's mouth-centred face crops (as syncnet_python's demo feeds them): score
    LSE-C/LSE-D only, on the whole frames at 25 fps resized to 224 px, without the face mesh; needs the weights."""


def _segment(args: SyncCheckArgs, duration_s: float, fps: float) -> tuple[int, int]:
    """First and one-past-last frame index of the requested segment."""
    total = int(math.floor(duration_s * fps + 1e-6))
    if args.start < 0 or (args.seconds is not None and args.seconds <= 0):
        raise SyncCheckError(f"--start must be >= 0 and --seconds > 0 (got {args.start}, {args.seconds})")
    first = int(round(args.start * fps))
    last = total if args.seconds is None else min(total, first + int(round(args.seconds * fps)))
    if first >= total:
        raise SyncCheckError(f"--start {args.start:g} s is past the end of {args.video} ({duration_s:.2f} s)")
    return first, last


def track_landmarks(
    video: Path,
    fps: float,
    first: int,
    last: int,
    batch_size: int = 64,
    device: str = "cpu",
    progress=None,
    keep_frames: bool = False,
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Face-mesh landmarks (pixels; NaN without a face) of frames first..last-1 of `video` read at `fps`, and
    the frames themselves when `keep_frames` (SyncNet crops them)."""
    from aenerf_ns.faces.face_tracking import MESH_PRESENCE, detect_faces, track_faces
    from aenerf_ns.preprocess.video_frames import resampled_frames

    landmarks: np.ndarray | None = None
    frames: list[np.ndarray] | None = [] if keep_frames else None
    task = progress.add_task("tracking the face", total=last - first) if progress is not None else None
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        nonlocal landmarks
        images = [image for _, image in batch]
        found, presence = track_faces(images, detect_faces(images, device), device)
        if landmarks is None:
            landmarks = np.full((last - first, *found.shape[1:]), np.nan)
        landmarks[[k - first for k, _ in batch]] = np.where((presence >= MESH_PRESENCE)[:, None, None], found, np.nan)
        if progress is not None:
            progress.advance(task, len(batch))
        batch.clear()

    for k, image in resampled_frames(video, fps, last):
        if k < first:
            continue
        batch.append((k, image))
        if frames is not None:
            frames.append(image)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if landmarks is None:
        raise SyncCheckError(f"no frames could be read from {video} (frames {first}-{last - 1})")
    return landmarks, frames


def check_pre_cropped(args: SyncCheckArgs, audio, duration_s: float, console) -> dict:
    """LSE-C, LSE-D and SyncNet's offset of a video whose frames are face crops already (`--pre-cropped`)."""
    import dataclasses

    from aenerf_ns.evaluation.metric_reports import json_safe
    from aenerf_ns.evaluation.syncnet_score import SYNCNET_FPS, syncnet_metric, syncnet_scores_from_crops
    from aenerf_ns.preprocess.video_frames import resampled_frames
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    if args.fps is not None and abs(args.fps - SYNCNET_FPS) > 1e-6:
        raise SyncCheckError(f"--pre-cropped reads the frames at SyncNet's {SYNCNET_FPS:g} fps; --fps {args.fps:g}")
    syncnet, skip = syncnet_metric(args.syncnet_weights, args.device)
    if syncnet is None:
        raise SyncCheckError(f"--pre-cropped scores with SyncNet only, which cannot run: {skip}")
    first, last = _segment(args, duration_s, SYNCNET_FPS)
    crops = [image for k, image in resampled_frames(args.video, SYNCNET_FPS, last) if k >= first]
    if not crops:
        raise SyncCheckError(f"no frames could be read from {args.video} (frames {first}-{last - 1})")
    start = int(round(first / SYNCNET_FPS * audio.sample_rate))  # frame k goes with the audio from k / 25 s
    segment_audio = dataclasses.replace(audio, samples=audio.samples[start:])
    try:
        scores = syncnet_scores_from_crops(syncnet, np.stack(crops), segment_audio)
    except ValueError as exc:  # too few frames, audio shorter than the video
        raise SyncCheckError(f"{args.video}: {exc}") from None
    result = {
        "video": str(args.video),
        "audio": str(args.audio if args.audio is not None else args.video),
        "mode": "pre-cropped: the frames are SyncNet's face crops (no face mesh)",
        "start_s": first / SYNCNET_FPS,
        "seconds": len(crops) / SYNCNET_FPS,
        "fps": SYNCNET_FPS,
        "frames": len(crops),
        "syncnet_frames": scores["frames"],
        "lse_c": scores["lse_c"],
        "lse_d": scores["lse_d"],
        "syncnet_offset_frames": scores["offset_frames"],
    }
    output = args.output or Path.cwd() / f"{Path(args.video).stem}_sync_check.json"
    atomic_write_bytes(output, json.dumps(json_safe(result), indent=2).encode())
    console.print(f"json: {output}")
    console.print(
        f"SyncNet on pre-cropped frames: LSE-C {scores['lse_c']:.3f} (confidence), LSE-D {scores['lse_d']:.3f} "
        f"(min dist), offset {scores['offset_frames']:+d} frames (positive: the lips move after the sound)",
        soft_wrap=True,  # one line, however narrow the terminal
    )
    return result


def _table(result: dict, title: str):
    """The check's figures as a table: own audio at offset 0, each shift, unrelated audio, best offset, verdict."""
    from rich.table import Table

    from aenerf_ns.evaluation.sync_metrics import SHIFT_MARGIN, SHUFFLE_Z

    check = result["validation"]

    def num(value) -> str:
        return f"{value:+.3f}" if isinstance(value, float) and np.isfinite(value) else "n/a"

    rule = f"passes: offset 0 beats every shift by {SHIFT_MARGIN:g} and unrelated audio's mean by {SHUFFLE_Z:g} std"
    table = Table(title=title, caption=rule)
    table.add_column("audio and video")
    table.add_column("correlation", justify="right")
    table.add_column("expected")
    table.add_row("own audio, offset 0", num(check["correlation"]), "highest")
    for key, value in sorted(check["shifted"].items(), key=lambda kv: (abs(int(kv[0])), int(kv[0]))):
        table.add_row(f"video shifted {key} frames", num(value), f"offset 0 - {SHIFT_MARGIN:g} or less")
    shuffled = f"{num(check['shuffled_mean'])} ± {num(check['shuffled_std']).lstrip('+')}"
    table.add_row(f"unrelated audio, mean ± std of {len(check['shuffled'])}", shuffled, "about 0")
    best = check["best_offset_frames"]
    best_text = "n/a" if best is None else f"{best:+d} ({num(check['best_correlation'])})"
    table.add_row("best offset, frames", best_text, "about 0 (-1: mouth leads)")
    table.add_row("verdict", "[green]passes[/]" if check["passes"] else "[red]does not pass[/]", "")
    return table


def run_sync_check(args: SyncCheckArgs) -> dict:
    """Check the weight-free sync measure (and SyncNet's, with weights) on a video segment; print and write JSON."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from aenerf_ns.audio.audio_io import AudioError, check_not_silent, load_audio
    from aenerf_ns.evaluation.lip_scores import syncnet_entries
    from aenerf_ns.evaluation.metric_reports import json_safe
    from aenerf_ns.evaluation.mouth_landmarks import mouth_opening
    from aenerf_ns.evaluation.sync_metrics import SPEECH_BAND_HZ, SYLLABLE_BAND_HZ, sync_validation
    from aenerf_ns.evaluation.syncnet_score import syncnet_metric
    from aenerf_ns.preprocess.video_frames import probe_video
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console()
    info = probe_video(args.video)
    if args.audio is None and not info.has_audio:
        raise SyncCheckError(f"{args.video} has no audio track: pass the speech with --audio")
    try:
        audio = load_audio(args.audio if args.audio is not None else args.video)
    except AudioError as exc:
        if args.audio is None:
            raise SyncCheckError(f"could not read the audio track of {args.video}: {exc}") from None
        raise
    check_not_silent(audio)
    if args.pre_cropped:
        return check_pre_cropped(args, audio, info.duration_s, console)
    fps = args.fps or info.average_fps
    first, last = _segment(args, info.duration_s, fps)
    if last - first < 2 * max(args.max_offset, *args.shifts) + 3:
        raise SyncCheckError(f"the segment holds {last - first} frames: too few to check offsets")
    if audio.duration_s < last / fps - 0.5:
        console.print(f"[yellow]the audio ends at {audio.duration_s:.2f} s: later frames are not scored[/]")

    syncnet, syncnet_skip = syncnet_metric(args.syncnet_weights, args.device)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        landmarks, frames = track_landmarks(
            args.video, fps, first, last, args.batch_size, args.device, progress, keep_frames=syncnet is not None
        )
    opening = mouth_opening(landmarks)
    found = int(np.isfinite(opening).sum())
    if found == 0:
        raise SyncCheckError(f"no face found in {args.video} (frames {first}-{last - 1})")
    times = (np.arange(first, last) + 0.5) / fps
    check = sync_validation(opening, audio, times, fps, args.shifts, args.shuffles, args.seed, args.max_offset)
    lse = syncnet_entries(syncnet, syncnet_skip, frames, landmarks, audio, times, fps, "")
    result = {
        "video": str(args.video),
        "audio": str(args.audio if args.audio is not None else args.video),
        "start_s": first / fps,
        "seconds": (last - first) / fps,
        "fps": fps,
        "frames": last - first,
        "face_frames": found,
        "measure": (
            f"Pearson correlation of the mouth opening with the RMS amplitude of the {SPEECH_BAND_HZ[0]:g}-"
            f"{SPEECH_BAND_HZ[1]:g} Hz speech band, both band-passed to {SYLLABLE_BAND_HZ[0]:g}-"
            f"{SYLLABLE_BAND_HZ[1]:g} Hz"
        ),
        "validation": check,
        "lse_c": lse["lse_c"],
        "lse_d": lse["lse_d"],
        "syncnet_offset_frames": lse.get("syncnet_offset_frames"),
        "mouth_opening": [float(v) for v in opening],
    }
    output = args.output or Path.cwd() / f"{Path(args.video).stem}_sync_check.json"
    atomic_write_bytes(output, json.dumps(json_safe(result), indent=2).encode())
    _print_result(console, result, output)
    return result


def _print_result(console, result: dict, output: Path) -> None:
    """The check's figures on the terminal: frames without a face, the table, SyncNet's line, the JSON's path."""
    if result["face_frames"] < result["frames"]:
        console.print(f"[yellow]no face in {result['frames'] - result['face_frames']} of {result['frames']} frames[/]")
    title = f"{Path(result['video']).name}: {result['start_s']:.2f}-{result['start_s'] + result['seconds']:.2f} s"
    console.print(_table(result, title))
    if isinstance(result["lse_c"], float):
        console.print(
            f"SyncNet: LSE-C {result['lse_c']:.3f}, LSE-D {result['lse_d']:.3f}, "
            f"offset {result['syncnet_offset_frames']:+d} frames (positive: the lips move after the sound)"
        )
    else:
        console.print(f"SyncNet: {result['lse_c']}")
    console.print(f"json: {output}")
