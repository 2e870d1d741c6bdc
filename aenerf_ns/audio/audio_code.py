"""The learned audio code network: a frame's feature window in, the small code that conditions the fields out.

Not to be confused with the feature extractors (`feature_registry`), which turn audio into those windows before
training. Which network a model uses is its config's `audio_code` (`AudioDrivenModelConfig`); another network is
another `InstantiateConfig` whose `_target` takes `(config, window, feature_dim, code_dim)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn


@dataclass
class ConvAudioCodeConfig(InstantiateConfig):
    """Temporal convolutions over the feature window, then a linear layer (the network every run so far used)."""

    _target: type = field(default_factory=lambda: ConvAudioCode)
    hidden_dim: int = 64
    """Channels of the temporal convolutions."""
    leaky_relu_slope: float = 0.02
    """Negative slope of the activations between convolutions."""
    pooled_length: int = 2
    """Time steps the convolutions' output is average-pooled to before the linear layer."""


class ConvAudioCode(nn.Module):
    """Temporal convolutions over the (window, dim) feature block, then a linear layer to `code_dim`.

    Input is the flattened window exactly as it arrives in `RayBundle.metadata["audio"]`. The parameters'
    names (`convs.*`, `head.*`) are those of earlier runs' checkpoints, so keep them.
    """

    config: ConvAudioCodeConfig

    def __init__(self, config: ConvAudioCodeConfig, window: int, feature_dim: int, code_dim: int) -> None:
        super().__init__()
        self.config = config
        self.window = window
        self.feature_dim = feature_dim
        self.code_dim = code_dim
        hidden, slope = config.hidden_dim, config.leaky_relu_slope
        self.convs = nn.Sequential(
            nn.Conv1d(feature_dim, hidden, kernel_size=3, padding=1),
            nn.LeakyReLU(slope),
            nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(slope),
            nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(slope),
            nn.AdaptiveAvgPool1d(config.pooled_length),
        )
        self.head = nn.Linear(config.pooled_length * hidden, code_dim)

    def forward(self, audio: Float[Tensor, "*batch flat"]) -> Float[Tensor, "*batch code"]:
        batch_shape = audio.shape[:-1]
        if audio.shape[-1] != self.window * self.feature_dim:
            raise ValueError(
                f"audio features have {audio.shape[-1]} values per frame, the model expects "
                f"{self.window}x{self.feature_dim}={self.window * self.feature_dim} "
                "(was the model trained with another audio encoder?)"
            )
        x = audio.reshape(-1, self.window, self.feature_dim).transpose(1, 2)
        code = self.head(self.convs(x).flatten(1))
        return code.reshape(*batch_shape, self.code_dim)
