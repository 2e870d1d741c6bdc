"""Shared fixtures: a small synthetic dataset generated once per test session."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the suite measures with random SyncNet weights it writes itself; real ones on this machine must not change results
os.environ["AENERF_SYNCNET_WEIGHTS"] = "/nonexistent/aenerf-tests/syncnet_v2.model"
# no network at run time: this process and every process the tests start refuse all but loopback connections
OFFLINE = Path(__file__).resolve().parent / "offline"


def _load_offline(name: str):
    spec = importlib.util.spec_from_file_location(f"offline_{name}", OFFLINE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# first, while no thread runs: a network namespace with loopback only, for every process, Python or not
NETWORK_NAMESPACE_PROBLEM = _load_offline("network_namespace").isolate_network()
NETWORK_NAMESPACE_ENV = "AENERF_TEST_NETWORK_NAMESPACE"
"""Set for the tests and their children: "isolated", or "unavailable: <reason>"."""
os.environ[NETWORK_NAMESPACE_ENV] = "isolated" if NETWORK_NAMESPACE_PROBLEM is None else "unavailable"
os.environ[NETWORK_NAMESPACE_ENV] += "" if NETWORK_NAMESPACE_PROBLEM is None else f": {NETWORK_NAMESPACE_PROBLEM}"
if NETWORK_NAMESPACE_PROBLEM is None:  # gloo (multi-process tests) would look for the host name's interface
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
# and in Python processes (this one; children through PYTHONPATH) a socket guard with a clear message
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OFFLINE), os.environ.get("PYTHONPATH")]))
_load_offline("sitecustomize")


def _network_line() -> str:
    if NETWORK_NAMESPACE_PROBLEM is None:
        return "network: isolated namespace, loopback only (every child process too); Python socket guard on"
    return (
        f"network: NO isolated namespace ({NETWORK_NAMESPACE_PROBLEM}); only the Python socket guard refuses the "
        "network, non-Python children (ffmpeg, Chromium) are not covered"
    )


def pytest_report_header(config) -> str:
    return _network_line()


def pytest_terminal_summary(terminalreporter) -> None:
    """Said at the end as well (pytest -q shows no header) when the namespace could not be made."""
    if NETWORK_NAMESPACE_PROBLEM is not None:
        terminalreporter.write_line(_network_line(), yellow=True)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """A 3-second, 48-pixel synthetic identity (75 frames at 25 fps). Treat as read-only."""
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    root = tmp_path_factory.mktemp("synthetic")
    metas = write_synthetic_sample(root, identities=1, seconds=3.0, resolution=48)
    return metas[0].root


SMALL_MODEL = dict(
    num_coarse_samples=6,
    num_importance_samples=6,
    hidden_dim=32,
    num_layers=2,
    audio_code_dim=8,
    reference_feature_dim=8,
    aggregation_dim=16,
    condition_dim=8,
    warper_hidden_dim=16,
    hash_levels=4,
    hash_log2_size=10,
    hash_max_resolution=64,
)
"""AE-NeRF model settings small enough for a model test to run in a second or two on a CPU."""

SSP_SMALL = dict(num_coarse_samples=6, num_importance_samples=6, hidden_dim=32, num_layers=2, audio_code_dim=8)
"""SSP-NeRF's (and any other ray-based model's) settings of the same size: the ray-sampling and field sizes."""


@pytest.fixture
def small_model() -> dict:
    """A fresh copy of `SMALL_MODEL`."""
    return dict(SMALL_MODEL)


@pytest.fixture
def dataset_copy(sample_dataset, tmp_path) -> Path:
    """A private copy of the sample dataset that a test may damage."""
    dst = tmp_path / "copy"
    shutil.copytree(sample_dataset, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def ns_train_command(
    data: Path,
    output_dir: Path,
    iterations: int,
    vis: str = "tensorboard",
    small: bool = False,
    method: str = "aenerf-tiny",
) -> list[str]:
    """`ns-train <method>` on CPU with 64 rays per batch (ray-based methods); `small` adds the SMALL_MODEL field
    sizes (aenerf)."""
    import sys

    from aenerf_ns.models.method_contract import preset_method

    cmd = [str(Path(sys.executable).parent / "ns-train"), method, "--data", str(data)]
    cmd += ["--output-dir", str(output_dir), "--max-num-iterations", str(iterations)]
    cmd += ["--machine.device-type", "cpu", "--vis", vis]
    registered = preset_method(method)
    if registered is None or registered.trains_on_rays:  # whole-frame methods have no rays-per-batch option
        cmd += ["--pipeline.datamanager.train-num-rays-per-batch", "64"]
    if small:
        for key, value in SMALL_MODEL.items():
            if not key.startswith("hash_"):
                cmd += [f"--pipeline.model.{key.replace('_', '-')}", str(value)]
    return cmd


@pytest.fixture(scope="session")
def ns_train():
    """`ns_train_command`, for tests and fixtures that start their own training runs."""
    return ns_train_command


@pytest.fixture(scope="session")
def tiny_run(sample_dataset, tmp_path_factory) -> Path:
    """config.yml of a 2-iteration `ns-train aenerf-tiny` run with small fields on the sample dataset."""
    import subprocess

    root = tmp_path_factory.mktemp("tiny_run")
    cmd = ns_train_command(sample_dataset, root / "runs", iterations=2, small=True)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (config,) = root.glob("runs/*/aenerf-tiny/*/config.yml")
    return config


@pytest.fixture(scope="session")
def method_run(sample_dataset, tmp_path_factory):
    """`method_run(preset)`: config.yml of a 2-step `ns-train <preset>` run (the registered preset as it is, 64 rays
    per batch) on the sample dataset, trained once per session and shared by every test that asks. Treat as
    read-only (a test may add a file it removes again)."""
    import subprocess

    runs: dict[str, Path] = {}

    def run(preset: str) -> Path:
        if preset not in runs:
            root = tmp_path_factory.mktemp(preset)
            cmd = ns_train_command(sample_dataset, root / "runs", iterations=2, method=preset)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=root)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            (runs[preset],) = root.glob(f"runs/*/{preset}/*/config.yml")
        return runs[preset]

    return run


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """13 s of synthetic speech (16 kHz mono wav) that no dataset was made from."""
    from media_files import write_speech_wav

    return write_speech_wav(tmp_path_factory.mktemp("speech") / "new_speech.wav", 13.0, seed=1234)


@pytest.fixture
def make_pipeline(small_model):
    """Seeded aenerf-tiny pipelines with small fields: `make_pipeline(data, rays, **model_settings)`."""

    def build(data: Path, rays: int = 96, **model):
        import torch

        from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

        config = aenerf_tiny_config()
        config.pipeline.datamanager.data = data
        config.pipeline.datamanager.train_num_rays_per_batch = rays
        for key, value in {**small_model, **model}.items():
            setattr(config.pipeline.model, key, value)
        torch.manual_seed(0)
        return config.pipeline.setup(device="cpu", test_mode="val")

    return build
