"""A user's talking video to a training dataset: the stages behind `aenerf-process`.

Stages, each skipped on a re-run when its settings and inputs are unchanged (state in `.process/`):

1. detect: frames resampled to the target fps; faces found on the full frames; one fixed square crop
   around the face for the whole clip (a static camera must keep static intrinsics).
2. track: crops resized to the target resolution; 468-point face mesh and person mask per frame.
3. pose: untracked frames interpolated (short gaps) or cut away (long gaps); the person's canonical face;
   perspective head pose per frame, smoothed; reprojection error.
4. write: images, parsing maps and the background plate (frame by frame, resumable).
5. audio: the speech track as 16 kHz mono wav, cut to the kept frames, and its features cached.
6. transforms.json (written last: a folder with one is complete), a preview picture, a pose plot and
   `process_report.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aenerf_ns.audio.audio_features import AudioFeatureConfig, compute_audio_features
from aenerf_ns.audio.audio_io import AudioError, load_audio, write_wav
from aenerf_ns.data import parsing_labels as L
from aenerf_ns.data.dataset_format import FrameRecord, TalkingHeadMeta, write_transforms
from aenerf_ns.faces.face_tracking import Detections, detect_faces, person_masks, track_faces
from aenerf_ns.preprocess.face_parsing import BackgroundPlate, parsing_map
from aenerf_ns.preprocess.head_pose import (
    HeadTrack,
    canonical_face,
    fill_gaps,
    reprojection_errors,
    solve_head_track,
)
from aenerf_ns.preprocess.video_frames import VideoInfo, VideoInputError, probe_video, resampled_frames
from aenerf_ns.utils.atomic_io import atomic_save_npy, atomic_save_png, atomic_write_bytes

STATE_VERSION = 1
"""Bumped when a stage's output changes meaning, so old work folders are recomputed."""


class ProcessError(ValueError):
    """The video cannot become a dataset; the message says why and what to change."""


