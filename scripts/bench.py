"""`aenerf-bench`: every method trained and scored on the same data with the same budget, in one run.

Methods: nerfstudio's nerfacto (static) and D-NeRF (time-conditioned), both audio-blind; AE-NeRF with
tri-plane and hash-grid fields, four of its ablations and its paper engine; SSP-NeRF; the Gaussian-splatting
aenerf-gs (see `bench_methods`). Each
trains in a process of its own under the same step or wall-clock budget and is scored by the same code on
the same held-out frames (`bench_run`).

Writes into `--output`: `bench.json` (every figure), `psnr_curve.png` (held-out PSNR against training
seconds), `heldout_grid.png` (ground truth and every method on four held-out frames) and one folder per
method. Prints the results table (timings also as ratios to nerfacto from the same run) and the
render-cost-versus-resolution table. A re-run reuses every method already finished with the same settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import tyro

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


def add_ratios(results: dict[str, dict], reference: str) -> None:
    """Timings divided by the reference method's from the same run (absent when it did not run)."""
    ref = results.get(reference)
    for result in results.values():
        if ref is None or "error" in ref or "error" in result:
            continue
        result["train_time_ratio"] = result["train_seconds_per_1k_steps"] / ref["train_seconds_per_1k_steps"]
        result["render_time_ratio"] = result["render_seconds_per_frame"] / ref["render_seconds_per_frame"]


def _fmt(value, spec: str = ".2f") -> str:
    missing = value is None or isinstance(value, str) or (isinstance(value, float) and value != value)
    return "-" if missing else format(value, spec)  # a string is a skip reason, kept in bench.json


RESULT_COLUMNS = (
    ("method", "method"),
    ("steps", "training steps done within the budget"),
    ("PSNR", "held-out PSNR (dB)"),
    ("SSIM", "held-out SSIM"),
    ("low PSNR", "held-out PSNR over the lower face (dB)"),
    ("LMD", "mouth landmark distance to the ground truth (pixels at 512 px height)"),
    ("mouth r", "correlation of the rendered mouth opening with the ground truth's"),
    ("mouth amp", "spread of the rendered mouth opening over the ground truth's (1: as much motion)"),
    ("sync", "weight-free sync score of the rendered mouth with the speech at lag 0"),
    ("sync lag", "lag (frames) of the rendered mouth behind the speech where they agree best, (score)"),
    ("LSE-C", "SyncNet confidence (- without SyncNet weights)"),
    ("LSE-D", "SyncNet distance (- without SyncNet weights)"),
    ("s/1k", "training seconds per 1000 steps"),
    ("x", "the same as a multiple of nerfacto's"),
    ("render s", "seconds to render one held-out frame"),
    ("x", "the same as a multiple of nerfacto's"),
    ("peak MB", "peak memory of training"),
)
"""Column headings of the results table and what each holds."""


def _truth_line(results: dict[str, dict], gpu: bool) -> str:
    """The ground truth's own sync figures (the yardstick of the sync columns), and what peak MB means."""
    scored = next((r for r in results.values() if isinstance(r.get("av_sync_ground_truth"), dict)), None)
    peak = "peak CUDA memory allocated in training" if gpu else "peak resident memory of the training process"
    if scored is None:
        return f"peak MB: {peak}"
    truth = scored["av_sync_ground_truth"]
    lse = scored.get("lse_c_ground_truth")
    lse_text = (
        f", LSE-C {lse:.2f} / LSE-D {scored['lse_d_ground_truth']:.2f}"
        if isinstance(lse, float)
        else f"; LSE-C/LSE-D {lse}"
    )
    lag = truth.get("best_offset_frames")
    return (
        f"ground truth's own sync: {_fmt(truth['correlation'])} at lag 0, best lag {_fmt(lag, '+d')} "
        f"frames ({_fmt(truth['best_correlation'])}){lse_text}; peak MB: {peak}"
    )


def results_table(results: dict[str, dict], title: str):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for heading, _ in RESULT_COLUMNS:
        table.add_column(heading, justify="left" if heading == "method" else "right", no_wrap=True)
    for name, r in results.items():
        if "error" in r:
            table.add_row(name, f"[red]failed: {r['error'][:80]}[/red]", *[""] * (len(RESULT_COLUMNS) - 2))
            continue
        sync = r["av_sync"]
        lag = (
            f"{sync['best_offset_frames']:+d} ({_fmt(sync['best_correlation'])})"
            if isinstance(sync, dict) and sync.get("best_offset_frames") is not None
            else "-"
        )
        table.add_row(
            name,
            str(r["steps"]),
            _fmt(r["psnr"]),
            _fmt(r["ssim"], ".3f"),
            _fmt(r["lower_face_psnr"]),
            _fmt(r.get("lmd")),
            _fmt(r["mouth_opening"]["correlation"]),
            _fmt(r["mouth_opening"]["motion_ratio"]),
            _fmt(sync.get("correlation") if isinstance(sync, dict) else None),
            lag,
            _fmt(r.get("lse_c")),
            _fmt(r.get("lse_d")),
            _fmt(r["train_seconds_per_1k_steps"], ".0f"),
            _fmt(r.get("train_time_ratio")),
            _fmt(r["render_seconds_per_frame"]),
            _fmt(r.get("render_time_ratio")),
            _fmt(r["train_peak_mb"], ".0f"),
        )
    return table


