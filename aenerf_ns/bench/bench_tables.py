"""The tables `aenerf-bench` prints: results, render cost against image size, network evaluations per frame.

They live apart from the run (`bench_suite`) so that they can be built from a finished `bench.json` alone; every
figure is formatted here, and a figure that was skipped (a "skipped: ..." string in bench.json) shows as "-".
"""

from __future__ import annotations


def add_ratios(results: dict[str, dict], reference: str) -> None:
    """Timings divided by the reference method's from the same run (absent when it did not run)."""
    ref = results.get(reference)
    for result in results.values():
        if ref is None or "error" in ref or "error" in result:
            continue
        result["train_time_ratio"] = result["train_seconds_per_1k_steps"] / ref["train_seconds_per_1k_steps"]
        result["render_time_ratio"] = result["render_seconds_per_frame"] / ref["render_seconds_per_frame"]


def fmt(value, spec: str = ".2f") -> str:
    """A table cell: the number in `spec`, or "-" for a missing or skipped figure."""
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


def truth_line(results: dict[str, dict], gpu: bool) -> str:
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
        f"ground truth's own sync: {fmt(truth['correlation'])} at lag 0, best lag {fmt(lag, '+d')} "
        f"frames ({fmt(truth['best_correlation'])}){lse_text}; peak MB: {peak}"
    )


def results_table(results: dict[str, dict], title: str):
    """The results table: one row per method, the columns of `RESULT_COLUMNS` (a failed method: its error)."""
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
            f"{sync['best_offset_frames']:+d} ({fmt(sync['best_correlation'])})"
            if isinstance(sync, dict) and sync.get("best_offset_frames") is not None
            else "-"
        )
        table.add_row(
            name,
            str(r["steps"]),
            fmt(r["psnr"]),
            fmt(r["ssim"], ".3f"),
            fmt(r["lower_face_psnr"]),
            fmt(r.get("lmd")),
            fmt(r["mouth_opening"]["correlation"]),
            fmt(r["mouth_opening"]["motion_ratio"]),
            fmt(sync.get("correlation") if isinstance(sync, dict) else None),
            lag,
            fmt(r.get("lse_c")),
            fmt(r.get("lse_d")),
            fmt(r["train_seconds_per_1k_steps"], ".0f"),
            fmt(r.get("train_time_ratio")),
            fmt(r["render_seconds_per_frame"]),
            fmt(r.get("render_time_ratio")),
            fmt(r["train_peak_mb"], ".0f"),
        )
    return table


def scaling_table(results: dict[str, dict], memory_label: str):
    """Render seconds and memory added for one frame, per method and image height."""
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
        cells = [fmt(e["points"].get(n, 0.0) / 1e6, ".1f") for n in networks]
        table.add_row(name, *cells, fmt(e["total_points"] / 1e6, ".1f"), fmt(e["total_linear_gflop"], ".0f"))
    return table
