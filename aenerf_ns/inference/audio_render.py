"""Driving a trained talking head with a new audio track: one camera per audio-feature frame, rendered images.

The functional core of `aenerf-render`: `pose_schedule` picks which head pose each output frame uses,
`render_cameras` pairs those poses with the new track's audio rows, and `render_frames` renders them to a
folder of numbered PNGs, skipping frames already there, so an interrupted render resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Int
from nerfstudio.cameras.cameras import Cameras

from aenerf_ns.audio.audio_io import LoadedAudio
from aenerf_ns.utils.atomic_io import atomic_save_png
from aenerf_ns.utils.image_metrics import to_uint8

PoseMode = Literal["pingpong", "loop", "fixed"]

NAMED_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0)}


def pose_schedule(num_frames: int, num_poses: int, mode: PoseMode, fixed_index: int = 0) -> Int[np.ndarray, "n"]:
    """Index of the pose each of `num_frames` output frames uses, out of `num_poses` poses.

    "loop" restarts at the first pose, "pingpong" runs forward then backward (no jump at the turn),
    "fixed" holds pose `fixed_index`.
    """
    if num_poses < 1:
        raise ValueError("there are no poses to render from")
    t = np.arange(num_frames)
    if mode == "fixed":
        if not 0 <= fixed_index < num_poses:
            raise ValueError(f"fixed pose index {fixed_index} is outside 0..{num_poses - 1}")
        return np.full(num_frames, fixed_index)
    if mode == "loop" or num_poses == 1:
        return t % num_poses
    if mode == "pingpong":
        period = 2 * (num_poses - 1)
        phase = t % period
        return np.where(phase < num_poses, phase, period - phase)
    raise ValueError(f"unknown pose mode {mode!r}; choose pingpong, loop or fixed")


def parse_background(value: str) -> tuple[float, float, float] | None:
    """None for "training" (the identity's background plate), else an RGB colour in [0, 1].

    Accepts "white", "black", "green" or a hex colour such as "#80a0ff".
    """
    value = value.strip().lower()
    if value == "training":
        return None
    if value in NAMED_COLORS:
        return NAMED_COLORS[value]
    hex_part = value.removeprefix("#")
    if len(hex_part) == 6:
        try:
            return tuple(int(hex_part[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            pass
    raise ValueError(f"background {value!r} is not 'training', a colour name ({', '.join(NAMED_COLORS)}) or #rrggbb")


def drive_with_audio(model, audio: LoadedAudio, fps: float, num_frames: int, feature_config) -> None:
    """Make `num_frames` frames of `audio` the model's audio table, with the run's feature settings."""
    from aenerf_ns.audio.audio_features import compute_audio_features

    features = compute_audio_features(audio.path, fps, num_frames, feature_config, cache_dir=None, audio=audio)
    model.set_audio_track(torch.from_numpy(features))


def identity_poses(cameras: Cameras, identity: int) -> Cameras:
    """The training cameras of one identity (each camera's metadata names its identity)."""
    own = (cameras.metadata["identity"].reshape(-1).round().long() == identity).nonzero().reshape(-1)
    if len(own) == 0:
        raise ValueError(f"no training frames of identity {identity}")
    return cameras[own]


def render_cameras(poses: Cameras, schedule: Int[np.ndarray, "n"], identity: int, scale: float = 1.0) -> list[Cameras]:
    """One single-camera `Cameras` per output frame: pose `schedule[t]`, audio row t, the given identity."""
    cameras = []
    for t, index in enumerate(schedule):
        camera = poses[int(index) : int(index) + 1]
        if scale != 1.0:
            camera.rescale_output_resolution(scale)
        camera.metadata = {
            "audio_index": torch.full((1, 1), float(t)),
            "identity": torch.full((1, 1), float(identity)),
        }
        cameras.append(camera)
    return cameras


def add_watermark(image: np.ndarray, text: str = "AI-generated") -> np.ndarray:
    """Burn a small visible label into the lower-left corner of an RGB uint8 image."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil, "RGBA")
    font = ImageFont.load_default(size=max(8, h // 20))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, h // 100)
    x, y = pad, h - (bottom - top) - 3 * pad
    draw.rectangle((x - pad, y - pad, x + right - left + pad, y + bottom - top + 2 * pad), fill=(0, 0, 0, 140))
    draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, 230))
    return np.asarray(pil)


@torch.no_grad()
def render_frames(
    model,
    cameras: list[Cameras],
    frames_dir: Path,
    background: tuple[float, float, float] | None = None,
    watermark: bool = False,
    on_frame: Callable[[int], None] | None = None,
) -> None:
    """Render every camera to `frames_dir/000000.png, ...`; frames already on disk are kept, not redone."""
    frames_dir = Path(frames_dir)
    frames_dir.mkdir(parents=True, exist_ok=True)
    for t, camera in enumerate(cameras):
        path = frames_dir / f"{t:06d}.png"
        if not path.is_file():
            outputs = model.get_outputs_for_camera(camera.to(model.device))
            rgb = outputs["rgb"]
            if background is not None:
                color = torch.tensor(background, device=rgb.device, dtype=rgb.dtype)
                rgb = outputs.get("rgb_foreground", rgb) + (1.0 - outputs["accumulation"]) * color
            image = to_uint8(rgb)
            if watermark:
                image = add_watermark(image)
            atomic_save_png(path, image)
        if on_frame is not None:
            on_frame(t)
