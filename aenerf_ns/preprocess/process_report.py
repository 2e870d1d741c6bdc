"""What `aenerf-process` shows the user about a processed clip: `process_report.json`, `preview.png` and
`pose_angles.png`, to check the tracking before training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8

from aenerf_ns.data import parsing_labels as L
from aenerf_ns.preprocess.face_crop import CropBox
from aenerf_ns.preprocess.head_pose import HeadTrack
from aenerf_ns.preprocess.stages import PosedClip
from aenerf_ns.preprocess.video_frames import VideoInfo
from aenerf_ns.utils.atomic_io import atomic_save_figure


def draw_preview(
    image: UInt8[np.ndarray, "h w 3"],
    landmarks: Float[np.ndarray, "468 3"],
    labels: UInt8[np.ndarray, "h w"],
    track: HeadTrack,
    index: int,
    plate: UInt8[np.ndarray, "h w 3"],
) -> UInt8[np.ndarray, "h 3w 3"]:
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


def plot_pose(
    track: HeadTrack,
    errors: Float[np.ndarray, "frames"],
    fps: float,
    interpolated: Bool[np.ndarray, "frames"],
    path: Path,
) -> None:
    """Head angles and reprojection error over time, interpolated frames marked, saved to `path`."""
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
    try:
        atomic_save_figure(path, fig, dpi=100)
    finally:
        plt.close(fig)


def build_report(
    video: Path,
    info: VideoInfo,
    num_frames: int,
    crop: CropBox,
    clip: PosedClip,
    inpainted_fraction: float,
    mid_labels: UInt8[np.ndarray, "h w"],
    timings_s: dict[str, float],
) -> dict:
    """The contents of `process_report.json`: source, frames kept, camera, tracking quality, timings."""
    head, errors, start = clip.head, clip.errors, clip.start
    c2w = head.camera_to_head()
    fractions = np.bincount(mid_labels.ravel(), minlength=len(L.LABEL_NAMES)) / mid_labels.size
    return {
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
            "kept": clip.num_frames,
            "first_kept": start,
            "interpolated": int(clip.interpolated.sum()),
            "interpolated_frames": (np.flatnonzero(clip.interpolated) + start).tolist(),
            "dropped": num_frames - clip.num_frames,
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
            "rigid_landmarks": int(clip.face.rigid.sum()),
            "pnp_failed_frames": [i + start for i in head.pnp_failed],
        },
        "head_rotation_range_deg": np.ptp(head.angles_deg(), axis=0).round(2).tolist(),
        "background_inpainted_fraction": round(inpainted_fraction, 4),
        "label_fractions_mid_frame": {n: round(float(f), 4) for n, f in zip(L.LABEL_NAMES, fractions)},
        "timings_s": {k: round(v, 2) for k, v in timings_s.items()},
    }