@dataclass
class ProcessConfig:
    """Settings of `aenerf-process`."""

    fps: float = 25.0
    """Frame rate of the dataset; the video is resampled to it by timestamp."""
    resolution: int = 512
    """Side of the square output frames in pixels."""
    crop_scale: float = 2.6
    """Side of the square crop as a multiple of the detected face height (head, hair and shoulders)."""
    min_seconds: float = 3.0
    """Shortest usable clip, after untracked parts are removed."""
    min_face_px: int = 64
    """Smallest usable face height in source pixels."""
    max_gap_frames: int = 5
    """Longest run of untracked frames that is interpolated; longer runs cut the clip."""
    focal_length: float | None = None
    """Focal length in output pixels; None: the one that places the camera `camera_distance` from the head."""
    camera_distance: float = 6.0
    """Mean camera distance in head units (about 70 cm) used when the focal length is not given."""
    pose_smoothing: float = 1.0
    """Gaussian smoothing of the head pose over time, in frames (0: none)."""
    batch_size: int = 32
    """Frames per batch through the face models."""
    max_seconds: float | None = None
    """Use only the first this-many seconds of the video (None: all of it)."""
    device: str = "auto"
    """Where the face models run: auto (cuda when available), cpu or cuda."""
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    """Audio features to precompute (the same settings the dataparser will use)."""


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class _State:
    """`.process/state.json`: which stages finished, under which settings."""

    def __init__(self, work: Path):
        self.path = work / "state.json"
        self.done: dict[str, str] = {}
        if self.path.is_file():
            try:
                self.done = json.loads(self.path.read_text()).get("done", {})
            except (json.JSONDecodeError, OSError):
                self.done = {}

    def needs(self, stage: str, key: str, console: Console) -> bool:
        """Whether `stage` must run; says so when an earlier run already did it with the same settings."""
        if self.done.get(stage) == key:
            console.print(f"[dim]{stage}: finished by an earlier run with the same settings, skipped[/]")
            return False
        return True

    def mark(self, stage: str, key: str) -> None:
        self.done[stage] = key
        atomic_write_bytes(self.path, json.dumps({"done": self.done}, indent=1).encode())


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([STATE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _video_fingerprint(path: Path) -> str:
    """Size, modification time and the first megabyte: cheap and changes when the file does."""
    st = path.stat()
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return f"{st.st_size}-{int(st.st_mtime)}-{hashlib.sha256(head).hexdigest()[:16]}"


@dataclass
class CropBox:
    """The fixed square crop of the source frames."""

    x0: int
    y0: int
    side: int

    def apply(self, image: np.ndarray, resolution: int) -> np.ndarray:
        crop = image[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        interp = cv2.INTER_AREA if self.side > resolution else cv2.INTER_CUBIC
        return cv2.resize(crop, (resolution, resolution), interpolation=interp)


def _batches(iterator, size: int):
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


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


def choose_crop(detections: list[Detections], width: int, height: int, config: ProcessConfig) -> CropBox:
    """One square crop for the whole clip, from the median face box, kept inside the frame."""
    boxes = np.array([d.boxes[0] for d in detections if len(d)])
    face_h = float(np.median(boxes[:, 3] - boxes[:, 1]))
    if face_h < config.min_face_px:
        raise ProcessError(
            f"the face is only {face_h:.0f} pixels tall (need at least {config.min_face_px}): "
            "film closer to the face or at a higher resolution"
        )
    cx = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    cy = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2)) + 0.15 * face_h * config.crop_scale / 2.6
    side = int(min(round(config.crop_scale * face_h), width, height))
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return CropBox(x0, y0, side)


def _face_checks(detections: list[Detections], path: Path) -> None:
    found = np.array([len(d) > 0 for d in detections])
    if not found.any():
        raise ProcessError(
            f"no face found in {path}: the video needs one person facing the camera, with the face clearly "
            "visible (not too small, dark or turned away)"
        )
    if found.mean() < 0.5:
        raise ProcessError(
            f"a face was found in only {100 * found.mean():.0f}% of the frames of {path}: "
            "trim the video to the part where the person faces the camera"
        )
    several = 0
    for d in detections:
        if len(d) > 1:
            areas = (d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1])
            several += int(areas[1] > 0.25 * areas[0])
    if several > 0.05 * len(detections):
        raise ProcessError(
            f"several faces are visible in {several} of {len(detections)} frames of {path}: "
            "a talking-head dataset needs exactly one person; crop the video to that person first"
        )


