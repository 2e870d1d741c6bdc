"""`aenerf-eval`'s job: a trained run loaded from its config.yml and scored, its figures printed as a table.

Held-out frames with their own audio (`evaluate.evaluate_heldout`), or, with another audio file, the training
poses driven by it, where only lip sync can be measured (`evaluate.evaluate_cross_driven`). Unusable audio and a
missing SyncNet weights file are refused before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EvalArgs:
    """Evaluate a trained talking-head run on its held-out frames, or driven by another audio file."""

    load_config: Path
    """config.yml of the training run."""
    output_dir: Path | None = None
    """Folder for metrics.json and the PNGs (default: eval/ next to config.yml)."""
    audio: Path | None = None
    """Cross-driven mode: drive the training poses with this audio; only lip-sync measures apply."""
    max_frames: int | None = None
    """Consecutive frames to score (default: every held-out frame; 250 in cross-driven mode)."""
    max_offset: int = 5
    """Largest audio-video delay, in frames either way, the sync search considers."""
    identity: int = 0
    """Identity driven in cross-driven mode (runs trained on several identities)."""
    load_step: int | None = None
    """Checkpoint step to load (default: the newest)."""
    data: Path | None = None
    """Dataset folder of the run, when it is no longer where config.yml says."""
    syncnet_weights: Path | None = None
    """SyncNet's weights (syncnet_v2.model) for LSE-C / LSE-D (default: ~/.cache/aenerf_ns/syncnet_v2.model or
    $AENERF_SYNCNET_WEIGHTS; skipped when absent, never downloaded)."""


def evaluate_run(args: EvalArgs) -> dict:
    """Load the run, score it (held-out frames, or driven by `args.audio`), print the figures; the metrics."""
    from rich.console import Console

    from aenerf_ns.audio.audio_io import check_not_silent, load_audio
    from aenerf_ns.evaluation.evaluate import evaluate_cross_driven, evaluate_heldout
    from aenerf_ns.evaluation.metric_reports import metrics_table
    from aenerf_ns.inference.checkpoints import load_trained_pipeline

    console = Console()
    if args.audio is not None:
        check_not_silent(load_audio(args.audio))  # unusable audio fails before the model loads
    if args.syncnet_weights is not None and not args.syncnet_weights.is_file():
        raise FileNotFoundError(f"--syncnet-weights {args.syncnet_weights}: no such file")
    config, pipeline, _, step = load_trained_pipeline(
        args.load_config,
        test_mode="test" if args.audio is None else "inference",
        load_step=args.load_step,
        data=args.data,
        require_audio_driven=True,
    )
    output_dir = args.output_dir or Path(args.load_config).parent / "eval"
    if args.audio is None:
        metrics = evaluate_heldout(
            pipeline,
            output_dir,
            max_frames=args.max_frames,
            consecutive=True,
            max_offset=args.max_offset,
            syncnet_weights=args.syncnet_weights,
        )
        pictures = ("heldout_strip.png", "mouth_opening.png")
    else:
        metrics = evaluate_cross_driven(
            pipeline,
            args.audio,
            config.pipeline.datamanager.dataparser.audio,
            output_dir,
            max_frames=args.max_frames if args.max_frames is not None else 250,
            max_offset=args.max_offset,
            identity=args.identity,
            syncnet_weights=args.syncnet_weights,
        )
        pictures = ("render_strip.png", "mouth_opening.png")

    mode = "cross-driven" if args.audio is not None else "held-out frames"
    console.print(metrics_table(f"{config.method_name}, step {step}, {mode}", metrics))
    console.print(f"metrics: {output_dir / 'metrics.json'}")
    for name in pictures:
        console.print(f"picture: {output_dir / name}")
    return metrics
