"""Driving a trained talking head with a new audio track: one camera per audio-feature frame, rendered images.

The functional core of `aenerf-render`: `pose_schedule` picks which head pose each output frame uses (and
`path_schedule` spreads a generated camera path, `interpolated_poses` or `spiral_poses`, over the audio),
`render_cameras` pairs those poses with the new track's audio rows (`audio_track_features`), and
`render_with_audio` renders them, with a progress bar: to a folder of numbered PNGs (`render_frames`), skipping
frames already there, so an interrupted render resumes where it stopped, or to images in memory (the evaluation's).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
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


def path_schedule(
    num_frames: int, num_poses: int, frames_per_pass: int, repeat: Literal["loop", "pingpong"]
) -> Int[np.ndarray, "n"]:
    """Index of the path pose each of `num_frames` output frames uses, the path's `num_poses` poses spread evenly
    over passes of `frames_per_pass` frames.

    Each pass runs from the first pose to the last (one pose per frame when both counts agree); later passes start
    again ("loop", for closed paths) or run back and forth ("pingpong", for open ones, so there is no jump).
    """
    if num_poses < 1 or frames_per_pass < 1:
        raise ValueError(
            f"a path needs at least one pose and one frame per pass, got {num_poses} and {frames_per_pass}"
        )
    t = np.arange(num_frames)
    step = t % frames_per_pass
    if repeat == "pingpong":
        step = np.where((t // frames_per_pass) % 2 == 1, frames_per_pass - 1 - step, step)
    elif repeat != "loop":
        raise ValueError(f"unknown repeat {repeat!r}; choose loop or pingpong")
    if frames_per_pass == 1:
        return np.zeros(num_frames, dtype=np.int64)
    if repeat == "loop" and frames_per_pass == num_poses:
        return step
    return np.rint(step * (num_poses - 1) / (frames_per_pass - 1)).astype(np.int64)


def interpolated_poses(keyframes: Cameras, steps: int, order_poses: bool = False) -> Cameras:
    """nerfstudio's interpolated camera path (as `ns-render interpolate`): `steps` poses from each keyframe to the
    next, intrinsics interpolated alike, keyframes reordered by proximity first when `order_poses`."""
    from nerfstudio.cameras.camera_paths import get_interpolated_camera_path

    if steps < 1:
        raise ValueError(f"interpolation steps must be at least 1, got {steps}")
    if len(keyframes) < 2:
        raise ValueError(f"interpolating needs at least two poses to run between, got {len(keyframes)}")
    with warnings.catch_warnings():  # nerfstudio's own tensor-copy warning
        warnings.simplefilter("ignore", UserWarning)
        path = get_interpolated_camera_path(keyframes, steps=steps, order_poses=order_poses)
    # nerfstudio derives the image size from the principal point; keep the keyframes' own size
    return Cameras(
        camera_to_worlds=path.camera_to_worlds,
        fx=path.fx,
        fy=path.fy,
        cx=path.cx,
        cy=path.cy,
        width=keyframes.width[0].cpu(),
        height=keyframes.height[0].cpu(),
        camera_type=path.camera_type[0],
    )


_SPIRAL_FRAME = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""A rotation whose third column is the camera's up axis (+y), for `spiral_poses`."""


def spiral_poses(start: Cameras, steps: int, radius: float) -> Cameras:
    """nerfstudio's spiral camera path (as `ns-render spiral`): `steps` poses circling `start` twice at `radius`
    (scene units) in its image plane, moving to and fro along its view axis, looking the same way.

    nerfstudio's `get_spiral_path` takes the spiral's up direction from the start camera's third rotation column in
    world space; for a camera facing the head along -z that column is nearly the viewing axis and the picture comes
    out rolled by an arbitrary angle. So the spiral is generated in the camera's own frame, from a start pose whose
    third column is the camera's up axis, and then carried onto `start`.
    """
    from nerfstudio.cameras.camera_paths import get_spiral_path

    if radius <= 0:
        raise ValueError(f"spiral radius must be positive, got {radius}")
    if steps < 1:
        raise ValueError(f"a spiral needs at least one step, got {steps}")
    probe = Cameras(
        camera_to_worlds=torch.cat([_SPIRAL_FRAME, torch.zeros(3, 1)], dim=1)[None],
        fx=start.fx[:1].cpu(),
        fy=start.fy[:1].cpu(),
        cx=start.cx[:1].cpu(),
        cy=start.cy[:1].cpu(),
    )
    with warnings.catch_warnings():  # nerfstudio's own torch.cross deprecation warning
        warnings.simplefilter("ignore", UserWarning)
        spiral = get_spiral_path(probe, steps=steps, radius=radius)
    local = _SPIRAL_FRAME.T @ spiral.camera_to_worlds  # the spiral in the start camera's frame
    start_c2w = start.camera_to_worlds[0].cpu()
    c2w = torch.cat([start_c2w[:, :3] @ local[..., :3], start_c2w[:, :3] @ local[..., 3:] + start_c2w[:, 3:]], dim=-1)
    return Cameras(
        camera_to_worlds=c2w,
        fx=start.fx[0].cpu(),
        fy=start.fy[0].cpu(),
        cx=start.cx[0].cpu(),
        cy=start.cy[0].cpu(),
        width=start.width[0].cpu(),
        height=start.height[0].cpu(),
        camera_type=start.camera_type[0].cpu(),
    )


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


