"""`aenerf-bench`'s run: every method trained and scored on the same data with the same budget, then reported.

Methods: nerfstudio's nerfacto (static) and D-NeRF (time-conditioned), both audio-blind; AE-NeRF with
tri-plane and hash-grid fields, four of its ablations and its paper engine; SSP-NeRF; the Gaussian-splatting
aenerf-gs (see `bench_methods`). Each trains in a process of its own under the same step or wall-clock budget
and is scored by the same code on the same held-out frames (`bench_run`); the tables are `bench_tables`',
the pictures `bench_plots`'. Here are the presets, the command's settings and the run that joins them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

PRESETS: dict[str, dict] = {
    "cpu-small": dict(
        small=True,
        resolution=64,
        seconds=10.0,
        rays=512,
        budget_steps=None,
        budget_seconds=75.0,
        curve_points=4,
        curve_frames=2,
        eval_frames=50,
        max_offset=3,
        scaling=(64, 128, 256),
    ),
    "gpu": dict(
        small=False,
        resolution=512,
        seconds=20.0,
        rays=2048,
        budget_steps=40000,
        budget_seconds=None,
        curve_points=20,
        curve_frames=4,
        eval_frames=100,
        max_offset=5,
        scaling=(64, 128, 256, 512),
    ),
}
"""cpu-small: 64 px, CPU presets, 75 s of training each (about 22 minutes on 2 cores).
gpu: 512 px, full-size methods, 40k steps each (the paper's scale)."""


@dataclass
class BenchArgs:
    """Train and score nerfacto, D-NeRF, AE-NeRF (both fields), its ablations, SSP-NeRF and aenerf-gs on the same
    data."""

    preset: Literal["cpu-small", "gpu"] = "cpu-small"
    """cpu-small: 64 px synthetic clip, CPU presets, 75 s of training per method. gpu: 512 px, full-size
    methods, 40k steps per method."""
    gpu: bool = False
    """Shorthand for --preset gpu."""
    data: Path | None = None
    """A processed dataset (aenerf-process output) instead of the synthetic clip. On a CPU, process at
    128 px or less: render cost grows with the pixel count."""
    output: Path = Path("outputs/bench")
    """Folder for the data, each method's results, bench.json and the pictures."""
    methods: tuple[str, ...] = ()
    """Methods to run (default: all), by the names in the table."""
    budget_seconds: float | None = None
    """Training seconds per method (overrides the preset; evaluation is not counted)."""
    budget_steps: int | None = None
    """Training steps per method instead of a time budget (overrides the preset)."""
    eval_frames: int | None = None
    """Consecutive held-out frames scored per method (overrides the preset)."""
    scaling: tuple[int, ...] | None = None
    """Image heights of the render-cost table (overrides the preset; give none to skip it)."""
    resolution: int | None = None
    """Image size of the synthetic clip (overrides the preset)."""
    train_fraction: float = 0.5
    """Leading fraction of the clip trained on; the frames after it are held out."""
    fresh: bool = False
    """Re-run methods whose results from the same settings exist."""
    syncnet_weights: Path | None = None
    """SyncNet's weights file for LSE-C / LSE-D (default: the documented location; skipped when absent)."""


def _settings(args: BenchArgs, data: Path):
    """The run's settings: the preset's, with the options given on the command line."""
    from aenerf_ns.bench.bench_run import RunSettings

    preset = dict(PRESETS["gpu" if args.gpu else args.preset])
    budget_steps, budget_seconds = preset["budget_steps"], preset["budget_seconds"]
    if args.budget_steps is not None:
        budget_steps, budget_seconds = args.budget_steps, None
    elif args.budget_seconds is not None:
        budget_steps, budget_seconds = None, args.budget_seconds
    if (budget_steps is not None and budget_steps < 1) or (budget_seconds is not None and budget_seconds <= 0):
        raise SystemExit("aenerf-bench: error: the training budget must be positive")
    return RunSettings(
        data=str(data.resolve()),
        small=preset["small"],
        train_fraction=args.train_fraction,
        rays=preset["rays"],
        budget_steps=budget_steps,
        budget_seconds=budget_seconds,
        curve_points=preset["curve_points"],
        curve_frames=preset["curve_frames"],
        eval_frames=args.eval_frames if args.eval_frames is not None else preset["eval_frames"],
        max_offset=preset["max_offset"],
        scaling=tuple(args.scaling if args.scaling is not None else preset["scaling"]),
        syncnet_weights=str(args.syncnet_weights.resolve()) if args.syncnet_weights else None,
    )


def _dataset(args: BenchArgs, console) -> Path:
    """The dataset every method trains on: `--data`, else the synthetic clip (written on first use)."""
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    if args.data is not None:
        if not (args.data / "transforms.json").is_file():
            raise SystemExit(f"aenerf-bench: error: {args.data} holds no transforms.json (run aenerf-process first)")
        return args.data
    preset = PRESETS["gpu" if args.gpu else args.preset]
    resolution = args.resolution or preset["resolution"]
    folder = args.output / f"data_{resolution}px"
    if not (folder / "synth00" / "transforms.json").is_file():
        console.print(f"writing the synthetic clip ({resolution} px, {preset['seconds']:.0f} s) to {folder}")
        write_synthetic_sample(folder, seconds=preset["seconds"], resolution=resolution)
    return folder / "synth00"


def _run_one(name: str, settings, settings_path: Path, out_dir: Path, fresh: bool, console) -> dict:
    """One method's result: reused when finished with the same settings, else trained in a process of its own."""
    result_path, failed_path = out_dir / "result.json", out_dir / "failed.json"
    if result_path.is_file() and not fresh:
        previous = json.loads(result_path.read_text())
        if previous.get("settings_key") == settings.key():
            console.print(f"[dim]{name}: reusing the finished result in {out_dir}[/dim]")
            return previous
    result_path.unlink(missing_ok=True)
    failed_path.unlink(missing_ok=True)
    console.rule(name)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, "-m", "aenerf_ns.bench.bench_run", str(settings_path), name, str(out_dir)], env=env)
    if result_path.is_file():
        return json.loads(result_path.read_text())
    error = json.loads(failed_path.read_text())["error"] if failed_path.is_file() else "the process died"
    console.print(f"[red]{name} failed: {error}[/red]")
    return {"method": name, "error": error}


