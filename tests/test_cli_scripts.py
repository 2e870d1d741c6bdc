"""The console scripts are thin: each parses its flags with tyro and hands the parsed settings to one package function.

The package functions are replaced by recorders here, so these tests run in a moment and check only the hand-over
(flags parsed into the package's settings dataclass, the function called once with them, its result returned).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def _run_entrypoint(monkeypatch, module, function: str, argv: list[str]) -> list:
    """Run `module.entrypoint()` with `argv`, `module.<function>` replaced by a recorder; the recorded calls."""
    calls: list = []

    def record(*args):
        calls.append(args)
        return {"recorded": True}

    monkeypatch.setattr(module, function, record)
    monkeypatch.setattr(sys, "argv", [module.__name__, *argv])
    module.entrypoint()
    return calls


def test_bench_hands_its_settings_to_run_bench(monkeypatch, tmp_path):
    import aenerf_ns.scripts.bench as script
    from aenerf_ns.bench.bench_suite import BenchArgs

    argv = ["--output", str(tmp_path), "--methods", "nerfacto", "aenerf", "--budget-steps", "7", "--fresh"]
    (call,) = _run_entrypoint(monkeypatch, script, "run_bench", argv)
    (args,) = call
    assert isinstance(args, BenchArgs)
    assert args.output == tmp_path and args.methods == ("nerfacto", "aenerf") and args.budget_steps == 7 and args.fresh


def test_method_bench_hands_its_settings_to_run_method_bench(monkeypatch, tmp_path):
    import aenerf_ns.scripts.method_bench as script
    from aenerf_ns.bench.method_bench_suite import MethodBenchArgs

    argv = ["--output", str(tmp_path), "--steps", "3", "--skip", "ssp", "ablation", "--position-encoding", "hashgrid"]
    (call,) = _run_entrypoint(monkeypatch, script, "run_method_bench", argv)
    (args,) = call
    assert isinstance(args, MethodBenchArgs)
    assert args.steps == 3 and args.skip == ("ssp", "ablation") and args.position_encoding == "hashgrid"


def test_method_bench_builds_our_methods_by_name():
    """The comparisons name our methods as `bench_methods.OurMethod` (no list of their own)."""
    import inspect

    from aenerf_ns.bench import bench_methods, method_comparisons

    assert inspect.signature(method_comparisons._config).parameters["method"].annotation == "OurMethod"
    assert method_comparisons.OurMethod is bench_methods.OurMethod


def test_sync_check_hands_its_settings_to_run_sync_check(monkeypatch, tmp_path):
    import aenerf_ns.scripts.sync_check as script
    from aenerf_ns.evaluation.video_sync_check import SyncCheckArgs

    argv = ["--video", str(tmp_path / "v.mp4"), "--start", "1.5", "--shifts", "2", "6", "--output", str(tmp_path / "r")]
    (call,) = _run_entrypoint(monkeypatch, script, "run_sync_check", argv)
    (args,) = call
    assert isinstance(args, SyncCheckArgs)
    assert args.video == tmp_path / "v.mp4" and args.start == 1.5 and args.shifts == (2, 6)


def test_render_hands_its_settings_to_render_video(monkeypatch, tmp_path):
    import aenerf_ns.scripts.render as script
    from aenerf_ns.inference.video_render import RenderArgs

    config = tmp_path / "config.yml"
    argv = ["--load-config", str(config), "--audio", "a.wav", "--pose-source", "spiral", "--rendered-output-names"]
    argv += ["rgb", "depth", "--watermark"]
    (call,) = _run_entrypoint(monkeypatch, script, "render_video", argv)
    (args,) = call
    assert isinstance(args, RenderArgs)
    assert args.load_config == config and args.audio == Path("a.wav") and args.pose_source == "spiral"
    assert args.rendered_output_names == ["rgb", "depth"] and args.watermark


def test_eval_hands_its_settings_to_evaluate_run(monkeypatch, tmp_path):
    import aenerf_ns.scripts.eval as script
    from aenerf_ns.evaluation.evaluate_run import EvalArgs

    argv = ["--load-config", str(tmp_path / "config.yml"), "--max-frames", "9", "--identity", "1"]
    (call,) = _run_entrypoint(monkeypatch, script, "evaluate_run", argv)
    (args,) = call
    assert isinstance(args, EvalArgs) and args.max_frames == 9 and args.identity == 1


def test_sample_hands_its_settings_and_aenerf_tiny_to_the_sample_job(monkeypatch, tmp_path):
    import aenerf_ns.scripts.run_sample as script
    from aenerf_ns.engine.sample_job import SampleArgs

    argv = ["--output", str(tmp_path), "--iterations", "3", "--render-downscale", "2"]
    (call,) = _run_entrypoint(monkeypatch, script, "run_sample_job", argv)
    args, make_config = call
    assert isinstance(args, SampleArgs) and args.iterations == 3 and args.render_downscale == 2.0
    assert make_config().method_name == "aenerf-tiny"


@pytest.mark.parametrize("module", ["bench", "method_bench", "sync_check", "render", "eval", "run_sample"])
def test_scripts_define_no_logic_of_their_own(module):
    """A thin script: its functions are `main`, `entrypoint` and small helpers (a few lines each)."""
    import ast
    import importlib

    source = Path(importlib.import_module(f"aenerf_ns.scripts.{module}").__file__).read_text()
    functions = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)]
    assert {f.name for f in functions} >= {"main", "entrypoint"}
    assert all(f.end_lineno - f.lineno < 12 for f in functions), [f.name for f in functions]
    assert not [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)]
