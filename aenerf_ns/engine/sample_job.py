"""`aenerf-sample`'s job: the whole pipeline on the bundled synthetic sample, on any machine.

Writes the synthetic sample, trains the config the command gives (`aenerf-tiny`) on the first half of the
clip, evaluates the held-out second half with its own (unseen) audio (metrics, image strip, mouth-opening plot),
and finally renders the trained head speaking new synthetic speech as an mp4 with the audio track
(`video_render`). The config comes from the command because method configs sit in a layer above this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nerfstudio.engine.trainer import TrainerConfig
    from rich.console import Console


@dataclass
class SampleArgs:
    """Generate the synthetic sample, train aenerf-tiny on it and evaluate held-out frames."""

    output: Path = Path("outputs/sample")
    """Folder for the data, the training run and the evaluation."""
    iterations: int = 1500
    """Training iterations."""
    seconds: float = 10.0
    """Length of the synthetic clip."""
    resolution: int = 128
    """Image size of the synthetic clip (and of the video)."""
    eval_frames: int | None = 50
    """Consecutive held-out frames to render and score (None: all of them)."""
    speech_seconds: float = 8.0
    """Length of the new speech the final video speaks."""
    render_downscale: float = 1.0
    """Divide the video's width and height by this (rendering cost grows with the pixel count)."""


def run_sample_job(args: SampleArgs, make_config: Callable[[], TrainerConfig]) -> dict:
    """Write the sample, train `make_config()` (aenerf-tiny) on it, evaluate held-out frames, render the video;
    returns the held-out metrics."""
    from rich.console import Console

    from aenerf_ns.utils.cli_output import stage_header, warnings_to_log

    console = Console()
    with warnings_to_log(args.output) as log_path:
        stage_header(console, 1, 4, "data", f"synthetic sample, {args.seconds:g} s at {args.resolution} px")
        data = _write_sample(args, console)
        stage_header(console, 2, 4, "training", f"aenerf-tiny, {args.iterations} iterations")
        config_path = _train(args, data, make_config)
        stage_header(console, 3, 4, "evaluation", "held-out frames with their own audio")
        metrics, step = _evaluate(args, config_path)
        stage_header(console, 4, 4, "video", f"{args.speech_seconds:g} s of new speech")
        video = _render_video(args, config_path)
    _print_summary(console, args, metrics, step, config_path, video, log_path)
    return metrics


def _write_sample(args: SampleArgs, console: Console) -> Path:
    """The synthetic identity's dataset folder, written unless it already exists."""
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    data = args.output / "data" / "synth00"
    if (data / "transforms.json").is_file():
        console.print(f"using the existing sample in {data}")
    else:
        write_synthetic_sample(args.output / "data", seconds=args.seconds, resolution=args.resolution)
    return data


def _train(args: SampleArgs, data: Path, make_config: Callable[[], TrainerConfig]) -> Path:
    """Train `make_config()` as `ns-train` does (same seeding, config.yml and checkpoints), without the config dump."""
    from nerfstudio.scripts.train import launch, train_loop

    config = make_config()
    config.pipeline.datamanager.data = data
    config.output_dir = args.output / "runs"
    config.max_num_iterations = args.iterations
    config.steps_per_save = min(config.steps_per_save, args.iterations)
    config.set_timestamp()
    config.save_config()
    launch(
        main_func=train_loop,
        num_devices_per_machine=config.machine.num_devices,
        device_type=config.machine.device_type,
        num_machines=config.machine.num_machines,
        machine_rank=config.machine.machine_rank,
        dist_url=config.machine.dist_url,
        config=config,
    )
    return config.get_base_dir() / "config.yml"


def _evaluate(args: SampleArgs, config_path: Path) -> tuple[dict, int]:
    """Held-out metrics and pictures in `<output>/eval`, and the step of the evaluated checkpoint."""
    from aenerf_ns.evaluation.evaluate import evaluate_heldout
    from aenerf_ns.inference.checkpoints import load_trained_pipeline

    _, pipeline, _, step = load_trained_pipeline(config_path)
    metrics = evaluate_heldout(pipeline, args.output / "eval", max_frames=args.eval_frames, consecutive=True)
    return metrics, step


def _render_video(args: SampleArgs, config_path: Path) -> Path:
    """The trained head speaking new synthetic speech, as an mp4 with the audio."""
    from aenerf_ns.audio.audio_io import write_wav
    from aenerf_ns.inference.video_render import RenderArgs, render_video
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    speech = synthesize_speech(args.speech_seconds, seed=2024)  # a sentence the model never heard
    speech_path = args.output / "new_speech.wav"
    write_wav(speech_path, speech.audio, speech.sample_rate)
    render_args = RenderArgs(
        load_config=config_path,
        audio=speech_path,
        output_path=args.output / "talking_head.mp4",
        downscale_factor=args.render_downscale,
    )
    return render_video(render_args)


def _print_summary(
    console: Console, args: SampleArgs, metrics: dict, step: int, config_path: Path, video: Path, log: Path
):
    """The metrics table and where every result lies."""
    from aenerf_ns.evaluation.metric_reports import metrics_table

    eval_dir = args.output / "eval"
    console.print(
        metrics_table(f"aenerf-tiny on the synthetic sample, {step + 1} iterations, held-out frames", metrics)
    )
    console.print(f"config:   {config_path}")
    console.print(f"metrics:  {eval_dir / 'metrics.json'}")
    console.print(f"images:   {eval_dir / 'heldout_strip.png'}, {eval_dir / 'mouth_opening.png'}")
    console.print(f"video:    {video} (new speech, audio muxed in)")
    if log.is_file():
        console.print(f"warnings: {log}")
