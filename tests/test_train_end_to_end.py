"""Fine-tuning: a new `ns-train aenerf-tiny` run that starts from a finished run's checkpoint (`load_base`).

Training, loading, rendering and evaluating a run of every method is test_method_contract's."""

import subprocess

import pytest


@pytest.mark.slow
def test_a_new_run_starts_from_a_finished_runs_checkpoint(method_run, sample_dataset, ns_train, tmp_path):
    """The documented fine-tune command, and a clear error when the base checkpoint is missing."""
    base = method_run("aenerf-tiny").parent / "nerfstudio_models"
    assert list(base.glob("step-*.ckpt")), "training must leave a checkpoint"
    tuned = tmp_path / "tuned"
    cmd = ns_train(sample_dataset, tuned, iterations=2)
    run = subprocess.run(
        cmd + ["--pipeline.model.load-base", str(base)], capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert list(tuned.glob("*/aenerf-tiny/*/nerfstudio_models/step-*.ckpt"))
    missing = subprocess.run(
        cmd + ["--pipeline.model.load-base", str(tmp_path / "nowhere.ckpt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert missing.returncode != 0 and "nowhere.ckpt does not exist" in missing.stdout + missing.stderr
