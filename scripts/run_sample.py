"""`aenerf-sample`: the whole job on the bundled synthetic sample, on any machine.

Writes the synthetic sample, trains `aenerf-tiny` on the first half of the clip, evaluates the held-out
second half with its own (unseen) audio (metrics, image strip, mouth-opening plot), and finally renders
the trained head speaking new synthetic speech as an mp4 with the audio track.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class SampleArgs:
    """Generate the synthetic sample, train aenerf-tiny on it and evaluate held-out frames."""

    output: Path = Path("outputs/sample")
    """Folder for the data, the training run and the evaluation."""
    iterations: int = 1500
    """Training iterations."""
    seconds: float = 10.0
    """Length of the synthetic clip."""
    resolution: int = 96
    """Image size of the synthetic clip."""
    eval_frames: int | None = 50
    """Consecutive held-out frames to render and score (None: all of them)."""
    speech_seconds: float = 8.0
    """Length of the new speech the final video speaks."""
    render_downscale: float = 2.0
    """Divide the video's width and height by this (CPU rendering cost grows with the pixel count)."""


def main(args: SampleArgs) -> dict:
    from nerfstudio.scripts.train import main as train_main
    from rich.console import Console
    from rich.table import Table

    from aenerf_ns.audio.audio_io import write_wav
    from aenerf_ns.evaluation.evaluate import evaluate_heldout, format_metric
    from aenerf_ns.inference.checkpoints import load_trained_pipeline
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config
    from aenerf_ns.scripts.render import RenderArgs
    from aenerf_ns.scripts.render import main as render_main
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    console = Console()
    data = args.output / "data" / "synth00"
    if (data / "transforms.json").is_file():
        console.print(f"using the existing sample in {data}")
    else:
        write_synthetic_sample(args.output / "data", seconds=args.seconds, resolution=args.resolution)

    config = aenerf_tiny_config()
    config.pipeline.datamanager.data = data
    config.output_dir = args.output / "runs"
    config.max_num_iterations = args.iterations
    config.steps_per_save = min(config.steps_per_save, args.iterations)
    train_main(config)

    config_path = config.get_base_dir() / "config.yml"
    _, pipeline, _, step = load_trained_pipeline(config_path)
    eval_dir = args.output / "eval"
    metrics = evaluate_heldout(pipeline, eval_dir, max_frames=args.eval_frames, consecutive=True)
    del pipeline

    speech = synthesize_speech(args.speech_seconds, seed=2024)  # a sentence the model never heard
    speech_path = args.output / "new_speech.wav"
    write_wav(speech_path, speech.audio, speech.sample_rate)
    video = render_main(
        RenderArgs(
            load_config=config_path,
            audio=speech_path,
            output_path=args.output / "talking_head.mp4",
            downscale_factor=args.render_downscale,
        )
    )

    table = Table(title=f"aenerf-tiny on the synthetic sample, {step + 1} iterations, held-out frames")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, format_metric(v))
    console.print(table)
    console.print(f"config:  {config_path}")
    console.print(f"metrics: {eval_dir / 'metrics.json'}")
    console.print(f"images:  {eval_dir / 'heldout_strip.png'}, {eval_dir / 'mouth_opening.png'}")
    console.print(f"video:   {video} (new speech, audio muxed in)")
    return metrics


def entrypoint() -> None:
    main(tyro.cli(SampleArgs))


if __name__ == "__main__":
    entrypoint()
