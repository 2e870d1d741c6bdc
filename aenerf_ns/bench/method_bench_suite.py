"""`aenerf-method-bench`'s settings and run: writes the synthetic identities, runs each comparison of
`method_comparisons` not skipped, and writes every figure to results.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Part = Literal["audio", "fewshot", "fields", "ssp", "ablation"]


@dataclass
class MethodBenchArgs:
    """Measure AE-NeRF's audio conditioning and base-model fine-tuning on synthetic identities."""

    output: Path = Path("outputs/method_bench")
    """Folder for the synthetic data, checkpoints and results.json."""
    steps: int = 3000
    """Training steps of the audio comparison (both models; the mouth gap shows once the rest is sharp)."""
    base_steps: int = 1500
    """Pretraining steps of the multi-identity base model."""
    finetune_steps: int = 500
    """Steps of the fine-tuning and of the from-scratch run on the new identity."""
    eval_every: int = 50
    """Held-out PSNR is measured every this many steps in the few-shot comparison."""
    base_identities: int = 3
    """Identities the base model is pretrained on (the new identity is never among them)."""
    resolution: int = 96
    """Image size of the synthetic clips."""
    seconds: float = 10.0
    """Length of each synthetic clip."""
    few_shot_fraction: float = 0.4
    """Leading fraction of the new identity's clip it is fine-tuned on (0.4 of 10 s = 4 s)."""
    position_encoding: Literal["triplane", "hashgrid", "positional"] = "triplane"
    """Field option the runs use (the preset's is triplane)."""
    eval_frames: int = 25
    """Held-out frames scored in the audio comparison."""
    field_steps: int = 800
    """Steps of each run in the field comparison (tri-plane, hash grid, positional)."""
    ssp_steps: int = 1500
    """Training steps of each run in the SSP-NeRF comparison."""
    ablation_steps: int = 3000
    """Training steps of each run in the ablation comparison (Table 4)."""
    ablation_frames: int = 100
    """Consecutive held-out frames each ablation run is scored on (the sync measures need seconds of speech)."""
    cross_audio: tuple[Path, ...] = ()
    """Speech that drives each ablation run in the cross-driven rows (default: the speech of synth01 and
    synth02, other speakers than the trained identity)."""
    cross_frames: int = 125
    """Frames rendered per cross-driven row."""
    syncnet_weights: Path | None = None
    """SyncNet's weights file for LSE-C / LSE-D (default: the documented location; skipped when absent)."""
    skip: tuple[Part, ...] = ()
    """Parts to skip: 'audio', 'fewshot', 'fields', 'ssp', 'ablation'."""


def run_method_bench(args: MethodBenchArgs) -> dict:
    """Write the synthetic identities (unless there), run every comparison not skipped, write results.json."""
    from rich.console import Console

    from aenerf_ns.bench.method_comparisons import PARTS
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console()
    data = args.output / "data"
    if not all((data / f"synth{i:02d}" / "transforms.json").is_file() for i in range(args.base_identities + 1)):
        write_synthetic_sample(
            data, identities=args.base_identities + 1, seconds=args.seconds, resolution=args.resolution
        )
    results: dict = {"settings": {k: str(v) for k, v in vars(args).items()}}
    for name, part in PARTS.items():
        if name not in args.skip:
            results[name] = part(args, data, console)
    atomic_write_bytes(args.output / "results.json", json.dumps(results, indent=2).encode())
    console.print(f"results: {args.output / 'results.json'}")
    return results
