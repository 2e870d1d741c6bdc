"""How far the mouth is open, predicted from a frame's audio features alone: the opening the fields are told.

A model that learns mouth motion only through the photometric loss (or through a code that must also serve the
fields) predicts the opening with whatever spread its errors allow, and a least-squares predictor shrinks its
output by its own correlation with the truth: on a 10 s training clip that is about half, so the rendered mouth
opens half as far as the speaker's. Telling the fields the opening as a number separates the two problems: in
training each frame's true opening is given (the fields learn to draw any opening they are told), and at
inference the opening predicted from the audio is rescaled so that on audio the predictor was not fitted to it
spans the same range as the training truth, whatever its correlation: each clip's predictions are centred, and
divided by the spread of its unseen rows' predictions (a new track: all of them; the training clip: its
held-out frames), or, where a clip has too few unseen rows, by the spread of the cross-validation predictions.

The predictor is kernel ridge regression on the flattened feature window, fitted in closed form on the training
frames (about a second for a 10 s clip, cross-validation included; the same data always gives the same weights).
The kernel is Gaussian on standardised features (on 10 s of a real speaker it predicts unseen speech's opening
0.02-0.03 better in correlation than linear ridge, whichever part of the clip it is fitted on); cross-validation
over contiguous blocks of the training frames picks its width and strength. Clips longer than `MAX_KERNEL_ROWS`
training frames are fitted on evenly spaced rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

KERNEL_WIDTHS = (0.5, 1.0, 2.0)
"""Inverse widths g of the Gaussian kernel exp(-g |a - b|^2 / dim) on standardised features."""
RIDGE_STRENGTHS = (0.1, 0.3, 1.0, 3.0)
"""Ridge strengths (the kernel matrix has ones on its diagonal)."""
CV_FOLDS = 5
"""Contiguous blocks of the training frames held out in turn to pick the kernel and its strength."""
MIN_UNSEEN_ROWS = 25
"""Unseen rows a clip needs for their own spread to scale its predictions (one second at 25 fps)."""
MAX_KERNEL_ROWS = 1500
"""Training rows the kernel is fitted on at most (evenly spaced beyond it): one minute at 25 fps; the solve grows
with the cube of this."""


@dataclass(frozen=True)
class Kernel:
    """One candidate of the cross-validation: a Gaussian kernel of inverse width `width` and a ridge `strength`."""

    width: float
    strength: float

    def matrix(self, a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
        """Kernel values between standardised rows."""
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
        return torch.exp(-self.width * sq.clamp_min(0) / a.shape[1])


CANDIDATES = tuple(Kernel(w, s) for w in KERNEL_WIDTHS for s in RIDGE_STRENGTHS)
"""What cross-validation picks from."""
FALLBACK = Kernel(1.0, 1.0)
"""The kernel of a clip too short to cross-validate."""


def fit_kernel(
    x: Float[Tensor, "n d"], y: Float[Tensor, " n"], kernel: Kernel
) -> tuple[Float[Tensor, " n"], float, Tensor, Tensor]:
    """Dual weights, intercept, feature shift and scale of kernel ridge regression of `y` on `x`."""
    shift, scale = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    xs = (x - shift) / scale
    gram = kernel.matrix(xs, xs)
    alpha = torch.linalg.solve(gram + kernel.strength * torch.eye(len(x), dtype=x.dtype), y - y.mean())
    return alpha, float(y.mean()), shift, scale


def predict_kernel(
    rows: Float[Tensor, "m d"], support: Float[Tensor, "n d"], fitted: tuple, kernel: Kernel
) -> Float[Tensor, " m"]:
    """Predictions of `fit_kernel`'s result for `rows` (`support`: the rows it was fitted on)."""
    alpha, intercept, shift, scale = fitted
    return kernel.matrix((rows - shift) / scale, (support - shift) / scale) @ alpha + intercept


