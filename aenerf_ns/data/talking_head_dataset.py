"""Dataset that adds each frame's parsing map, audio-region and mouth-area masks and background plate to the image."""

from __future__ import annotations

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image

from aenerf_ns.data.dataset_format import DatasetFormatError
from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS, LABEL_NAMES, MOUTH_INTERIOR
from aenerf_ns.data.talking_head_metadata import talking_head_metadata

MOUTH_MARGIN = 0.03
"""The mouth area reaches this fraction of the image height beyond the mouth interior (the lips)."""


def grown_mouth(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """The mouth interior of an (H, W) label map grown by `radius` pixels (the lips around it), as booleans;
    empty where the mouth is shut."""
    inside = (labels == MOUTH_INTERIOR).float()[None, None]
    return torch.nn.functional.max_pool2d(inside, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0


def load_label_map(path, scale_factor: float = 1.0) -> np.ndarray:
    """Read a parsing PNG as uint8 (H, W), resized with nearest neighbour, checking the label ids."""
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:
        raise DatasetFormatError(f"parsing map {path} cannot be read: {exc}") from None
    if img.mode not in ("L", "P", "I;16", "I"):
        raise DatasetFormatError(f"parsing map {path} must be a single-channel label image, got mode {img.mode}")
    if scale_factor != 1.0:
        w, h = img.size
        img = img.resize((int(round(w * scale_factor)), int(round(h * scale_factor))), Image.NEAREST)
    labels = np.array(img)
    bad = np.unique(labels[labels >= len(LABEL_NAMES)])
    if bad.size:
        raise DatasetFormatError(
            f"parsing map {path} contains unknown label ids {bad.tolist()}; valid ids are 0..{len(LABEL_NAMES) - 1} "
            f"({', '.join(LABEL_NAMES)})"
        )
    return labels.astype(np.uint8)


class TalkingHeadDataset(InputDataset):
    """Images plus per-pixel `parsing` (uint8 label ids), `audio_region` and `mouth_area` (bool: the open mouth
    and its lips, `MOUTH_MARGIN`) and `background` (uint8 RGB).

    The background is the plate of the frame's identity (several identities train a base model together).
    """

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + [
        "parsing",
        "audio_region",
        "mouth_area",
        "background",
    ]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        meta = talking_head_metadata(self.metadata)
        self.parsing_filenames = meta.parsing_filenames
        self.region_ids = torch.tensor(AUDIO_REGION_LABELS, dtype=torch.uint8)
        self.image_identity = meta.image_identity
        plates = meta.background_images
        self.backgrounds = None
        if plates is not None:
            h, w = int(self.cameras.height[0]), int(self.cameras.width[0])
            if tuple(plates.shape[1:3]) != (h, w):
                plates = torch.stack(
                    [
                        torch.from_numpy(np.array(Image.fromarray(p.numpy()).resize((w, h), Image.BILINEAR)))
                        for p in plates
                    ]
                )
            self.backgrounds = plates

    def get_metadata(self, data: dict) -> dict:
        idx = data["image_idx"]
        labels = torch.from_numpy(load_label_map(self.parsing_filenames[idx], self.scale_factor))
        image = data["image"]
        expected = (int(self.cameras.height[idx]), int(self.cameras.width[idx]))
        if tuple(image.shape[:2]) != expected:
            path = self._dataparser_outputs.image_filenames[idx]
            w, h = Image.open(path).size
            raise DatasetFormatError(
                f"frame {path} is {w}x{h} but transforms.json says {round(expected[1] / self.scale_factor)}x"
                f"{round(expected[0] / self.scale_factor)}: all frames must have the dataset's size"
            )
        if labels.shape != image.shape[:2]:
            raise DatasetFormatError(
                f"parsing map {self.parsing_filenames[idx]} is {labels.shape[1]}x{labels.shape[0]} but its frame "
                f"{self._dataparser_outputs.image_filenames[idx]} is {image.shape[1]}x{image.shape[0]}"
            )
        region = torch.isin(labels, self.region_ids)
        out = {
            "parsing": labels[..., None],
            "audio_region": region[..., None],
            "mouth_area": (grown_mouth(labels, max(1, round(MOUTH_MARGIN * labels.shape[0]))) & region)[..., None],
        }
        if self.backgrounds is not None:
            out["background"] = self.backgrounds[int(self.image_identity[idx])]
        return out
