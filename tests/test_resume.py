"""Runs that survive being killed: checkpoints are written atomically, and a run killed with SIGKILL
resumes from its last checkpoint with `--load-dir`, at the right step, with the same identity buffers."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from aenerf_ns.utils.safe_checkpoint import load_checkpoint

IDENTITY_BUFFERS = ("reference_images", "reference_audio", "background_plates", "default_audio")
"""Model buffers built from the identities' data (not trained): a resumed run must hold the same ones."""


def _stub_trainer(checkpoint_dir: Path, save_only_latest: bool = True):
    """A CheckpointingTrainer with just what `save_checkpoint` reads."""
    from aenerf_ns.engine.checkpointing_trainer import CheckpointingTrainer

    trainer = CheckpointingTrainer.__new__(CheckpointingTrainer)
    trainer.checkpoint_dir = checkpoint_dir
    trainer.config = SimpleNamespace(save_only_latest_checkpoint=save_only_latest)
    trainer.pipeline = torch.nn.Linear(3, 2)
    trainer.optimizers = SimpleNamespace(optimizers={}, schedulers={})
    trainer.grad_scaler = torch.amp.GradScaler("cpu", enabled=False)
    return trainer


def test_a_save_interrupted_midway_leaves_the_last_complete_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "run" / "nerfstudio_models"
    trainer = _stub_trainer(folder)
    trainer.save_checkpoint(10)
    assert [p.name for p in folder.iterdir()] == ["step-000000010.ckpt"]

    real_save = torch.save

    def killed_while_writing(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(20)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in folder.iterdir()] == ["step-000000010.ckpt"], "the partial file stays out of the folder"
    assert load_checkpoint(folder / "step-000000010.ckpt")["step"] == 10

    trainer.save_checkpoint(30)  # the next save clears the leftover and replaces the older checkpoint
    assert [p.name for p in folder.iterdir()] == ["step-000000030.ckpt"]
    assert not list((folder.parent / ".checkpoint_in_progress").iterdir())


def _wait_for_checkpoint(process: subprocess.Popen, folder: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(folder.glob("*/aenerf-tiny/*/nerfstudio_models/step-*.ckpt")):
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_checkpoint(sample_dataset, ns_train, tmp_path):
    first = tmp_path / "first"
    cmd = ns_train(sample_dataset, first, iterations=100000, small=True) + ["--steps-per-save", "3"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        _wait_for_checkpoint(process, first)
        time.sleep(1.0)  # let it train (and perhaps start saving) past the first checkpoint
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (models,) = first.glob("*/aenerf-tiny/*/nerfstudio_models")
    (killed_ckpt,) = models.glob("step-*.ckpt")  # only the latest is kept, and it is complete
    killed = load_checkpoint(killed_ckpt)
    step = killed["step"]
    assert step >= 3 and step % 3 == 0

    resumed_dir = tmp_path / "resumed"  # nerfstudio counts --max-num-iterations from the loaded step on
    resume = ns_train(sample_dataset, resumed_dir, iterations=4, small=True) + ["--load-dir", str(models)]
    run = subprocess.run(resume, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Done loading Nerfstudio checkpoint" in run.stdout
    (final_ckpt,) = resumed_dir.glob("*/aenerf-tiny/*/nerfstudio_models/step-*.ckpt")
    final = load_checkpoint(final_ckpt)
    assert final["step"] == step + 4, "steps step+1 .. step+4 ran after the resume"
    # the optimizer went on counting from the killed run's steps: it was restored, not restarted
    adam_steps = [float(s["step"]) for s in final["optimizers"]["fields"]["state"].values()]
    assert max(adam_steps) == step + 5
    for name in IDENTITY_BUFFERS:
        key = f"_model.{name}"
        assert torch.equal(final["pipeline"][key], killed["pipeline"][key]), name
    trained = [k for k in killed["pipeline"] if k.endswith("weight") and "field" in k]
    assert trained and any(not torch.equal(final["pipeline"][k], killed["pipeline"][k]) for k in trained)
