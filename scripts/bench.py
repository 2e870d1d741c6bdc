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

import tyro

from aenerf_ns.bench.bench_suite import PRESETS, BenchArgs, run_bench

__all__ = ["PRESETS", "BenchArgs", "main", "entrypoint"]


def main(args: BenchArgs) -> dict:
    """Run the benchmark with the parsed settings (`bench_suite.run_bench`)."""
    return run_bench(args)


def entrypoint() -> None:
    from aenerf_ns.utils.cli_output import run_cli

    args = tyro.cli(BenchArgs)
    run_cli("aenerf-bench", lambda: main(args), args.output)


if __name__ == "__main__":
    entrypoint()
