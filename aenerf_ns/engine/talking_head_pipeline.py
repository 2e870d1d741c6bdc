"""nerfstudio's vanilla pipeline, with data-parallel training that also works on CPU processes.

nerfstudio wraps the model in DistributedDataParallel with `device_ids=[local_rank]` and waits at a barrier that
names a GPU, both of which only exist on CUDA; on CPU processes (gloo) the wrap fails. Here the device ids are
given only on CUDA. `find_unused_parameters` stays on: AE-NeRF sends each ray through one of its two fields, so
in a step where no ray of a rank reaches a field, that field's parameters get no gradient there.

Buffers are not broadcast at every step (DistributedDataParallel's default): a talking-head model's buffers are its
identities' data (audio-feature table, references, background plates), built identically by every process from the
same dataset and never trained; at base-model scale the audio table alone is gigabytes. The launcher checks at the
end of training that every process holds the same parameters and buffers.

A checkpoint written by another model (another method, or other model settings) is refused when loaded, where
nerfstudio would load the parameters the two happen to share and leave the others as initialised.

Models whose parameter set changes during training (Gaussian splatting densifies and prunes) cannot be kept in
step by DistributedDataParallel; they say so with `supports_data_parallel = False` and are refused here.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline, VanillaPipelineConfig
from torch.nn.parallel import DistributedDataParallel


class DataParallelUnsupported(RuntimeError):
    """The method cannot train on several processes."""


class ForeignCheckpointError(RuntimeError):
    """A checkpoint whose model parameters are not this model's: another method (or other model settings) wrote it."""


def model_state_names(state_dict) -> set[str]:
    """The model's entries of a pipeline state dict, named as in the model (nerfstudio's `_model.` prefix and a
    data-parallel wrapper's `module.` removed, as nerfstudio's loading does)."""
    names = [key.removeprefix("_model.") for key in state_dict if key.startswith("_model.")]
    if names and all(name.startswith("module.") for name in names):
        names = [name.removeprefix("module.") for name in names]
    return set(names)


def refuse_foreign_checkpoint(model: Model, state_dict) -> None:
    """Raise `ForeignCheckpointError` when a pipeline state dict lacks parameters of `model` or holds entries it has
    no place for (nerfstudio would load the matching names and leave the rest as initialised)."""
    saved = model_state_names(state_dict)
    missing = sorted({name for name, _ in model.named_parameters()} - saved)
    unexpected = sorted(saved - set(model.state_dict()))
    if missing or unexpected:
        raise ForeignCheckpointError(
            f"it is not a checkpoint of {type(model).__name__} ({len(missing)} of its parameters missing, e.g. "
            f"{missing[:3]}; {len(unexpected)} entries it has no place for, e.g. {unexpected[:3]}): another method "
            "(or other model settings) wrote it; load it with the config.yml of the run that wrote it"
        )


def refuse_data_parallel(model_class: type, world_size: int) -> None:
    """Raise `DataParallelUnsupported` when `world_size` processes would train a model that cannot be replicated."""
    if world_size > 1 and not getattr(model_class, "supports_data_parallel", True):
        raise DataParallelUnsupported(
            f"{model_class.__name__} trains on one device only (its parameter set changes during training, which "
            "DistributedDataParallel cannot follow): train it without --machine.num-devices / --machine.num-machines"
        )


@dataclass
class TalkingHeadPipelineConfig(VanillaPipelineConfig):
    """nerfstudio's VanillaPipelineConfig, building the `TalkingHeadPipeline`."""

    _target: type = field(default_factory=lambda: TalkingHeadPipeline)


class TalkingHeadPipeline(VanillaPipeline):
    """See the module docstring."""

    def __init__(
        self,
        config: VanillaPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: torch.amp.GradScaler | None = None,
    ):
        refuse_data_parallel(config.model._target, world_size)
        Pipeline.__init__(self)
        self.config = config
        self.test_mode = test_mode
        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank
        )
        self.datamanager.to(device)
        assert self.datamanager.train_dataset is not None, "Missing input dataset"
        self._model = config.model.setup(
            scene_box=self.datamanager.train_dataset.scene_box,
            num_train_data=len(self.datamanager.train_dataset),
            metadata=self.datamanager.train_dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
        )
        self.model.to(device)
        self.world_size = world_size
        if world_size > 1:
            on_gpu = torch.device(device).type == "cuda"
            self._model = typing.cast(
                Model,
                DistributedDataParallel(
                    self._model,
                    device_ids=[local_rank] if on_gpu else None,
                    find_unused_parameters=True,
                    broadcast_buffers=False,
                ),
            )
            dist.barrier()

    def load_state_dict(self, state_dict, strict: bool | None = None):
        """nerfstudio's loading, but a checkpoint of another model is refused (`refuse_foreign_checkpoint`) where
        nerfstudio would fall back to loading the names the two share."""
        refuse_foreign_checkpoint(self.model, state_dict)
        return super().load_state_dict(state_dict, strict)

    @torch.no_grad()
    def get_average_image_metrics(
        self, data_loader, image_prefix: str, step: int | None = None, output_path=None, get_std: bool = False
    ) -> dict[str, float]:
        """Each metric averaged over the images that have it (`ns-eval`, evaluation of all images in training).

        Region metrics (`mouth_psnr`, `torso_psnr`, `lower_face_psnr`, ...) exist only for images that show the region;
        nerfstudio's version averages the first image's keys over every image and fails on a closed mouth."""
        from time import time

        import torchvision.utils as vutils

        self.eval()
        per_image: list[dict[str, float]] = []
        if output_path is not None:
            output_path.mkdir(exist_ok=True, parents=True)
        for index, (camera, batch) in enumerate(data_loader):
            start = time()
            outputs = self.model.get_outputs_for_camera(camera=camera)
            metrics, images = self.model.get_image_metrics_and_images(outputs, batch)
            num_rays = int(camera.height * camera.width)
            metrics["num_rays_per_sec"] = num_rays / (time() - start)
            metrics["fps"] = metrics["num_rays_per_sec"] / num_rays
            if output_path is not None:
                for key, image in images.items():
                    vutils.save_image(
                        image.permute(2, 0, 1).cpu(), output_path / f"{image_prefix}_{key}_{index:04d}.png"
                    )
            per_image.append(metrics)
        averaged: dict[str, float] = {}
        for key in dict.fromkeys(k for metrics in per_image for k in metrics):
            values = torch.tensor([float(metrics[key]) for metrics in per_image if key in metrics])
            averaged[key] = float(values.mean())
            if get_std:
                averaged[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
        self.train()
        return averaged
