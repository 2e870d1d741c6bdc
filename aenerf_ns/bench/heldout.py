"""The held-out frames a method is scored on, and the held-out PSNR every benchmark measures the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datasets.base_dataset import InputDataset
from torch import Tensor

from aenerf_ns.data.talking_head_metadata import talking_head_metadata


class HeldoutFrames:
    """Ground truth of a held-out split: images, file names, frame indices, frame rate and audio file."""

    def __init__(self, dataset: InputDataset):
        self.dataset = dataset
        self.filenames = [Path(p).name for p in dataset.image_filenames]
        meta = talking_head_metadata(dataset.metadata)
        self.fps = meta.fps
        self.frame_indices = meta.frame_indices.numpy()
        self.audio_path = meta.identities[0].audio_path

    @classmethod
    def read(cls, data: Path, train_fraction: float) -> HeldoutFrames:
        """The held-out split of `data` as the talking-head dataparser makes it (the same for every method)."""
        from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
        from aenerf_ns.data.talking_head_dataset import TalkingHeadDataset

        parser = TalkingHeadDataParserConfig(data=Path(data), train_fraction=train_fraction).setup()
        return cls(TalkingHeadDataset(parser.get_dataparser_outputs("val")))

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, i: int) -> Float[Tensor, "h w 3"]:
        return self.dataset[i]["image"][..., :3]

    def image_and_lower_face(self, i: int) -> tuple[Float[Tensor, "h w 3"], Bool[Tensor, "h w"]]:
        """Frame `i` and its lower-face mask, from one read of the frame."""
        frame = self.dataset[i]
        return frame["image"][..., :3], frame["audio_region"][..., 0].bool()

    def evenly_spaced(self, count: int) -> Int[np.ndarray, " picks"]:
        """Indices of `count` frames spread evenly over the split (fewer when the split is shorter)."""
        return np.unique(np.linspace(0, len(self) - 1, count).round().astype(int))


def heldout_cameras(pipeline, heldout: HeldoutFrames) -> Cameras:
    """The pipeline's own held-out cameras (times, audio indices...), checked to be `heldout`'s frames."""
    dataset = pipeline.datamanager.eval_dataset
    names = [Path(p).name for p in dataset.image_filenames]
    if names != heldout.filenames:
        raise RuntimeError("the method's held-out frames differ from the benchmark's reference frames")
    return dataset.cameras


def render_rgb(model, camera: Cameras) -> Float[Tensor, "h w 3"]:
    """A full image from any nerfstudio model (ours and nerfacto name it `rgb`, vanilla NeRF `rgb_fine`)."""
    outputs = model.get_outputs_for_camera(camera)
    rgb = outputs["rgb"] if "rgb" in outputs else outputs["rgb_fine"]
    return rgb[..., :3].clamp(0.0, 1.0)


@torch.no_grad()
def heldout_psnr(model, cameras: Cameras, heldout: HeldoutFrames, picks: Int[np.ndarray, " picks"]) -> float:
    """Mean PSNR of full renders of the held-out frames `picks` (each with its own camera and audio)."""
    from aenerf_ns.utils.image_metrics import psnr

    was_training = model.training
    model.eval()
    scores = []
    for i in map(int, picks):
        pred = render_rgb(model, cameras[i : i + 1].to(model.device))
        scores.append(float(psnr(pred, heldout.image(i).to(model.device))))
    model.train(was_training)
    return float(np.mean(scores))
