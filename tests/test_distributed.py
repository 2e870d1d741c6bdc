"""Data-parallel training on CPU processes (gloo) through `aenerf-train --machine.num-devices 2`: every method that
trains data-parallel (the registry's `trains_data_parallel`) trains on two identities, each process reads only its
own identity's training frames, the replicas end with identical weights, and the checkpoint loads (and renders) like
any other run's; the other methods are refused before any process starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SSP_SMALL

from aenerf_ns.models.method_contract import talking_head_methods

VENV_BIN = Path(sys.executable).parent
READ_LOG_SITE = Path(__file__).resolve().parent / "read_log"
DATA_PARALLEL = [m.tiny for m in talking_head_methods() if m.trains_data_parallel]
"""CPU presets of the methods that train data-parallel (every other one is refused: the last test)."""
SINGLE_DEVICE = [m.tiny for m in talking_head_methods() if not m.trains_data_parallel]
"""CPU presets of the methods whose model cannot be replicated (`supports_data_parallel = False`)."""


def _small_sizes(preset: str, small_model: dict) -> dict:
    """Model sizes that make a preset's 2-process run quick (a method not named here trains at its preset's)."""
    return {
        "aenerf-tiny": {k: v for k, v in small_model.items() if "hash" not in k},
        "ssp-nerf-tiny": SSP_SMALL,
    }.get(preset, {})


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> Path:
    """Two 2-second, 32-pixel synthetic identities in one base-model folder (synth00, synth01)."""
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    root = tmp_path_factory.mktemp("people")
    write_synthetic_sample(root, identities=2, seconds=2.0, resolution=32)
    return root


def _train_frames(people: Path) -> set[tuple[str, str]]:
    """(identity folder, frame name) of every training frame of the base-model dataset."""
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    outputs = TalkingHeadDataParserConfig(data=people).setup().get_dataparser_outputs(split="train")
    return {(Path(p).parent.parent.name, Path(p).stem) for p in outputs.image_filenames}


def _reads(log: Path) -> set[tuple[str, str]]:
    """(identity folder, frame name) of every frame or parsing map a process read."""
    if not log.exists():
        return set()
    return {(Path(line).parent.parent.name, Path(line).stem) for line in log.read_text().split()}


def _train_two_processes(
    method: str, sizes: dict, people: Path, root: Path
) -> tuple[subprocess.CompletedProcess, Path]:
    cmd = [str(VENV_BIN / "aenerf-train"), method, "--data", str(people), "--output-dir", str(root / "runs")]
    cmd += ["--machine.device-type", "cpu", "--machine.num-devices", "2", "--max-num-iterations", "4"]
    cmd += ["--vis", "tensorboard", "--pipeline.datamanager.train-num-rays-per-batch", "64"]
    for key, value in sizes.items():
        cmd += [f"--pipeline.model.{key.replace('_', '-')}", str(value)]
    (root / "reads").mkdir(parents=True)
    env = dict(os.environ, AENERF_READ_LOG=str(root / "reads"))
    env["PYTHONPATH"] = os.pathsep.join([str(READ_LOG_SITE), str(Path(__file__).resolve().parent.parent)])
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=root, env=env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    (config,) = root.glob(f"runs/*/{method}/*/config.yml")
    return run, config


@pytest.mark.slow
@pytest.mark.parametrize("method", DATA_PARALLEL)
def test_two_cpu_processes_train_one_model_on_their_own_identities(method, two_people, small_model, tmp_path):
    from aenerf_ns.engine.distributed_launch import parameter_digest
    from aenerf_ns.inference.checkpoints import load_trained_pipeline

    run, config = _train_two_processes(method, _small_sizes(method, small_model), two_people, tmp_path)
    out = run.stdout + run.stderr

    # every process trained its own identity
    assert "rank 0/2: 25 training frames (identities synth00)" in out, out[-3000:]
    assert "rank 1/2: 25 training frames (identities synth01)" in out, out[-3000:]
    train = _train_frames(two_people)
    assert {name for name, _ in train} == {"synth00", "synth01"}
    rank0, rank1 = _reads(tmp_path / "reads" / "rank0.txt"), _reads(tmp_path / "reads" / "rank1.txt")
    assert rank0 & train and {name for name, _ in rank0 & train} == {"synth00"}, "rank 0 reads synth00's frames only"
    assert rank1 and {name for name, _ in rank1} == {"synth01"}, "rank 1 reads synth01's training frames only"
    assert rank1 <= train, "only rank 0 evaluates: rank 1 reads no evaluation frame"

    # the replicas ended identical, and the checkpoint holds those weights
    digests = dict(re.findall(r"rank (\d): parameter digest ([0-9a-f]{64})", out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], digests
    _, pipeline, _, step = load_trained_pipeline(config, test_mode="inference")
    assert step == 3
    assert parameter_digest(pipeline.model) == digests["0"]

    if method == "aenerf-tiny":  # and it renders a video with new audio, as any run does
        video = tmp_path / "talk.mp4"
        cmd = [str(VENV_BIN / "aenerf-render"), "--load-config", str(config), "--identity", "1"]
        cmd += ["--audio", str(two_people / "synth00" / "audio.wav"), "--output-path", str(video)]
        render = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert render.returncode == 0, render.stdout[-3000:] + render.stderr[-3000:]
        from aenerf_ns.inference.video_io import probe_media

        info = probe_media(video)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac") and info.num_frames == 50


@pytest.mark.slow
def test_two_machines_train_one_model(two_people, small_model, tmp_path):
    """`--machine.num-machines 2` with one process each, both on this machine: the multi-machine command of README,
    with machine 0's address in `--machine.dist-url`."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    machines = []
    for rank in (0, 1):
        cmd = [str(VENV_BIN / "aenerf-train"), "aenerf-tiny", "--data", str(two_people), "--output-dir", "runs"]
        cmd += ["--machine.device-type", "cpu", "--machine.num-devices", "1", "--machine.num-machines", "2"]
        cmd += ["--machine.machine-rank", str(rank), "--machine.dist-url", f"tcp://127.0.0.1:{port}"]
        cmd += ["--max-num-iterations", "3", "--vis", "tensorboard", "--pipeline.datamanager.train-num-rays-per-batch"]
        cmd += [
            "64",
            *(f"--pipeline.model.{k.replace('_', '-')}={v}" for k, v in small_model.items() if "hash" not in k),
        ]
        (tmp_path / f"machine{rank}").mkdir()
        machines.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path / f"machine{rank}"
            )
        )
    outs = [m.communicate(timeout=900)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert "rank 0/2: 25 training frames (identities synth00)" in outs[0]
    assert "rank 1/2: 25 training frames (identities synth01)" in outs[1]
    digests = [re.search(r"rank \d: parameter digest ([0-9a-f]{64})", out).group(1) for out in outs]
    assert digests[0] == digests[1]
    assert list((tmp_path / "machine0").glob("runs/*/aenerf-tiny/*/nerfstudio_models/step-000000002.ckpt"))
    assert not list((tmp_path / "machine1").glob("runs/**/*.ckpt")), "only global rank 0 writes checkpoints"


@pytest.mark.parametrize("method", SINGLE_DEVICE)
def test_a_method_that_trains_on_one_device_is_refused_before_any_process_starts(method, two_people, tmp_path):
    cmd = [str(VENV_BIN / "aenerf-train"), method, "--data", str(two_people), "--output-dir", "runs"]
    cmd += ["--machine.device-type", "cpu", "--machine.num-devices", "2", "--vis", "tensorboard"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert "trains on one device only" in run.stdout and "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists(), "nothing is written for a refused run"


def test_shards_cover_every_training_frame_once():
    import torch

    from aenerf_ns.data.training_shards import training_shard

    identity = torch.tensor([0] * 5 + [1] * 3 + [2] * 4)
    for world in (1, 2, 3, 5, 12):
        shards = [training_shard(identity, rank, world) for rank in range(world)]
        frames = torch.cat([s.frame_indices for s in shards]).sort().values
        assert torch.equal(frames, torch.arange(12)), world
        if world <= 3:  # whole identities, never split between processes
            for s in shards:
                assert set(identity[s.frame_indices].tolist()) == set(s.identities) and s.by_identity
        else:  # more processes than identities: frames are split instead
            assert not shards[0].by_identity
    with pytest.raises(ValueError, match="cannot be shared"):
        training_shard(identity, 12, 13)
