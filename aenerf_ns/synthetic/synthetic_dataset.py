"""Writes synthetic talking-head datasets (video frames, poses, parsing maps, speech) in the dataset format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from aenerf_ns.audio.audio_io import write_wav
from aenerf_ns.data.dataset_format import FrameRecord, TalkingHeadMeta, write_transforms
from aenerf_ns.synthetic.synthetic_head import (
    Identity,
    StaticCamera,
    head_pose_track,
    make_identity,
    render_background,
    render_frame,
)
from aenerf_ns.synthetic.synthetic_speech import opening_per_frame, synthesize_speech
from aenerf_ns.utils.atomic_io import atomic_save_png


def write_identity(
    out_dir: Path,
    identity: Identity,
    seconds: float = 10.0,
    resolution: int = 128,
    fps: float = 25.0,
    progress: Progress | None = None,
) -> TalkingHeadMeta:
    """Render one identity speaking for `seconds` into `out_dir` and return its metadata.

    Frames already on disk from an interrupted run with the same settings are kept; transforms.json is
    written last, so a folder with a transforms.json is always complete.
    """
    out_dir = Path(out_dir)
    num_frames = int(round(seconds * fps))
    if num_frames < 2:
        raise ValueError(f"{seconds} s at {fps} fps is fewer than two frames")
    speech = synthesize_speech(seconds, f0=identity.f0, seed=identity.seed)
    opening = opening_per_frame(speech.opening, speech.sample_rate, fps, num_frames)
    camera = StaticCamera.square(resolution)
    head_to_world = head_pose_track(num_frames, fps, identity.seed)
    background = render_background(identity, resolution, resolution)

    write_wav(out_dir / "audio.wav", speech.audio, speech.sample_rate)
    atomic_save_png(out_dir / "background.png", background)
    meta = TalkingHeadMeta(
        root=out_dir,
        identity=identity.name,
        fps=fps,
        width=resolution,
        height=resolution,
        fl_x=camera.focal,
        fl_y=camera.focal,
        cx=camera.cx,
        cy=camera.cy,
        audio_path=out_dir / "audio.wav",
        background_path=out_dir / "background.png",
    )
    task = progress.add_task(f"rendering {identity.name}", total=num_frames) if progress else None
    for i in range(num_frames):
        image_path = out_dir / "images" / f"{i:05d}.png"
        parsing_path = out_dir / "parsing" / f"{i:05d}.png"
        if not (image_path.is_file() and parsing_path.is_file()):
            rgb, labels = render_frame(identity, camera, head_to_world[i], float(opening[i]), background)
            atomic_save_png(parsing_path, labels)
            atomic_save_png(image_path, rgb)
        # The head is static in head coordinates; the camera moves the opposite way.
        camera_to_head = np.linalg.inv(head_to_world[i]) @ camera.c2w
        meta.frames.append(FrameRecord(image_path, parsing_path, camera_to_head, float(opening[i])))
        if progress is not None:
            progress.advance(task)
    write_transforms(meta)
    return meta


def write_synthetic_sample(
    output: Path,
    identities: int = 1,
    seconds: float = 10.0,
    resolution: int = 128,
    fps: float = 25.0,
    seed: int = 0,
) -> list[TalkingHeadMeta]:
    """Write `identities` synthetic people into `output/synth00`, `output/synth01`, ..."""
    if identities < 1:
        raise ValueError("need at least one identity")
    if resolution < 16:
        raise ValueError(f"resolution {resolution} is too small (minimum 16 pixels)")
    metas = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        for index in range(identities):
            identity = make_identity(index, seed)
            metas.append(write_identity(Path(output) / identity.name, identity, seconds, resolution, fps, progress))
    return metas