def _correlation(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def choose_kernel(
    x: Float[Tensor, "n d"], y: Float[Tensor, " n"], folds: int = CV_FOLDS, candidates: tuple = CANDIDATES
) -> tuple[Kernel, float]:
    """The candidate whose held-out blocks' predictions correlate best with `y`, and the spread of those
    predictions (`FALLBACK` and nan when there are too few rows to hold any out)."""
    n = x.shape[0]
    if n < 2 * folds:
        return FALLBACK, float("nan")
    edges = torch.linspace(0, n, folds + 1).round().long()
    best, best_score, best_spread = candidates[0], -float("inf"), float("nan")
    for kernel in candidates:
        held = torch.empty(n, dtype=x.dtype)
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            keep = torch.ones(n, dtype=torch.bool)
            keep[a:b] = False
            held[a:b] = predict_kernel(x[a:b], x[keep], fit_kernel(x[keep], y[keep], kernel), kernel)
        score = _correlation(held, y)
        if score > best_score:
            best, best_score, best_spread = kernel, score, float(held.std(unbiased=False))
    return best, best_spread


def clip_centre_and_spread(values: Float[Tensor, " n"], unseen: Tensor, fallback_spread: float) -> tuple[float, float]:
    """A clip's predictions' mean, and the spread of its `unseen` rows' predictions (`fallback_spread` where there
    are fewer than `MIN_UNSEEN_ROWS` of them; 1 where neither is usable)."""
    new = values[unseen]
    spread = float(new.std(unbiased=False)) if new.numel() >= MIN_UNSEEN_ROWS else fallback_spread
    return float(values.mean()), spread if spread == spread and spread > 1e-8 else 1.0


def scaled_by_segment(
    values: Float[Tensor, " rows"], segments: Int[Tensor, " rows"], unseen: Tensor, fallback_spread: float
) -> Float[Tensor, " rows"]:
    """`values` centred within each segment (clip) of `segments` and divided by its `clip_centre_and_spread`."""
    out = torch.zeros_like(values)
    for seg in torch.unique(segments):
        mask = segments == seg
        centre, spread = clip_centre_and_spread(values[mask], unseen[mask], fallback_spread)
        out[mask] = (values[mask] - centre) / spread
    return out


class OpeningPredictor(nn.Module):
    """Audio-feature rows -> standardised mouth opening (see the module docstring).

    `fit` once on the training frames; `track` predicts a whole table (one value a row, scaled per clip as the
    module docstring says); `rows_from_windows` predicts loose rows (the viewer's) scaled like the training table.
    """

    def __init__(self, flat_dim: int) -> None:
        super().__init__()
        self.register_buffer("support", torch.zeros(0, flat_dim), persistent=False)
        self.register_buffer("alpha", torch.zeros(0), persistent=False)
        self.register_buffer("shift", torch.zeros(flat_dim), persistent=False)
        self.register_buffer("scale", torch.ones(flat_dim), persistent=False)
        self.register_buffer("train_stats", torch.tensor([0.0, 1.0]), persistent=False)
        self.intercept = 0.0
        self.kernel = FALLBACK
        self.cv_spread = float("nan")

    def fit(
        self,
        rows: Float[Tensor, "n flat"],
        openings: Float[Tensor, " n"],
        table: Float[Tensor, "rows flat"],
        seen: Tensor,
    ) -> None:
        """Fit on training rows and their (standardised) openings; `table` (the whole clip, `seen` marking the rows
        fitted on) sets the centre and scale of loose rows."""
        if len(rows) > MAX_KERNEL_ROWS:
            keep = torch.linspace(0, len(rows) - 1, MAX_KERNEL_ROWS).round().long()
            rows, openings = rows[keep], openings[keep]
        x, y = rows.double(), openings.double()
        self.kernel, self.cv_spread = choose_kernel(x, y)
        alpha, self.intercept, shift, scale = fit_kernel(x, y, self.kernel)
        device = self.train_stats.device
        self.support, self.alpha = rows.float().to(device), alpha.float().to(device)
        self.shift, self.scale = shift.float().to(device), scale.float().to(device)
        centre, spread = clip_centre_and_spread(self.raw(table), ~seen, self.cv_spread)
        self.train_stats = torch.tensor([centre, spread], device=device)

    def raw(self, rows: Float[Tensor, "n flat"]) -> Float[Tensor, " n"]:
        """Unstandardised predictions."""
        fitted = (self.alpha, self.intercept, self.shift, self.scale)
        return predict_kernel(rows.float(), self.support, fitted, self.kernel)

    def track(
        self, table: Float[Tensor, "rows flat"], segments: Int[Tensor, " rows"], seen: Tensor | None = None
    ) -> Float[Tensor, " rows"]:
        """Every row's predicted opening, scaled within its clip (`seen`: rows fitted on; None: none were)."""
        unseen = torch.ones(len(table), dtype=torch.bool, device=table.device) if seen is None else ~seen
        return scaled_by_segment(self.raw(table), segments, unseen, self.cv_spread)

    def rows_from_windows(self, rows: Float[Tensor, "n flat"]) -> Float[Tensor, " n"]:
        """Predicted openings of loose rows, scaled as the training clip's were."""
        return (self.raw(rows) - self.train_stats[0]) / self.train_stats[1]