def _detections_in_crop(det, idx: list[int], crop: CropBox, scale: float) -> list[Detections]:
    """The detection stage's main face for frames `idx`, moved into output-crop pixels."""
    out = []
    offset = np.array([crop.x0, crop.y0], np.float32)
    for i in idx:
        box, kp = det["boxes"][i], det["keypoints"][i]
        if np.isfinite(box).all():
            b = ((box.reshape(2, 2) - offset) * scale).reshape(1, 4)
            out.append(Detections(b, ((kp - offset) * scale)[None], np.ones(1, np.float32)))
        else:
            out.append(Detections(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0)))
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (no extra disk) where the filesystem allows, else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _longest_usable_run(missing: np.ndarray) -> tuple[int, int]:
    best, start = (0, 0), None
    for i, m in enumerate([*missing.tolist(), True]):
        if not m and start is None:
            start = i
        elif m and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def _draw_preview(image, landmarks, labels, track: HeadTrack, index: int, plate) -> np.ndarray:
    """Frame with landmarks and head axes | parsing overlay | background plate."""
    shown = image.copy()
    colours = np.array(L.LABEL_COLORS, np.uint8)
    overlay = (0.5 * image + 0.5 * colours[labels]).astype(np.uint8)
    for x, y in landmarks[:, :2]:
        cv2.circle(shown, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1, lineType=cv2.LINE_AA)
    axes = np.array([[0, 0, 0], [0.8, 0, 0], [0, 0.8, 0], [0, 0, 0.8]], float)
    single = HeadTrack(
        track.rotations[index : index + 1], track.translations[index : index + 1], track.focal, track.cx, track.cy
    )
    p = single.project(axes)[0]
    thickness = max(1, image.shape[0] // 200)
    for end, colour in zip(p[1:], ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
        cv2.line(
            shown, tuple(np.round(p[0]).astype(int)), tuple(np.round(end).astype(int)), colour, thickness, cv2.LINE_AA
        )
    return np.concatenate([shown, overlay, plate], 1)


def _plot_pose(track: HeadTrack, errors: np.ndarray, fps: float, interpolated: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(errors)) / fps
    angles = track.angles_deg()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    for k, name in enumerate(("pitch", "yaw", "roll")):
        ax1.plot(t, angles[:, k] - np.median(angles[:, k]), label=name, lw=1)
    ax1.set_ylabel("degrees (minus median)")
    ax1.legend(loc="upper right")
    ax1.set_title("head pose over time")
    ax2.plot(t, errors, lw=1, color="k", label="rigid-landmark reprojection error")
    if interpolated.any():
        ax2.plot(t[interpolated], errors[interpolated], "r.", ms=3, label="interpolated frame")
    ax2.set_ylabel("pixels")
    ax2.set_xlabel("seconds")
    ax2.legend(loc="upper right")
    fig.tight_layout()
    buf = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(buf, dpi=100)
    plt.close(fig)
    os.replace(buf, path)


def process_video(video: Path, output: Path, config: ProcessConfig | None = None, console: Console | None = None):
    """Turn `video` into a talking-head dataset in `output`; returns the report dictionary."""
    config = config or ProcessConfig()
    console = console or Console()
    video, output = Path(video), Path(output)
    work = output / ".process"
    work.mkdir(parents=True, exist_ok=True)
    state = _State(work)
    device = _device(config.device)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    try:
        info = probe_video(video)
    except VideoInputError as exc:
        raise ProcessError(str(exc)) from None
    num_frames = check_video(info, config)
    timings["probe_s"] = time.perf_counter() - t0
    vfr = " (variable frame rate: resampled by timestamp)" if info.variable_frame_rate else ""
    console.print(
        f"{video.name}: {info.width}x{info.height}, {info.average_fps:.2f} fps{vfr}, {info.duration_s:.2f} s "
        f"-> {num_frames} frames at {config.fps:g} fps, {config.resolution}x{config.resolution}"
    )
    source = _video_fingerprint(video)
    keys = {}
    keys["detect"] = _key(source, config.fps, num_frames, config.crop_scale, config.min_face_px)
    keys["track"] = _key(keys["detect"], config.resolution)
    keys["pose"] = _key(
        keys["track"],
        config.max_gap_frames,
        config.focal_length,
        config.camera_distance,
        config.pose_smoothing,
        config.min_seconds,
    )
    keys["write"] = _key(keys["pose"])
    keys["audio"] = _key(keys["pose"], asdict(config.audio))

    with _progress() as progress:
        # 1. detect
        t0 = time.perf_counter()
        if state.needs("detect", keys["detect"], console):
            task = progress.add_task("detecting faces", total=num_frames)
            detections: list[Detections] = []
            for batch in _batches(resampled_frames(video, config.fps, num_frames), config.batch_size):
                detections += detect_faces([img for _, img in batch], device)
                progress.advance(task, len(batch))
            _face_checks(detections, video)
            crop = choose_crop(detections, info.width, info.height, config)
            boxes = np.array([d.boxes[0] if len(d) else np.full(4, np.nan) for d in detections], np.float32)
            kps = np.array([d.keypoints[0] if len(d) else np.full((6, 2), np.nan) for d in detections], np.float32)
            np.savez(work / "detect.npz", boxes=boxes, keypoints=kps, crop=np.array([crop.x0, crop.y0, crop.side]))
            state.mark("detect", keys["detect"])
        det = np.load(work / "detect.npz")
        crop = CropBox(*[int(v) for v in det["crop"]])
        timings["detect_s"] = time.perf_counter() - t0
        scale = config.resolution / crop.side

        # 2. track (and keep every cropped frame: later stages never decode the video again)
        t0 = time.perf_counter()
        frames_dir = work / "frames"
        if state.needs("track", keys["track"], console):
            task = progress.add_task("tracking face mesh", total=num_frames)
            landmarks = np.full((num_frames, 468, 3), np.nan, np.float32)
            presence = np.zeros(num_frames, np.float32)
            masks = np.zeros((num_frames, 256, 256), np.uint8)
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = []
                for batch in _batches(resampled_frames(video, config.fps, num_frames), config.batch_size):
                    idx = [i for i, _ in batch]
                    crops = [crop.apply(img, config.resolution) for _, img in batch]
                    for i, image in zip(idx, crops):
                        pending.append(pool.submit(atomic_save_png, frames_dir / f"{i:05d}.png", image, 1))
                    lm, pr = track_faces(crops, _detections_in_crop(det, idx, crop, scale), device)
                    landmarks[idx], presence[idx] = lm, pr
                    masks[idx] = np.round(person_masks(crops, device) * 255).astype(np.uint8)
                    for p in pending[: -len(batch)]:
                        p.result()
                    pending = pending[-len(batch) :]
                    progress.advance(task, len(batch))
                for p in pending:
                    p.result()
            np.savez(work / "track.npz", landmarks=landmarks, presence=presence, masks=masks)
            state.mark("track", keys["track"])
        tracked = np.load(work / "track.npz")
        landmarks, presence, masks = tracked["landmarks"], tracked["presence"], tracked["masks"]
        timings["track_s"] = time.perf_counter() - t0

        # 3. pose
        t0 = time.perf_counter()
        valid = (presence > 0.5) & np.isfinite(landmarks).all(axis=(1, 2))
        filled, missing = fill_gaps(np.nan_to_num(landmarks), valid, config.max_gap_frames)
        start, stop = _longest_usable_run(missing)
        if (stop - start) / config.fps < config.min_seconds:
            raise ProcessError(
                f"the face is tracked in no stretch longer than {(stop - start) / config.fps:.2f} s "
                f"(need {config.min_seconds:g} s): the face is lost too often (turned away, covered or out of frame)"
            )
        kept = slice(start, stop)
        lm_kept = filled[kept]
        face = canonical_face(landmarks[kept][valid[kept]])
        head = solve_head_track(
            lm_kept,
            face,
            config.resolution / 2 + (info.width / 2 - crop.x0 - crop.side / 2) * scale,
            config.resolution / 2 + (info.height / 2 - crop.y0 - crop.side / 2) * scale,
            config.focal_length,
            config.camera_distance,
            config.pose_smoothing,
        )
        errors = reprojection_errors(head, face, lm_kept)
        interpolated = ~valid[kept]
        timings["pose_s"] = time.perf_counter() - t0

        # 4. images (links to the kept frames), parsing maps and the background plate
        t0 = time.perf_counter()
        n_kept = stop - start
        images_dir, parsing_dir = output / "images", output / "parsing"
        if state.needs("write", keys["write"], console):
            for folder in (images_dir, parsing_dir):  # frames of an earlier, different run would not match
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
            task = progress.add_task("writing parsing maps", total=n_kept)
            plate = BackgroundPlate(config.resolution, config.resolution)
            plate_every = max(1, n_kept // plate.max_frames)
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = []
                for j in range(n_kept):
                    i = j + start
                    _link_or_copy(frames_dir / f"{i:05d}.png", images_dir / f"{j:05d}.png")
                    labels = parsing_map(
                        lm_kept[j], masks[i].astype(np.float32) / 255, config.resolution, config.resolution
                    )
                    if j % plate_every == 0 and len(plate.samples) < plate.max_frames:
                        plate.add(_read_rgb(images_dir / f"{j:05d}.png"), labels)
                    pending.append(pool.submit(atomic_save_png, parsing_dir / f"{j:05d}.png", labels, 1))
                    progress.advance(task)
                for p in pending:
                    p.result()
            background, unseen = plate.finish()
            atomic_save_png(output / "background.png", background)
            atomic_write_bytes(work / "plate.json", json.dumps({"inpainted_fraction": unseen}).encode())
            state.mark("write", keys["write"])
        unseen = json.loads((work / "plate.json").read_text())["inpainted_fraction"]
        timings["write_s"] = time.perf_counter() - t0

        # 5. audio
        t0 = time.perf_counter()
        audio_path = output / "audio.wav"
        if state.needs("audio", keys["audio"], console) or not audio_path.is_file():
            try:
                audio = load_audio(video)
            except AudioError as exc:
                raise ProcessError(f"could not read the audio track of {video}: {exc}") from None
            first, last = (
                int(round(start / config.fps * audio.sample_rate)),
                int(round(stop / config.fps * audio.sample_rate)),
            )
            samples = audio.samples[first:last]
            if len(samples) < last - first - audio.sample_rate // 2:
                raise ProcessError(f"the audio track of {video} ends before the video ({audio.duration_s:.2f} s)")
            samples = np.pad(samples, (0, max(0, last - first - len(samples))))
            write_wav(audio_path, samples, audio.sample_rate)
            try:  # features from the written file (as the dataparser reads it); silence is refused here
                written = load_audio(audio_path)
                compute_audio_features(
                    audio_path, config.fps, n_kept, config.audio, output / "cache" / "audio_features", audio=written
                )
            except AudioError as exc:
                raise ProcessError(f"{video}: {exc}") from None
            state.mark("audio", keys["audio"])
        timings["audio_s"] = time.perf_counter() - t0

    # 6. transforms.json, preview, report
    c2w = head.camera_to_head()
    meta = TalkingHeadMeta(
        root=output,
        identity=video.stem,
        fps=config.fps,
        width=config.resolution,
        height=config.resolution,
        fl_x=head.focal,
        fl_y=head.focal,
        cx=head.cx,
        cy=head.cy,
        audio_path=audio_path,
        background_path=output / "background.png",
        frames=[FrameRecord(images_dir / f"{j:05d}.png", parsing_dir / f"{j:05d}.png", c2w[j]) for j in range(n_kept)],
    )
    mid = n_kept // 2
    mid_image = _read_rgb(images_dir / f"{mid:05d}.png")
    mid_labels = cv2.imread(str(parsing_dir / f"{mid:05d}.png"), cv2.IMREAD_UNCHANGED)
    plate_img = _read_rgb(output / "background.png")
    atomic_save_png(output / "preview.png", _draw_preview(mid_image, lm_kept[mid], mid_labels, head, mid, plate_img))
    _plot_pose(head, errors["rigid"], config.fps, interpolated, output / "pose_angles.png")
    atomic_save_npy(output / "landmarks.npy", lm_kept)

    fractions = np.bincount(mid_labels.ravel(), minlength=len(L.LABEL_NAMES)) / mid_labels.size
    report = {
        "video": str(video),
        "source": {
            "width": info.width,
            "height": info.height,
            "fps": round(info.average_fps, 3),
            "variable_frame_rate": info.variable_frame_rate,
            "duration_s": round(info.duration_s, 3),
            "rotation": info.rotation,
        },
        "frames": {
            "resampled": num_frames,
            "kept": n_kept,
            "first_kept": start,
            "interpolated": int(interpolated.sum()),
            "interpolated_frames": (np.flatnonzero(interpolated) + start).tolist(),
            "dropped": num_frames - n_kept,
        },
        "crop": {"x0": crop.x0, "y0": crop.y0, "side": crop.side},
        "camera": {
            "focal_px": round(head.focal, 2),
            "cx": round(head.cx, 2),
            "cy": round(head.cy, 2),
            "mean_distance_head_units": round(float(np.linalg.norm(c2w[:, :3, 3], axis=1).mean()), 3),
        },
        "reprojection_error_px": {
            "rigid_mean": round(float(errors["rigid"].mean()), 3),
            "rigid_max": round(float(errors["rigid"].max()), 3),
            "all_mean": round(float(errors["all"].mean()), 3),
            "rigid_landmarks": int(face.rigid.sum()),
            "pnp_failed_frames": [i + start for i in head.pnp_failed],
        },
        "head_rotation_range_deg": np.ptp(head.angles_deg(), axis=0).round(2).tolist(),
        "background_inpainted_fraction": round(unseen, 4),
        "label_fractions_mid_frame": {n: round(float(f), 4) for n, f in zip(L.LABEL_NAMES, fractions)},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    atomic_write_bytes(output / "process_report.json", json.dumps(report, indent=1).encode())
    write_transforms(meta)
    return report
