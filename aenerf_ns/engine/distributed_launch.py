"""Data-parallel training on several processes, on GPUs (NCCL) or CPU processes (gloo).

This is nerfstudio's own launcher (`nerfstudio.scripts.train.launch`: one process per device, the same
`--machine.num-devices`, `--machine.num-machines`, `--machine.machine-rank` and `--machine.dist-url`, the same
trainer and `train_loop`), except where it refuses or breaks:

- nerfstudio's worker asserts that CUDA is present before it starts any process group, so CPU processes over gloo
  (a machine without GPUs, or the test suite) cannot run; here the backend follows `--machine.device-type`;
- each process gets the usual `RANK`, `LOCAL_RANK` and `WORLD_SIZE` environment variables;
- when training ends, every rank's parameters and buffers are compared (a digest of their bytes): replicas that
  drifted apart are an error, not a silently wrong checkpoint.

One process (`--machine.num-devices 1`) goes straight to nerfstudio's launcher.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE

TIMEOUT = timedelta(minutes=30)
"""How long a collective operation waits for the other processes (nerfstudio's value)."""


class ReplicasDiverged(RuntimeError):
    """The processes of a data-parallel run ended with different parameters."""


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's and buffer's name, shape and bytes, in registration order (identical replicas,
    identical digest; a run's checkpoint loaded into a fresh model gives the digest of the run's final weights)."""
    digest = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        data = tensor.detach().to("cpu", torch.float64 if tensor.is_floating_point() else torch.int64).contiguous()
        digest.update(f"{name}{tuple(data.shape)}".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_loop(local_rank: int, world_size: int, config: TrainerConfig, global_rank: int = 0):
    """One process's training (nerfstudio's `train_loop`); returns the trainer."""
    _seed(config.machine.seed + global_rank)
    trainer = config.setup(local_rank=local_rank, world_size=world_size)
    trainer.setup()
    trainer.train()
    return trainer


def check_replicas(model: torch.nn.Module) -> str:
    """Compare this rank's parameters with every other rank's; raise `ReplicasDiverged` when they differ."""
    mine = parameter_digest(model)
    digests: list = [None] * dist.get_world_size()
    dist.all_gather_object(digests, mine)
    CONSOLE.print(f"rank {dist.get_rank()}: parameter digest {mine}")
    if len(set(digests)) != 1:
        raise ReplicasDiverged(f"the processes ended with different parameters: {digests}")
    return mine


def _worker(
    local_rank: int,
    world_size: int,
    num_devices_per_machine: int,
    machine_rank: int,
    dist_url: str,
    config: TrainerConfig,
) -> None:
    global_rank = machine_rank * num_devices_per_machine + local_rank
    os.environ.update(RANK=str(global_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size))
    on_gpu = config.machine.device_type == "cuda"
    if on_gpu:
        torch.cuda.set_device(local_rank)
    else:  # the machine's cores shared among its processes, not each process using all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_devices_per_machine))
    dist.init_process_group(
        backend="nccl" if on_gpu else "gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=TIMEOUT,
    )
    # nerfstudio's per-machine process group, used by its `comms` helpers
    for machine in range(world_size // num_devices_per_machine):
        ranks = list(range(machine * num_devices_per_machine, (machine + 1) * num_devices_per_machine))
        group = dist.new_group(ranks)
        if machine == machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    try:
        trainer = train_loop(local_rank, world_size, config, global_rank)
        check_replicas(trainer.pipeline.model)
        comms.synchronize()
    finally:
        dist.destroy_process_group()


def launch(config: TrainerConfig) -> None:
    """Train `config` on `--machine.num-devices` processes of this machine (times `--machine.num-machines`).

    A method that cannot train data-parallel is refused by `aenerf-train` before anything is written (and by the
    pipeline in every process, as a last guard)."""
    from nerfstudio.scripts.train import launch as nerfstudio_launch
    from nerfstudio.scripts.train import train_loop as nerfstudio_train_loop

    machine = config.machine
    world_size = machine.num_machines * machine.num_devices
    if world_size < 1:
        raise ValueError("--machine.num-devices and --machine.num-machines must be at least 1")
    if world_size == 1:
        nerfstudio_launch(
            nerfstudio_train_loop, 1, device_type=machine.device_type, config=config, dist_url=machine.dist_url
        )
        return
    if machine.device_type == "cuda":
        available = torch.cuda.device_count()
        if available < machine.num_devices:
            raise RuntimeError(
                f"--machine.num-devices {machine.num_devices} needs that many GPUs on this machine; "
                f"{available} are visible (for CPU processes add --machine.device-type cpu)"
            )
    elif machine.device_type != "cpu":
        raise ValueError(f"data-parallel training runs on cuda or cpu devices, not {machine.device_type!r}")
    dist_url = machine.dist_url
    if dist_url == "auto":
        if machine.num_machines > 1:
            raise ValueError(
                "--machine.dist-url auto only works on one machine: give every machine the same "
                "tcp://<address of machine 0>:<port>"
            )
        dist_url = f"tcp://127.0.0.1:{_free_local_port()}"
    mp.spawn(
        _worker,
        nprocs=machine.num_devices,
        args=(world_size, machine.num_devices, machine.machine_rank, dist_url, config),
        join=True,
    )
