"""Turns a frame's audio feature window into a small audio code that conditions the fields."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor, nn


class AudioEncoder(nn.Module):
    """Temporal convolutions over the (window, dim) feature block, then a linear layer to `code_dim`.

    Input is the flattened window exactly as it arrives in `RayBundle.metadata["audio"]`.
    """

    def __init__(self, window: int, feature_dim: int, code_dim: int = 32, hidden_dim: int = 64) -> None:
        super().__init__()
        self.window = window
        self.feature_dim = feature_dim
        self.code_dim = code_dim
        self.convs = nn.Sequential(
            nn.Conv1d(feature_dim, hidden_dim, kernel_size=3, padding=1),
            nn.LeakyReLU(0.02),
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02),
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02),
            nn.AdaptiveAvgPool1d(2),
        )
        self.head = nn.Linear(2 * hidden_dim, code_dim)

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
