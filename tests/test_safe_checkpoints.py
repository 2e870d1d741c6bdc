"""Checkpoints and weights files are read as tensors and numbers only: a crafted file cannot run code.

Each crafted file pickles an object whose unpickling would create a marker file (`pathlib.Path.touch`); a full
unpickle does create it (checked, so the tests can fail), and every loader of this package refuses the file with a
message naming the file and the global it asked for, before anything is created.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aenerf_ns.utils.safe_checkpoint import CheckpointRefusedError, load_checkpoint, plain_numbers

VENV_BIN = Path(sys.executable).parent


class _TouchOnLoad:
    """Unpickles into a call of `Path.touch(marker)`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def write_crafted_checkpoint(path: Path, marker: Path, like: dict | None = None) -> Path:
    """A checkpoint shaped like `like` (or a minimal one) with the code-running object among its weights."""
    state = dict(like) if like else {"step": 1, "pipeline": {}}
    state["pipeline"] = {**state["pipeline"], "_model.crafted": _TouchOnLoad(marker)}
    torch.save(state, path)
    return path


def _refused(text: str, path: Path) -> bool:
    return "refusing to load" in text and str(path) in text and "global" in text


def test_full_unpickling_would_run_the_crafted_code(tmp_path):
    """The premise of the other tests: a plain `torch.load(weights_only=False)` of the file creates the marker."""
    marker = tmp_path / "created-by-unpickling"
    crafted = write_crafted_checkpoint(tmp_path / "step-000000009.ckpt", marker)
    code = f"import torch; torch.load({str(crafted)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert marker.exists()


def test_safe_loader_refuses_naming_file_and_global(tmp_path):
    marker = tmp_path / "created-by-unpickling"
    crafted = write_crafted_checkpoint(tmp_path / "crafted.ckpt", marker)
    with pytest.raises(CheckpointRefusedError) as err:
        load_checkpoint(crafted)
    assert _refused(str(err.value), crafted) and not marker.exists()


def test_safe_loader_reads_numbers_and_tensors(tmp_path):
    state = {"lr": np.float64(0.5), "ids": (np.int64(3), np.float32(0.25)), "w": torch.ones(2), "flag": np.bool_(1)}
    torch.save(state, tmp_path / "numbers.ckpt")
    loaded = load_checkpoint(tmp_path / "numbers.ckpt")
    assert loaded["lr"] == 0.5 and loaded["ids"] == (3, 0.25) and torch.equal(loaded["w"], torch.ones(2))
    plain = plain_numbers(loaded)
    assert type(plain["lr"]) is float and type(plain["ids"][0]) is int and type(plain["flag"]) is bool
    assert torch.equal(plain["w"], torch.ones(2))


def test_damaged_file_is_not_called_unsafe(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="not a readable torch checkpoint") as err:
        load_checkpoint(junk)
    assert not isinstance(err.value, CheckpointRefusedError) and str(junk) in str(err.value)


@pytest.fixture
def crafted_run(tiny_run, tmp_path) -> tuple[Path, Path]:
    """A copy of the tiny run whose newest checkpoint is crafted; (config.yml, marker)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run.parent, run)
    (ckpt,) = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    marker = tmp_path / "created-by-unpickling"
    write_crafted_checkpoint(run / "nerfstudio_models" / "step-000000999.ckpt", marker, torch.load(ckpt))
    return run / "config.yml", marker


@pytest.mark.slow
def test_aenerf_render_and_eval_refuse_a_crafted_checkpoint(crafted_run, speech_wav, sample_dataset, tmp_path):
    config, marker = crafted_run
    crafted = config.parent / "nerfstudio_models" / "step-000000999.ckpt"
    commands = {
        "aenerf-render": ["--audio", str(speech_wav), "--output-path", str(tmp_path / "out.mp4")],
        "aenerf-eval": ["--max-frames", "2"],
    }
    for program, extra in commands.items():
        argv = [str(VENV_BIN / program), "--load-config", str(config), "--data", str(sample_dataset), *extra]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert run.returncode != 0, f"{program} loaded a crafted checkpoint:\n{run.stdout[-2000:]}"
        assert _refused(run.stderr, crafted), f"{program}:\n{run.stderr[-3000:]}"
        assert not marker.exists(), f"{program} ran code from the checkpoint"


@pytest.mark.slow
def test_load_base_refuses_a_crafted_checkpoint(tiny_run, sample_dataset, ns_train, tmp_path):
    (ckpt,) = sorted((tiny_run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    marker = tmp_path / "created-by-unpickling"
    crafted = write_crafted_checkpoint(tmp_path / "base.ckpt", marker, torch.load(ckpt))
    argv = ns_train(sample_dataset, tmp_path / "runs", iterations=1, small=True)
    run = subprocess.run(
        [*argv, "--pipeline.model.load-base", str(crafted)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode != 0 and _refused(run.stdout + run.stderr, crafted), run.stderr[-3000:]
    assert not marker.exists()


def test_syncnet_weights_refuse_a_crafted_file(tmp_path):
    from aenerf_ns.evaluation.syncnet_network import SyncNetWeightsError, load_syncnet

    marker = tmp_path / "created-by-unpickling"
    crafted = tmp_path / "syncnet_v2.model"
    torch.save({"netcnnaud.0.weight": torch.zeros(1), "evil": _TouchOnLoad(marker)}, crafted)
    with pytest.raises(SyncNetWeightsError) as err:
        load_syncnet(crafted)
    assert _refused(str(err.value), crafted) and not marker.exists()


def test_no_full_unpickling_left_in_the_package():
    root = Path(__file__).resolve().parent.parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("aenerf_ns", "scripts", "method_configs", "dataparsers")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "weights_only=False" in line
    ]
    assert not found, found
