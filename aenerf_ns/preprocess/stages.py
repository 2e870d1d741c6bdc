"""The stages of `aenerf-process`, each a function from the previous stages' results to its own.

probe -> detect -> track -> pose -> write -> audio. The resumable ones (detect, track, write, audio) leave
their results in the work folder (`.process/`) or the dataset, so a later run can read them back instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8
from rich.progress import Progress

from aenerf_ns.audio.audio_features import compute_audio_features
from aenerf_ns.audio.audio_io import AudioError, check_not_silent, load_audio, write_wav
from aenerf_ns.faces.face_tracking import Detections, detect_faces, person_masks, track_faces
from aenerf_ns.preprocess.background_writer import BackgroundPngWriter
from aenerf_ns.preprocess.face_crop import CropBox, MainFaces, check_faces, choose_crop, main_faces, save_main_faces
from aenerf_ns.preprocess.face_parsing import BackgroundPlate, parsing_map
from aenerf_ns.preprocess.head_pose import (
    CanonicalFace,
    HeadTrack,
    canonical_face,
    fill_gaps,
    reprojection_errors,
    solve_head_track,
)
from aenerf_ns.preprocess.process_config import ProcessConfig, ProcessError
from aenerf_ns.preprocess.video_frames import VideoInfo, VideoInputError, probe_video, resampled_frames
from aenerf_ns.utils.atomic_io import atomic_save_png, atomic_write_bytes


@dataclass
class ProcessContext:
    """What every stage works with: the input, the dataset folder, the settings and the progress display."""

    video: Path
    """The input video."""
    output: Path
    """The dataset folder."""
    config: ProcessConfig
    """Processing settings."""
    device: str
    """Where the face models run (cpu or cuda)."""
    progress: Progress | None = None
    """Progress bars of the running stages."""

    @property
    def work(self) -> Path:
        """Work in progress and stage state."""
        return self.output / ".process"

    @property
    def frames_dir(self) -> Path:
        """Every resampled frame, cropped and resized (the track stage's by-product)."""
        return self.work / "frames"

    @property
    def images_dir(self) -> Path:
        """The dataset's images: the kept frames."""
        return self.output / "images"

    @property
    def parsing_dir(self) -> Path:
        """The dataset's parsing maps."""
        return self.output / "parsing"

    @property
    def audio_path(self) -> Path:
        """The dataset's speech track."""
        return self.output / "audio.wav"

    @property
    def background_path(self) -> Path:
        """The dataset's background plate."""
        return self.output / "background.png"


@dataclass
class FaceTracks:
    """The track stage's result: mesh, tracking confidence and person mask for every resampled frame."""

    landmarks: Float[np.ndarray, "frames 468 3"]
    """Face-mesh landmarks in output pixels (NaN where the face was not tracked)."""
    presence: Float[np.ndarray, "frames"]
    """The mesh model's face-presence score."""
    masks: UInt8[np.ndarray, "frames 256 256"]
    """Person mask, 0-255."""


@dataclass
class PosedClip:
    """The pose stage's result: the longest usable run of frames and the head pose in each."""

    start: int
    """First kept frame (index among the resampled frames)."""
    stop: int
    """One past the last kept frame."""
    landmarks: Float[np.ndarray, "kept 468 3"]
    """Landmarks of the kept frames, short gaps interpolated."""
    face: CanonicalFace
    """The person's canonical face."""
    head: HeadTrack
    """Head pose per kept frame."""
    errors: dict[str, Float[np.ndarray, "kept"]]
    """Reprojection error per kept frame: `rigid` (the pose landmarks) and `all`."""
    interpolated: Bool[np.ndarray, "kept"]
    """Kept frames whose landmarks were interpolated."""

    @property
    def num_frames(self) -> int:
        """Number of kept frames."""
        return self.stop - self.start


def _batches(iterator: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_video(info: VideoInfo, config: ProcessConfig) -> int:
    """Reject unusable videos before any heavy work; returns the number of output frames."""
    if not info.has_audio:
        raise ProcessError(
            f"{info.path} has no audio track: a talking-head dataset needs the speech that goes with the video"
        )
    usable = info.duration_s
    if info.audio_duration_s is not None:
        if info.audio_duration_s < 0.9 * info.duration_s - 0.5:
            raise ProcessError(
                f"{info.path}: the audio track lasts {info.audio_duration_s:.2f} s but the video "
                f"{info.duration_s:.2f} s; audio and video must cover the same speech"
            )
        usable = min(usable, info.audio_duration_s)
    if config.max_seconds is not None:
        usable = min(usable, config.max_seconds)
    if usable < config.min_seconds:
        raise ProcessError(
            f"{info.path} is {usable:.2f} s long; at least {config.min_seconds:g} s of talking is needed "
            "(--min-seconds sets the limit)"
        )
    return int(np.floor(usable * config.fps + 1e-6))


def check_speech(video: Path, info: VideoInfo) -> None:
    """Decode the audio track once before any face work: unreadable, silent or short speech is refused in
    seconds, not after every frame has been tracked."""
    try:
        audio = load_audio(video)
        check_not_silent(audio)
    except AudioError as exc:
        raise ProcessError(f"the audio track of {video} cannot be used: {exc}") from None
    if audio.duration_s < 0.9 * info.duration_s - 0.5:
        raise ProcessError(
            f"{video}: the audio track decodes to {audio.duration_s:.2f} s but the video lasts "
            f"{info.duration_s:.2f} s; audio and video must cover the same speech"
        )


def probe(ctx: ProcessContext) -> tuple[VideoInfo, int]:
    """What the video holds and how many dataset frames it gives; unusable videos (and their audio) are
    refused here."""
    try:
        info = probe_video(ctx.video)
    except VideoInputError as exc:
        raise ProcessError(str(exc)) from None
    num_frames = check_video(info, ctx.config)
    check_speech(ctx.video, info)
    return info, num_frames


def detect(ctx: ProcessContext, info: VideoInfo, num_frames: int) -> MainFaces:
    """Faces on the full resampled frames, checked, and the clip's crop; saved as `detect.npz`."""
    config = ctx.config
    task = ctx.progress.add_task("detecting faces", total=num_frames)
    detections: list[Detections] = []
    for batch in _batches(resampled_frames(ctx.video, config.fps, num_frames), config.batch_size):
        detections += detect_faces([img for _, img in batch], ctx.device)
        ctx.progress.advance(task, len(batch))
    check_faces(detections, ctx.video)
    faces = main_faces(detections, choose_crop(detections, info.width, info.height, config))
    save_main_faces(faces, ctx.work / "detect.npz")
    return faces


def track(ctx: ProcessContext, faces: MainFaces, num_frames: int) -> FaceTracks:
    """Crops at the output resolution (kept in `frames/`: later stages never decode the video again), mesh, masks.

    Saved as `track.npz`.
    """
    config = ctx.config
    task = ctx.progress.add_task("tracking face mesh", total=num_frames)
    tracks = FaceTracks(
        np.full((num_frames, 468, 3), np.nan, np.float32),
        np.zeros(num_frames, np.float32),
        np.zeros((num_frames, 256, 256), np.uint8),
    )
    with BackgroundPngWriter(max_pending=2 * config.batch_size) as writer:
        for batch in _batches(resampled_frames(ctx.video, config.fps, num_frames), config.batch_size):
            idx = [i for i, _ in batch]
            crops = [faces.crop.apply(img, config.resolution) for _, img in batch]
            for i, image in zip(idx, crops):
                writer.save(ctx.frames_dir / f"{i:05d}.png", image)
            lm, pr = track_faces(crops, faces.in_crop(idx, config.resolution), ctx.device)
            tracks.landmarks[idx], tracks.presence[idx] = lm, pr
            tracks.masks[idx] = np.round(person_masks(crops, ctx.device) * 255).astype(np.uint8)
            ctx.progress.advance(task, len(batch))
    np.savez(ctx.work / "track.npz", landmarks=tracks.landmarks, presence=tracks.presence, masks=tracks.masks)
    return tracks


def load_tracks(path: Path) -> FaceTracks:
    """Read back the track stage's `track.npz`."""
    with np.load(path) as tracked:
        return FaceTracks(tracked["landmarks"], tracked["presence"], tracked["masks"])


def _longest_usable_run(missing: Bool[np.ndarray, "frames"]) -> tuple[int, int]:
    best, start = (0, 0), None
    for i, m in enumerate([*missing.tolist(), True]):
        if not m and start is None:
            start = i
        elif m and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def solve_pose(ctx: ProcessContext, info: VideoInfo, crop: CropBox, tracks: FaceTracks) -> PosedClip:
    """Short gaps interpolated, long ones cut; the canonical face; the head pose per kept frame."""
    config = ctx.config
    valid = (tracks.presence > 0.5) & np.isfinite(tracks.landmarks).all(axis=(1, 2))
    filled, missing = fill_gaps(np.nan_to_num(tracks.landmarks), valid, config.max_gap_frames)
    start, stop = _longest_usable_run(missing)
    if (stop - start) / config.fps < config.min_seconds:
        raise ProcessError(
            f"the face is tracked in no stretch longer than {(stop - start) / config.fps:.2f} s "
            f"(need {config.min_seconds:g} s): the face is lost too often (turned away, covered or out of frame)"
        )
    kept = slice(start, stop)
    landmarks = filled[kept]
    face = canonical_face(tracks.landmarks[kept][valid[kept]])
    scale = config.resolution / crop.side
    head = solve_head_track(
        landmarks,
        face,
        config.resolution / 2 + (info.width / 2 - crop.x0 - crop.side / 2) * scale,
        config.resolution / 2 + (info.height / 2 - crop.y0 - crop.side / 2) * scale,
        config.focal_length,
        config.camera_distance,
        config.pose_smoothing,
    )
    errors = reprojection_errors(head, face, landmarks)
    return PosedClip(start, stop, landmarks, face, head, errors, ~valid[kept])


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (no extra disk) where the filesystem allows, else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_rgb(path: Path) -> UInt8[np.ndarray, "h w 3"]:
    """An image file as RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_frames(ctx: ProcessContext, clip: PosedClip, tracks: FaceTracks) -> float:
    """Images (links to the kept frames), parsing maps and the background plate; returns its inpainted fraction."""
    resolution = ctx.config.resolution
    for folder in (ctx.images_dir, ctx.parsing_dir):  # frames of an earlier, different run would not match
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    task = ctx.progress.add_task("writing parsing maps", total=clip.num_frames)
    plate = BackgroundPlate(resolution, resolution)
    plate_every = max(1, clip.num_frames // plate.max_frames)
    with BackgroundPngWriter(max_pending=2 * ctx.config.batch_size) as writer:
        for j in range(clip.num_frames):
            i = j + clip.start
            _link_or_copy(ctx.frames_dir / f"{i:05d}.png", ctx.images_dir / f"{j:05d}.png")
            mask = tracks.masks[i].astype(np.float32) / 255
            labels = parsing_map(clip.landmarks[j], mask, resolution, resolution)
            if j % plate_every == 0 and len(plate.samples) < plate.max_frames:
                plate.add(read_rgb(ctx.images_dir / f"{j:05d}.png"), labels)
            writer.save(ctx.parsing_dir / f"{j:05d}.png", labels)
            ctx.progress.advance(task)
    background, unseen = plate.finish()
    atomic_save_png(ctx.background_path, background)
    atomic_write_bytes(ctx.work / "plate.json", json.dumps({"inpainted_fraction": unseen}).encode())
    return unseen


def read_inpainted_fraction(work: Path) -> float:
    """The write stage's inpainted background fraction, from `plate.json`."""
    return json.loads((work / "plate.json").read_text())["inpainted_fraction"]


def write_audio(ctx: ProcessContext, clip: PosedClip) -> None:
    """The speech of the kept frames as 16 kHz mono wav, and its features cached as the dataparser computes them."""
    config, video = ctx.config, ctx.video
    try:
        audio = load_audio(video)
    except AudioError as exc:
        raise ProcessError(f"could not read the audio track of {video}: {exc}") from None
    first = int(round(clip.start / config.fps * audio.sample_rate))
    last = int(round(clip.stop / config.fps * audio.sample_rate))
    samples = audio.samples[first:last]
    if len(samples) < last - first - audio.sample_rate // 2:
        raise ProcessError(f"the audio track of {video} ends before the video ({audio.duration_s:.2f} s)")
    samples = np.pad(samples, (0, max(0, last - first - len(samples))))
    write_wav(ctx.audio_path, samples, audio.sample_rate)
    try:  # features from the written file (as the dataparser reads it); silence is refused here
        written = load_audio(ctx.audio_path)
        cache = ctx.output / "cache" / "audio_features"
        compute_audio_features(ctx.audio_path, config.fps, clip.num_frames, config.audio, cache, audio=written)
    except AudioError as exc:
        raise ProcessError(f"{video}: {exc}") from None
