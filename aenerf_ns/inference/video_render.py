"""`aenerf-render`'s job: a trained talking head speaking a new audio track, as an mp4 with the audio muxed in.

The settings are checked and the audio loaded before the model loads (`RenderInputError` says what is wrong);
one camera per audio-feature frame follows the chosen poses (the identity's training poses, a viewer camera
path, or an interpolate / spiral path made from them); `audio_render.render_with_audio` renders the frames to a
hidden folder beside the output, named after the audio, settings and checkpoint, so a rerun resumes; the mp4
appears under its final name only when complete, marked as AI-generated in its metadata.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class RenderArgs:
    """Render a trained talking-head run speaking new audio, as an mp4 with sound."""

    load_config: Path
    """config.yml of the training run."""
    audio: Path
    """Speech to drive the head with: wav, flac, mp3, m4a, or a video's audio track."""
    output_path: Path = Path("renders/output.mp4")
    """mp4 to write (h264 video + aac audio)."""
    pose_source: Literal["pingpong", "loop", "fixed", "camera-path", "interpolate", "spiral"] = "pingpong"
    """Head poses: training poses forward and back, looped or held; a camera path; ns-render's interpolate or spiral."""
    fixed_frame: int = 0
    """Training frame whose pose --pose-source fixed holds and --pose-source spiral circles around."""
    camera_path_filename: Path | None = None
    """nerfstudio camera-path JSON (from the viewer) for --pose-source camera-path; looped to the audio length."""
    interpolation_steps: int = 10
    """--pose-source interpolate: poses from each training pose to the next (as ns-render interpolate)."""
    order_poses: bool = False
    """--pose-source interpolate: order the training poses by proximity first (as ns-render interpolate)."""
    radius: float = 0.1
    """--pose-source spiral: radius of the spiral, in scene units (as ns-render spiral)."""
    seconds: float | None = None
    """--pose-source interpolate/spiral: the path's duration, repeated to the audio's end (default: the audio's)."""
    identity: int = 0
    """Identity to render when the run was trained on several (index in the run's dataset order)."""
    downscale_factor: float = 1.0
    """Divide the output width and height by this."""
    rendered_output_names: list[str] = field(default_factory=lambda: ["rgb"])
    """Model outputs shown side by side: rgb, depth, accumulation, parsing, audio_region, ... (as ns-render)."""
    depth_near_plane: float | None = None
    """Depth shown as the colour scale's start (default: each frame's nearest), for depth outputs (as ns-render)."""
    depth_far_plane: float | None = None
    """Depth shown as the colour scale's end (default: each frame's farthest), for depth outputs (as ns-render)."""
    background: str = "training"
    """'training' (the identity's background plate), white, black, green, or #rrggbb."""
    watermark: bool = False
    """Burn a visible 'AI-generated' label into every frame (the mp4 metadata says so either way)."""
    max_seconds: float = 600.0
    """Longest audio accepted; split longer speech into parts or raise this limit."""
    load_step: int | None = None
    """Checkpoint step to load (default: the newest)."""
    data: Path | None = None
    """Dataset folder of the run, when it is no longer where config.yml says."""
    eval_num_rays_per_chunk: int | None = None
    """Rays per forward pass (lower it if rendering runs out of memory)."""
    keep_frames: bool = False
    """Keep the rendered PNG frames after the mp4 is written."""


class RenderInputError(ValueError):
    """The render's inputs cannot be used; the message says which and why."""


def _frames_key(args: RenderArgs, ckpt: Path, num_frames: int) -> str:
    """Name of the frames folder: the audio, the settings and the checkpoint, so a rerun resumes only its own."""
    h = hashlib.sha256(Path(args.audio).read_bytes())
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("output_path", "keep_frames", "max_seconds")}
    settings.update(checkpoint=str(Path(ckpt).resolve()), mtime=Path(ckpt).stat().st_mtime_ns, frames=num_frames)
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _checked_audio(args: RenderArgs):
    """The render's settings checked, and its audio loaded, before the model loads: (audio, background colour)."""
    from aenerf_ns.audio.audio_io import check_not_silent, load_audio
    from aenerf_ns.inference.audio_render import parse_background

    background = parse_background(args.background)
    if args.downscale_factor <= 0:
        raise RenderInputError(f"--downscale-factor must be positive, got {args.downscale_factor}")
    if not args.rendered_output_names:
        raise RenderInputError("--rendered-output-names needs at least one output name, such as rgb")
    if args.interpolation_steps < 1:
        raise RenderInputError(f"--interpolation-steps must be at least 1, got {args.interpolation_steps}")
    if args.radius <= 0:
        raise RenderInputError(f"--radius must be positive, got {args.radius}")
    if args.seconds is not None:
        if args.pose_source not in ("interpolate", "spiral"):
            raise RenderInputError(
                f"--seconds is the duration of an interpolate or spiral path; --pose-source {args.pose_source} has none"
            )
        if args.seconds <= 0:
            raise RenderInputError(f"--seconds must be positive, got {args.seconds}")
    if args.pose_source == "camera-path":
        if args.camera_path_filename is None:
            raise RenderInputError("--pose-source camera-path needs --camera-path-filename")
        if not args.camera_path_filename.is_file():
            raise RenderInputError(f"camera path {args.camera_path_filename} does not exist")
    audio = load_audio(args.audio)  # readable, non-empty, finite, not silent
    check_not_silent(audio)
    if audio.duration_s > args.max_seconds:
        raise RenderInputError(
            f"{args.audio} is {audio.duration_s:.0f} s long, over the {args.max_seconds:.0f} s limit: split it, "
            "or raise --max-seconds (memory grows with the length)"
        )
    return audio, background


