"""`aenerf-synth-data`: write the synthetic talking-head sample (one or more identities)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class SynthDataArgs:
    """Render synthetic talking heads speaking synthetic speech, in the talking-head dataset format."""

    output: Path = Path("data/synthetic")
    """Folder to write into; each identity goes to a sub-folder (synth00, synth01, ...)."""
    identities: int = 1
    """Number of different people to render."""
    seconds: float = 10.0
    """Length of each clip in seconds."""
    resolution: int = 128
    """Square image size in pixels."""
    fps: float = 25.0
    """Video frame rate."""
    seed: int = 0
    """Seed for looks, head motion and speech; the same seed gives the same data."""


def main(args: SynthDataArgs) -> None:
    from rich.console import Console

    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample
    from aenerf_ns.utils.cli_output import warnings_to_log

    with warnings_to_log(args.output):
        metas = write_synthetic_sample(args.output, args.identities, args.seconds, args.resolution, args.fps, args.seed)
    console = Console()
    for meta in metas:
        console.print(f"[green]wrote[/green] {meta.root} ({meta.num_frames} frames, {meta.width}x{meta.height})")


def entrypoint() -> None:
    main(tyro.cli(SynthDataArgs))


if __name__ == "__main__":
    entrypoint()
