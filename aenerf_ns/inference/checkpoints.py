"""Loading trained pipelines from a run's config.yml, with current torch and clear errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import torch

from aenerf_ns.inference.legacy_modules import carry_moved_settings, upgrade_python_tags
from aenerf_ns.models.method_contract import registered_names
from aenerf_ns.utils.safe_checkpoint import CheckpointRefusedError, load_checkpoint


class CheckpointError(RuntimeError):
    """The run cannot be loaded; the message names the file and what to do."""


def read_run_config(config_path: Path):
    """The TrainerConfig saved in a run's config.yml; class paths of earlier releases are read as today's."""
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    config_path = Path(config_path)
    if not config_path.is_file():
        raise CheckpointError(f"config {config_path} does not exist (pass the config.yml of a training run)")
    try:
        config = yaml.load(upgrade_python_tags(config_path.read_text()), Loader=yaml.Loader)
    except Exception as exc:
        raise CheckpointError(f"{config_path} is not a readable nerfstudio config.yml: {exc}") from exc
    if not isinstance(config, TrainerConfig):
        raise CheckpointError(f"{config_path} is not a nerfstudio training config.yml")
    carry_moved_settings(config)
    return config


def is_audio_driven(config) -> bool:
    """Whether the run's model can be driven by a new audio track (a talking-head method's, `method_contract`)."""
    model_class = getattr(config.pipeline.model, "_target", None)
    return callable(getattr(model_class, "set_audio_track", None))


def checkpoint_dir(config_path: Path, config) -> Path:
    """The run's nerfstudio_models folder: next to config.yml, else where the config says."""
    beside = Path(config_path).parent / "nerfstudio_models"
    return beside if beside.is_dir() else config.get_checkpoint_dir()


def latest_checkpoint(folder: Path, step: int | None = None) -> tuple[Path, int]:
    """The newest (or the given step's) step-*.ckpt in `folder`."""
    found = {}
    if folder.is_dir():
        for path in folder.glob("step-*.ckpt"):
            match = re.fullmatch(r"step-(\d+)\.ckpt", path.name)
            if match:
                found[int(match.group(1))] = path
    if not found:
        raise CheckpointError(
            f"no checkpoint (step-*.ckpt) in {folder}: the run has not saved one yet; checkpoints are written "
            "every --steps-per-save steps and at the end of training"
        )
    if step is None:
        step = max(found)
    if step not in found:
        raise CheckpointError(f"no checkpoint for step {step} in {folder}; saved steps: {sorted(found)}")
    return found[step], step


def load_trained_pipeline(
    config_path: Path,
    test_mode: Literal["test", "val", "inference"] = "test",
    load_step: int | None = None,
    data: Path | None = None,
    require_audio_driven: bool = False,
    eval_num_rays_per_chunk: int | None = None,
):
    """Return (config, pipeline, checkpoint_path, step) for a finished or running training run.

    Args:
        config_path: the run's config.yml.
        test_mode: nerfstudio's dataset loading mode ("inference" loads no images).
        load_step: checkpoint step to load (None: the newest).
        data: dataset folder to use instead of the one in the config (e.g. when the run was moved).
        require_audio_driven: refuse runs of methods that cannot be driven by audio.
        eval_num_rays_per_chunk: rays per forward pass when rendering whole images.
    """
    from nerfstudio.configs.method_configs import all_methods

    config_path = Path(config_path)
    config = read_run_config(config_path)
    if require_audio_driven and not is_audio_driven(config):
        raise CheckpointError(
            f"{config_path} is a run of method {config.method_name!r}, which has no audio input: pass the "
            f"config.yml of a run of {', '.join(registered_names())} (or of their -tiny presets)"
        )
    ckpt_path, step = latest_checkpoint(checkpoint_dir(config_path, config), load_step)
    if data is not None:
        config.pipeline.datamanager.data = Path(data)
        config.pipeline.datamanager.dataparser.data = Path(data)
    dataset = config.pipeline.datamanager.data or config.pipeline.datamanager.dataparser.data
    if dataset is not None and not Path(dataset).exists():
        raise CheckpointError(
            f"the run's dataset {dataset} does not exist (relative paths are read from the current folder): "
            "run from the folder training ran in, or pass the dataset folder with --data"
        )
    if config.method_name in all_methods:
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    if eval_num_rays_per_chunk:
        config.pipeline.model.eval_num_rays_per_chunk = eval_num_rays_per_chunk
    config.load_dir = ckpt_path.parent
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    try:
        state = load_checkpoint(ckpt_path)  # tensors and numbers only: a checkpoint from elsewhere cannot run code
    except CheckpointRefusedError as exc:
        raise CheckpointError(str(exc)) from exc
    except Exception as exc:
        raise CheckpointError(f"checkpoint {ckpt_path} is damaged or unreadable: {exc}") from exc
    try:
        pipeline.load_pipeline(state["pipeline"], state["step"])
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {ckpt_path} does not fit the run's model ({config.method_name}): {exc}"
        ) from exc
    pipeline.eval()
    return config, pipeline, ckpt_path, step