def audio_track_features(audio: LoadedAudio, fps: float, num_frames: int, feature_config) -> np.ndarray:
    """The audio features of `num_frames` frames of `audio`, with the run's feature settings: a new audio track."""
    from aenerf_ns.audio.audio_features import compute_audio_features

    return compute_audio_features(audio.path, fps, num_frames, feature_config, cache_dir=None, audio=audio)


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


def output_image(
    outputs: dict,
    name: str,
    background: tuple[float, float, float] | None = None,
    depth_range: tuple[float | None, float | None] = (None, None),
) -> Float[torch.Tensor, "h w 3"]:
    """One of the model's outputs for a camera as an RGB image in [0, 1], shown as ns-render shows it.

    "rgb" is composited over `background` (None keeps the model's own, the training plate); outputs named like
    "depth" are coloured by distance (between `depth_range`, or each frame's own range); others go through
    nerfstudio's colormap (one channel as a colour scale, three as RGB, more reduced to three).
    """
    from nerfstudio.utils import colormaps

    if name == "rgb":
        rgb = outputs["rgb"]
        if background is not None:
            color = torch.tensor(background, device=rgb.device, dtype=rgb.dtype)
            rgb = outputs.get("rgb_foreground", rgb) + (1.0 - outputs["accumulation"]) * color
        return rgb
    images = sorted(k for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.ndim == 3)
    if name not in images:
        raise ValueError(f"the model renders no image output {name!r}; it renders {', '.join(images)}")
    if "depth" in name:
        near, far = depth_range
        return colormaps.apply_depth_colormap(
            outputs[name], accumulation=outputs.get("accumulation"), near_plane=near, far_plane=far
        )
    return colormaps.apply_colormap(outputs[name])


def render_frame(
    model,
    camera: Cameras,
    background: tuple[float, float, float] | None = None,
    output_names: Sequence[str] = ("rgb",),
    depth_range: tuple[float | None, float | None] = (None, None),
    watermark: bool = False,
) -> np.ndarray:
    """One camera's frame as uint8 RGB: `output_names` side by side, left to right (see `output_image`)."""
    outputs = model.get_outputs_for_camera(camera.to(model.device))
    panels = [output_image(outputs, name, background, depth_range) for name in output_names]
    image = to_uint8(torch.cat(panels, dim=1))
    return add_watermark(image) if watermark else image


@torch.no_grad()
def render_frames(
    model,
    cameras: list[Cameras],
    frames_dir: Path,
    background: tuple[float, float, float] | None = None,
    watermark: bool = False,
    on_frame: Callable[[int], None] | None = None,
    output_names: Sequence[str] = ("rgb",),
    depth_range: tuple[float | None, float | None] = (None, None),
) -> None:
    """Render every camera to `frames_dir/000000.png, ...`; frames already on disk are kept, not redone.

    Each frame shows `output_names` side by side, left to right (see `output_image`).
    """
    frames_dir = Path(frames_dir)
    for t, camera in enumerate(cameras):
        path = frames_dir / f"{t:06d}.png"
        if not path.is_file():
            image = render_frame(model, camera, background, output_names, depth_range, watermark)
            frames_dir.mkdir(parents=True, exist_ok=True)
            atomic_save_png(path, image)
        if on_frame is not None:
            on_frame(t)


@torch.no_grad()
def render_with_audio(
    model,
    cameras: list[Cameras],
    features: np.ndarray,
    frames_dir: Path | None = None,
    background: tuple[float, float, float] | None = None,
    watermark: bool = False,
    output_names: Sequence[str] = ("rgb",),
    depth_range: tuple[float | None, float | None] = (None, None),
    console=None,
    label: str = "rendering",
    transient: bool = False,
) -> list[np.ndarray]:
    """Make `features` (`audio_track_features`) the model's audio track and render one frame per camera (from
    `render_cameras`), showing a progress bar.

    With `frames_dir` the frames go there as numbered PNGs, frames already there are kept (an interrupted render
    resumes), and nothing is returned; without it the uint8 RGB frames are returned.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    model.set_audio_track(torch.from_numpy(features))
    console = console or Console()
    if frames_dir is not None:
        done = len(list(Path(frames_dir).glob("*.png"))) if Path(frames_dir).is_dir() else 0
        if done:
            console.print(f"resuming: {done} of {len(cameras)} frames already rendered in {frames_dir}")
    images: list[np.ndarray] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=transient) as progress:
        task = progress.add_task(label, total=len(cameras))
        if frames_dir is not None:
            on_frame = lambda t: progress.update(task, completed=t + 1)  # noqa: E731
            render_frames(model, cameras, frames_dir, background, watermark, on_frame, output_names, depth_range)
            return images
        for camera in cameras:
            images.append(render_frame(model, camera, background, output_names, depth_range, watermark))
            progress.advance(task)
    return images