def run_bench(args: BenchArgs) -> dict:
    """Run (or reuse) every chosen method, print the tables, and write bench.json and the two pictures."""
    from rich.console import Console

    from aenerf_ns.bench.bench_methods import REFERENCE, roster
    from aenerf_ns.bench.bench_plots import plot_curves, write_grid
    from aenerf_ns.bench.bench_tables import (
        RESULT_COLUMNS,
        add_ratios,
        evaluations_table,
        results_table,
        scaling_table,
        truth_line,
    )
    from aenerf_ns.evaluation.metric_reports import json_safe
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console(width=None if sys.stdout.isatty() else 140)  # logs keep the table's rows whole
    methods = roster()
    unknown = [name for name in args.methods if name not in {m.name for m in methods}]
    if unknown:
        raise SystemExit(f"aenerf-bench: error: unknown method(s) {unknown}; choose from {[m.name for m in methods]}")
    names = [m.name for m in methods if not args.methods or m.name in args.methods]
    args.output.mkdir(parents=True, exist_ok=True)
    data = _dataset(args, console)
    settings = _settings(args, data)
    settings_path = args.output / "settings.json"
    atomic_write_bytes(settings_path, json.dumps(asdict(settings), indent=2).encode())
    budget = f"{settings.budget_steps} steps" if settings.budget_steps else f"{settings.budget_seconds:.0f} s"
    console.print(f"data {data}; budget {budget} of training per method; methods: {', '.join(names)}")

    results = {}
    for name in names:
        results[name] = _run_one(name, settings, settings_path, args.output / name, args.fresh, console)
    add_ratios(results, REFERENCE)
    gpu = any("error" not in r and not r["device"].startswith("cpu") for r in results.values())
    memory_label = "CUDA memory added" if gpu else "resident memory added"
    title = f"aenerf-bench ({'gpu' if args.gpu else args.preset}): {budget} of training per method, {data}"
    console.print(results_table(results, title))
    legend = "  ".join(f"{h}: {d}" for h, d in RESULT_COLUMNS[1:] if h != "x")
    console.print(f"{legend}; x: as a multiple of nerfacto's")
    console.print(truth_line(results, gpu))
    if any(r.get("scaling") for r in results.values()):
        console.print(scaling_table(results, memory_label))
    if any(r.get("network_evaluations") for r in results.values()):
        console.print(evaluations_table(results))

    roles = {m.name: m.role for m in methods}
    plot_curves(args.output / "psnr_curve.png", results, roles)
    write_grid(args.output / "heldout_grid.png", args.output, names)
    report = {"settings": asdict(settings), "reference": REFERENCE, "methods": results}
    atomic_write_bytes(args.output / "bench.json", json.dumps(json_safe(report), indent=2).encode())
    console.print(
        f"wrote {args.output / 'bench.json'}, {args.output / 'psnr_curve.png'}, {args.output / 'heldout_grid.png'}"
    )
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        raise SystemExit(f"aenerf-bench: error: {len(failed)} method(s) failed: {', '.join(failed)}")
    return report
