"""A user's talking video to a training dataset: the stages behind `aenerf-process`.

Stages (in `stages`), each timed, and the resumable ones skipped on a re-run when their settings and inputs
are unchanged (state in `.process/`, see `stage_runner`):

1. probe: what the video holds; unusable videos are refused before any heavy work.
2. detect: frames resampled to the target fps; faces found on the full frames; one fixed square crop
   around the face for the whole clip (a static camera must keep static intrinsics).
3. track: crops resized to the target resolution; 468-point face mesh and person mask per frame.
4. pose: untracked frames interpolated (short gaps) or cut away (long gaps); the person's canonical face;
   perspective head pose per frame, smoothed; reprojection error.
5. write: images, parsing maps and the background plate (frame by frame).
6. audio: the speech track as 16 kHz mono wav, cut to the kept frames, and its features cached.

Then a preview picture, a pose plot, `process_report.json` and `transforms.json` (written last: a folder
with one is complete).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import cv2
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aenerf_ns.data.dataset_format import FrameRecord, TalkingHeadMeta, write_transforms
from aenerf_ns.preprocess import stages
from aenerf_ns.preprocess.face_crop import CropBox, load_main_faces
from aenerf_ns.preprocess.process_config import ProcessConfig, ProcessError
from aenerf_ns.preprocess.process_report import build_report, draw_preview, plot_pose
from aenerf_ns.preprocess.stage_runner import StageRunner, stage_key
from aenerf_ns.preprocess.stages import PosedClip, ProcessContext
from aenerf_ns.preprocess.video_frames import VideoInfo
from aenerf_ns.utils.atomic_io import atomic_save_npy, atomic_save_png, atomic_write_bytes

__all__ = ["ProcessConfig", "ProcessError", "process_video"]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _video_fingerprint(path: Path) -> str:
    """Size, modification time and the first megabyte: cheap and changes when the file does."""
    st = path.stat()
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return f"{st.st_size}-{int(st.st_mtime)}-{hashlib.sha256(head).hexdigest()[:16]}"


def stage_keys(video: Path, config: ProcessConfig, num_frames: int) -> dict[str, str]:
    """The key of each resumable stage: its own settings and, through the key it builds on, everything before."""
    source = _video_fingerprint(video)
    keys = {"detect": stage_key(source, config.fps, num_frames, config.crop_scale, config.min_face_px)}
    keys["track"] = stage_key(keys["detect"], config.resolution)
    keys["pose"] = stage_key(
        keys["track"],
        config.max_gap_frames,
        config.focal_length,
        config.camera_distance,
        config.pose_smoothing,
        config.min_seconds,
    )
    keys["write"] = stage_key(keys["pose"])
    keys["audio"] = stage_key(keys["pose"], asdict(config.audio))
    return keys


def _describe(console: Console, ctx: ProcessContext, info: VideoInfo, num_frames: int) -> None:
    config = ctx.config
    vfr = " (variable frame rate: resampled by timestamp)" if info.variable_frame_rate else ""
    console.print(
        f"{ctx.video.name}: {info.width}x{info.height}, {info.average_fps:.2f} fps{vfr}, {info.duration_s:.2f} s "
        f"-> {num_frames} frames at {config.fps:g} fps, {config.resolution}x{config.resolution}"
    )


def _finish_dataset(
    ctx: ProcessContext,
    info: VideoInfo,
    num_frames: int,
    crop: CropBox,
    clip: PosedClip,
    unseen: float,
    timings_s: dict[str, float],
) -> dict:
    """Preview, pose plot, landmarks, report, and last `transforms.json`; returns the report."""
    head, n_kept = clip.head, clip.num_frames
    c2w = head.camera_to_head()
    images, parsing = ctx.images_dir, ctx.parsing_dir
    meta = TalkingHeadMeta(
        root=ctx.output,
        identity=ctx.video.stem,
        fps=ctx.config.fps,
        width=ctx.config.resolution,
        height=ctx.config.resolution,
        fl_x=head.focal,
        fl_y=head.focal,
        cx=head.cx,
        cy=head.cy,
        audio_path=ctx.audio_path,
        background_path=ctx.background_path,
        frames=[FrameRecord(images / f"{j:05d}.png", parsing / f"{j:05d}.png", c2w[j]) for j in range(n_kept)],
    )
    mid = n_kept // 2
    mid_image = stages.read_rgb(images / f"{mid:05d}.png")
    mid_labels = cv2.imread(str(parsing / f"{mid:05d}.png"), cv2.IMREAD_UNCHANGED)
    plate = stages.read_rgb(ctx.background_path)
    preview = draw_preview(mid_image, clip.landmarks[mid], mid_labels, head, mid, plate)
    atomic_save_png(ctx.output / "preview.png", preview)
    plot_pose(head, clip.errors["rigid"], ctx.config.fps, clip.interpolated, ctx.output / "pose_angles.png")
    atomic_save_npy(ctx.output / "landmarks.npy", clip.landmarks)
    report = build_report(ctx.video, info, num_frames, crop, clip, unseen, mid_labels, timings_s)
    atomic_write_bytes(ctx.output / "process_report.json", json.dumps(report, indent=1).encode())
    write_transforms(meta)
    return report


def process_video(video: Path, output: Path, config: ProcessConfig | None = None, console: Console | None = None):
    """Turn `video` into a talking-head dataset in `output`; returns the report dictionary."""
    config = config or ProcessConfig()
    console = console or Console()
    ctx = ProcessContext(Path(video), Path(output), config, _device(config.device))
    ctx.work.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(ctx.work, console)

    info, num_frames = runner.run("probe", lambda: stages.probe(ctx))
    _describe(console, ctx, info, num_frames)
    keys = stage_keys(ctx.video, config, num_frames)
    work = ctx.work
    with _progress() as progress:
        ctx.progress = progress
        faces = runner.run(
            "detect",
            lambda: stages.detect(ctx, info, num_frames),
            key=keys["detect"],
            load=lambda: load_main_faces(work / "detect.npz"),
            outputs=[work / "detect.npz"],
        )
        tracks = runner.run(
            "track",
            lambda: stages.track(ctx, faces, num_frames),
            key=keys["track"],
            load=lambda: stages.load_tracks(work / "track.npz"),
            outputs=[work / "track.npz"],
        )
        clip = runner.run("pose", lambda: stages.solve_pose(ctx, info, faces.crop, tracks))
        unseen = runner.run(
            "write",
            lambda: stages.write_frames(ctx, clip, tracks),
            key=keys["write"],
            load=lambda: stages.read_inpainted_fraction(work),
            outputs=[work / "plate.json"],
        )
        runner.run("audio", lambda: stages.write_audio(ctx, clip), key=keys["audio"], outputs=[ctx.audio_path])
    return _finish_dataset(ctx, info, num_frames, faces.crop, clip, unseen, runner.timings_s)
