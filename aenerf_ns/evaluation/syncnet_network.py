"""SyncNet (Chung & Zisserman, "Out of time", 2016): the audio-visual sync network behind LSE-C / LSE-D.

The layer layout mirrors the published `syncnet_v2.model` state dict key by key (`netcnnaud.0.weight`, ...),
so the released weights load by name; the Sequential indices therefore include the parameter-free layers
(ReLU, pooling) exactly where the original has them. Nothing here downloads: `load_syncnet` reads a local
file and says clearly when it does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from jaxtyping import Float
from torch import nn

from aenerf_ns.utils.safe_checkpoint import CheckpointRefusedError, load_checkpoint

EMBEDDING_DIM = 1024
"""Width of both embeddings; LSE-D is a Euclidean distance in this space."""

MFCC_COEFFS = 13
"""Cepstral coefficients per MFCC frame (c0 being the log frame energy)."""
MFCC_WINDOW = 20
"""MFCC frames (10 ms each) per audio window: 0.2 s, the span of 5 video frames at 25 fps."""
LIP_FRAMES = 5
"""Video frames per lip window."""
LIP_SIZE = 224
"""Height and width of the face crops the lip branch takes."""

_STRIPPED_PREFIXES = ("module.", "__S__.")
"""Wrappers the key names may carry: DataParallel's, and syncnet_python's SyncNetInstance attribute."""


class SyncNetWeightsError(ValueError):
    """A SyncNet weights file is missing, unreadable or does not fit the network; the message says which."""


def _conv2d_block(c_in: int, c_out: int, kernel, padding, relu_inplace: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU(inplace=relu_inplace)]


def _conv3d_block(c_in: int, c_out: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    ]


def _embedding_head(dim: int) -> nn.Sequential:
    """512 pooled conv features to the shared embedding space (two linear layers, batch norm between)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Two-stream network: an MFCC window and a 5-frame lip window map into one embedding space.

    Windows that are in sync land close together; LSE-D and LSE-C are read from those distances.
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        # Audio: 1 x 13 x 20 MFCC image -> 512 x 1 x 1.
        self.netcnnaud = nn.Sequential(
            *_conv2d_block(1, 64, 3, 1),
            nn.MaxPool2d(kernel_size=1, stride=1),  # a no-op kept so the indices match the released weights
            *_conv2d_block(64, 192, 3, 1),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            *_conv2d_block(192, 384, 3, 1),
            *_conv2d_block(384, 256, 3, 1),
            *_conv2d_block(256, 256, 3, 1),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv2d_block(256, 512, (5, 4), 0, relu_inplace=False),
        )
        self.netfcaud = _embedding_head(embedding_dim)
        self.netfclip = _embedding_head(embedding_dim)
        # Lips: 3 x 5 x 224 x 224 clip -> 512 x 1 x 1 x 1 (the first 3D conv spans all 5 frames).
        self.netcnnlip = nn.Sequential(
            *_conv3d_block(3, 96, (5, 7, 7), stride=(1, 2, 2)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d_block(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv3d_block(256, 512, (1, 6, 6)),
        )

    def embed_audio(self, mfcc: Float[torch.Tensor, "batch 1 13 20"]) -> Float[torch.Tensor, "batch dim"]:
        """Embedding of each 20-frame MFCC window (0.2 s of 16 kHz speech)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_lips(self, clips: Float[torch.Tensor, "batch 3 5 224 224"]) -> Float[torch.Tensor, "batch dim"]:
        """Embedding of each 5-frame face clip (raw 0-255 BGR values, as the released weights expect)."""
        return self.netfclip(self.netcnnlip(clips).flatten(1))

    def forward(
        self, mfcc: Float[torch.Tensor, "batch 1 13 20"], clips: Float[torch.Tensor, "batch 3 5 224 224"]
    ) -> tuple[Float[torch.Tensor, "batch dim"], Float[torch.Tensor, "batch dim"]]:
        return self.embed_audio(mfcc), self.embed_lips(clips)


def _read_weights_file(path: Path) -> object:
    """The file's contents, read as tensors, containers and numbers only (see `load_checkpoint`)."""
    try:
        return load_checkpoint(path)
    except CheckpointRefusedError as exc:
        raise SyncNetWeightsError(str(exc)) from exc
    except Exception as exc:  # pickle, zip and torch errors alike
        raise SyncNetWeightsError(f"could not read SyncNet weights {path}: {type(exc).__name__}: {exc}") from exc


def _find_state_dict(obj: object) -> Mapping[str, torch.Tensor] | None:
    """The state dict in what a file held: itself, a module's, or one wrapped in a dict (`state_dict`, ...)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        return None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in ("state_dict", "model_state_dict", "model", "net", "network", "state"):
        if key in obj:
            found = _find_state_dict(obj[key])
            if found is not None:
                return found
    return None


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        out[key] = value
    return out


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_syncnet(path: Path | str, device: torch.device | str = "cpu") -> SyncNet:
    """SyncNet with the weights of `path` (e.g. syncnet_v2.model), in eval mode on `device`.

    Accepts a plain state dict or a dict wrapping one, with or without a `module.` or `__S__.` key prefix; a pickled
    module is refused (unpickling it could run code from the file). Raises SyncNetWeightsError naming the file and
    the keys that do not fit, or the global the file asked for.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SyncNetWeightsError(f"SyncNet weights file {path} does not exist")
    found = _find_state_dict(_read_weights_file(path))
    if found is None:
        raise SyncNetWeightsError(f"{path} holds no state dict or module that could be SyncNet's weights")
    state = _strip_prefixes(found)
    network = SyncNet()
    expected = network.state_dict()
    # Checkpoints from before BatchNorm counted batches lack num_batches_tracked; torch fills it in.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if mis_shaped:
        problems.append(f"mismatching shapes: {_listed(mis_shaped)}")
    if problems:
        raise SyncNetWeightsError(f"{path} does not fit SyncNet (syncnet_v2 layout): " + "; ".join(problems))
    network.load_state_dict(state, strict=False)  # keys were checked above; only num_batches_tracked may be absent
    return network.to(device).eval()