def _generated_path(args: RenderArgs, poses, num_frames: int, fps: float) -> tuple:
    """The interpolate or spiral path built from the identity's training `poses`, and its schedule over the audio."""
    from aenerf_ns.inference.audio_render import interpolated_poses, path_schedule, spiral_poses

    frames_per_pass = num_frames
    if args.seconds is not None:
        frames_per_pass = round(args.seconds * fps)
        if frames_per_pass < 1:
            raise RenderInputError(f"--seconds {args.seconds} is shorter than one frame at {fps:g} fps")
    if args.pose_source == "spiral":
        if not 0 <= args.fixed_frame < len(poses):
            raise RenderInputError(f"--fixed-frame {args.fixed_frame} is outside 0..{len(poses) - 1}")
        start = poses[args.fixed_frame : args.fixed_frame + 1]
        path = spiral_poses(start, steps=frames_per_pass, radius=args.radius)
        return path, path_schedule(num_frames, len(path), frames_per_pass, "loop")
    if len(poses) < 2:
        raise RenderInputError(
            f"--pose-source interpolate needs two training poses or more; identity {args.identity} has one"
        )
    path = interpolated_poses(poses, steps=args.interpolation_steps, order_poses=args.order_poses)
    return path, path_schedule(num_frames, len(path), frames_per_pass, "pingpong")


def _frame_cameras(args: RenderArgs, outputs, num_frames: int, fps: float) -> list:
    """One camera per output frame: the identity's training poses, a path made from them, or the camera path,
    scheduled over the audio."""
    from aenerf_ns.data.talking_head_metadata import talking_head_metadata
    from aenerf_ns.inference.audio_render import identity_poses, pose_schedule, render_cameras

    identities = [identity.name for identity in talking_head_metadata(outputs.metadata).identities]
    if not 0 <= args.identity < len(identities):
        raise RenderInputError(f"--identity {args.identity} is outside 0..{len(identities) - 1} ({identities})")
    if args.pose_source == "camera-path":
        from nerfstudio.cameras.camera_paths import get_path_from_json

        try:
            poses = get_path_from_json(json.loads(args.camera_path_filename.read_text()))
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            raise RenderInputError(f"{args.camera_path_filename} is not a nerfstudio camera path: {exc}") from exc
        schedule = pose_schedule(num_frames, len(poses), "loop")
    elif args.pose_source in ("interpolate", "spiral"):
        poses, schedule = _generated_path(args, identity_poses(outputs.cameras, args.identity), num_frames, fps)
    else:
        poses = identity_poses(outputs.cameras, args.identity)
        schedule = pose_schedule(num_frames, len(poses), args.pose_source, args.fixed_frame)
    return render_cameras(poses, schedule, args.identity, 1.0 / args.downscale_factor)


def _provenance(method_name: str, step: int, audio: Path) -> dict[str, str]:
    """mp4 metadata that marks the video as AI-generated and names the software, run and audio behind it."""
    from importlib.metadata import version

    from aenerf_ns.inference.video_io import PROVENANCE_KEY

    return {
        PROVENANCE_KEY: "true",
        "comment": (
            f"AI-generated talking head: synthesized by aenerf_ns {version('aenerf_ns')} "
            f"({method_name}, step {step}) driven by {Path(audio).name}"
        ),
        "encoder_software": f"aenerf_ns {version('aenerf_ns')}",
    }


def render_video(args: RenderArgs) -> Path:
    """Render the run speaking `args.audio` and write the mp4 with the audio muxed in; returns its path."""
    from rich.console import Console

    from aenerf_ns.audio.audio_features import num_video_frames
    from aenerf_ns.data.talking_head_metadata import talking_head_metadata
    from aenerf_ns.inference.audio_render import audio_track_features, render_with_audio
    from aenerf_ns.inference.checkpoints import load_trained_pipeline
    from aenerf_ns.inference.video_io import encode_frames_with_audio

    console = Console()
    audio, background = _checked_audio(args)
    config, pipeline, ckpt, step = load_trained_pipeline(
        args.load_config,
        test_mode="inference",
        load_step=args.load_step,
        data=args.data,
        require_audio_driven=True,
        eval_num_rays_per_chunk=args.eval_num_rays_per_chunk,
    )
    outputs = pipeline.datamanager.train_dataparser_outputs
    fps = talking_head_metadata(outputs.metadata).fps
    num_frames = num_video_frames(audio, fps)
    if num_frames < 1:
        raise RenderInputError(f"{args.audio} lasts {audio.duration_s:.3f} s: shorter than one frame at {fps:g} fps")
    features = audio_track_features(audio, fps, num_frames, config.pipeline.datamanager.dataparser.audio)
    frame_cameras = _frame_cameras(args, outputs, num_frames, fps)

    output = Path(args.output_path)
    frames_dir = output.parent / f".{output.stem}.frames-{_frames_key(args, ckpt, num_frames)}"
    render_with_audio(
        pipeline.model,
        frame_cameras,
        features,
        frames_dir,
        background,
        args.watermark,
        args.rendered_output_names,
        (args.depth_near_plane, args.depth_far_plane),
        console,
    )
    metadata = _provenance(config.method_name, step, args.audio)
    encode_frames_with_audio(str(frames_dir / "%06d.png"), fps, num_frames, args.audio, output, metadata)
    if not args.keep_frames:
        shutil.rmtree(frames_dir, ignore_errors=True)
    console.print(f"wrote {output} ({num_frames} frames, {num_frames / fps:.2f} s at {fps:g} fps, with audio)")
    return output