def scaling_table(results: dict[str, dict], memory_label: str):
    from rich import box
    from rich.table import Table

    rows = {name: r["scaling"] for name, r in results.items() if r.get("scaling")}
    sizes = sorted({row["height"] for scaling in rows.values() for row in scaling})
    table = Table(title=f"Render cost of one frame against image size: seconds / {memory_label}", box=box.SIMPLE_HEAD)
    table.add_column("method")
    for size in sizes:
        table.add_column(f"{size} px", justify="right")
    for name, scaling in rows.items():
        by_size = {row["height"]: row for row in scaling}
        table.add_row(
            name,
            *[
                f"{by_size[s]['seconds']:.2f} s / {by_size[s]['added_mb']:.0f} MB" if s in by_size else "-"
                for s in sizes
            ],
        )
    return table


def evaluations_table(results: dict[str, dict]):
    """Points each network runs on and linear-layer GFLOP per 512x512 frame, for methods that measured them.
    Networks run less than once per pixel in every method (the audio encoder: once per frame) are left out."""
    from rich import box
    from rich.table import Table

    rows = {name: r["network_evaluations"] for name, r in results.items() if r.get("network_evaluations")}
    networks = sorted({n for e in rows.values() for n, per_pixel in e["points_per_pixel"].items() if per_pixel >= 0.5})
    table = Table(
        title="Network evaluations per 512x512 frame: millions of points each network runs on (one held-out "
        "render, scaled by pixel count)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("method")
    for network in networks:
        table.add_column(network.removesuffix("_sampling"), justify="right")
    table.add_column("all", justify="right")
    table.add_column("linear GFLOP", justify="right")
    for name, e in rows.items():
        cells = [_fmt(e["points"].get(n, 0.0) / 1e6, ".1f") for n in networks]
        table.add_row(name, *cells, _fmt(e["total_points"] / 1e6, ".1f"), _fmt(e["total_linear_gflop"], ".0f"))
    return table


def plot_curves(path: Path, results: dict[str, dict], roles: dict[str, str]) -> None:
    """Held-out PSNR against training seconds, one line per method, as a PNG (each method keeps its colour
    from run to run: the n-th method of `roles` is matplotlib's colour Cn, from the eleventh on Dark2's)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    styles = {"peer": ":", "ours": "-", "ablation": "--"}
    colours = {name: f"C{k}" if k < 10 else plt.get_cmap("Dark2")((k - 10) % 8) for k, name in enumerate(roles)}
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, r in results.items():
        if "error" in r:
            continue
        seconds = [p["seconds"] for p in r["curve"]]
        values = [p["psnr"] for p in r["curve"]]
        style = styles.get(roles.get(name), "-")
        ax.plot(seconds, values, style, color=colours.get(name), marker="o", markersize=3, label=name)
    ax.set_xlabel("training wall-clock seconds (evaluation excluded)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_grid(path: Path, output: Path, names: list[str]) -> None:
    """Ground truth, then every finished method, on the same four held-out frames (one row each)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from aenerf_ns.utils.atomic_io import atomic_save_png

    rows = []
    truth = next((output / n / "truth_strip.png" for n in names if (output / n / "truth_strip.png").is_file()), None)
    for label, file in [("ground truth", truth)] + [(n, output / n / "strip.png") for n in names]:
        if file is None or not file.is_file():
            continue
        strip = np.array(Image.open(file).convert("RGB"))
        if strip.shape[0] < 128:  # small CPU-preset frames, enlarged to be seen
            factor = -(-128 // strip.shape[0])
            strip = strip.repeat(factor, 0).repeat(factor, 1)
        tag = Image.new("RGB", (150, strip.shape[0]), (255, 255, 255))
        ImageDraw.Draw(tag).text((4, strip.shape[0] // 2 - 6), label, fill=(0, 0, 0))
        rows.append(np.concatenate([np.array(tag), strip], 1))
    if rows:
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        atomic_save_png(path, np.concatenate(rows, 0))


def main(args: BenchArgs) -> dict:
    from rich.console import Console

    from aenerf_ns.bench.bench_methods import BY_NAME, METHODS, REFERENCE
    from aenerf_ns.evaluation.metric_reports import json_safe
    from aenerf_ns.utils.atomic_io import atomic_write_bytes

    console = Console(width=None if sys.stdout.isatty() else 140)  # logs keep the table's rows whole
    unknown = [m for m in args.methods if m not in BY_NAME]
    if unknown:
        raise SystemExit(f"aenerf-bench: error: unknown method(s) {unknown}; choose from {list(BY_NAME)}")
    names = [m.name for m in METHODS if not args.methods or m.name in args.methods]
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
    console.print(_truth_line(results, gpu))
    if any(r.get("scaling") for r in results.values()):
        console.print(scaling_table(results, memory_label))
    if any(r.get("network_evaluations") for r in results.values()):
        console.print(evaluations_table(results))

    roles = {m.name: m.role for m in METHODS}
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


def entrypoint() -> None:
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(BenchArgs)
    run_cli("aenerf-bench", lambda: main(args), args.output)


if __name__ == "__main__":
    entrypoint()
