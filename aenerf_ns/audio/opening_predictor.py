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

The predictor is ridge regression on the flattened feature window, fitted in closed form on the training frames
(milliseconds; the same data always gives the same weights), its strength chosen by cross-validation over
contiguous blocks of the training frames. Where frames are far fewer than features it solves the dual (n x n)
system.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

RIDGE_STRENGTHS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
"""Ridge strengths (for standardised features) that cross-validation picks from."""
CV_FOLDS = 5
"""Contiguous blocks of the training frames held out in turn to pick the ridge strength."""
MIN_UNSEEN_ROWS = 25
"""Unseen rows a clip needs for their own spread to scale its predictions (one second at 25 fps)."""


def _ridge(x: Float[Tensor, "n d"], y: Float[Tensor, " n"], strength: float) -> Float[Tensor, " d1"]:
    """Weights (bias last) of ridge regression of `y` on `x`; the bias is not penalised (data are centred)."""
    x_mean, y_mean = x.mean(0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    if n < d:  # dual: w = X^T (X X^T + s I)^-1 y
        alpha = torch.linalg.solve(xc @ xc.T + strength * torch.eye(n, dtype=x.dtype), yc)
        w = xc.T @ alpha
    else:
        w = torch.linalg.solve(xc.T @ xc + strength * torch.eye(d, dtype=x.dtype), xc.T @ yc)
    return torch.cat([w, (y_mean - x_mean @ w)[None]])


def _apply(x: Float[Tensor, "n d"], weights: Float[Tensor, " d1"]) -> Float[Tensor, " n"]:
    return x @ weights[:-1] + weights[-1]


def _correlation(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else 0.0


def choose_strength(x: Float[Tensor, "n d"], y: Float[Tensor, " n"], folds: int = CV_FOLDS) -> tuple[float, float]:
    """The ridge strength of `RIDGE_STRENGTHS` whose held-out blocks' predictions correlate best with `y`, and the
    spread of those predictions (nan when there are too few rows to hold any out)."""
    n = x.shape[0]
    if n < 2 * folds:
        return RIDGE_STRENGTHS[len(RIDGE_STRENGTHS) // 2], float("nan")
    edges = torch.linspace(0, n, folds + 1).round().long()
    best, best_score, best_spread = RIDGE_STRENGTHS[0], -float("inf"), float("nan")
    for strength in RIDGE_STRENGTHS:
        held = torch.empty(n, dtype=x.dtype)
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            keep = torch.ones(n, dtype=torch.bool)
            keep[a:b] = False
            held[a:b] = _apply(x[a:b], _ridge(x[keep], y[keep], strength))
        score = _correlation(held, y)
        if score > best_score:
            best, best_score, best_spread = strength, score, float(held.std(unbiased=False))
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
        self.register_buffer("weights", torch.zeros(flat_dim + 1), persistent=False)
        self.register_buffer("train_stats", torch.tensor([0.0, 1.0]), persistent=False)
        self.strength = float("nan")
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
        x, y = rows.double(), openings.double()
        self.strength, self.cv_spread = choose_strength(x, y)
        self.weights = _ridge(x, y, self.strength).float().to(self.weights.device)
        centre, spread = clip_centre_and_spread(self.raw(table), ~seen, self.cv_spread)
        self.train_stats = torch.tensor([centre, spread], device=self.weights.device)

    def raw(self, rows: Float[Tensor, "n flat"]) -> Float[Tensor, " n"]:
        """Unstandardised predictions."""
        return _apply(rows.float(), self.weights)

    def track(
        self, table: Float[Tensor, "rows flat"], segments: Int[Tensor, " rows"], seen: Tensor | None = None
    ) -> Float[Tensor, " rows"]:
        """Every row's predicted opening, scaled within its clip (`seen`: rows fitted on; None: none were)."""
        unseen = torch.ones(len(table), dtype=torch.bool, device=table.device) if seen is None else ~seen
        return scaled_by_segment(self.raw(table), segments, unseen, self.cv_spread)

    def rows_from_windows(self, rows: Float[Tensor, "n flat"]) -> Float[Tensor, " n"]:
        """Predicted openings of loose rows, scaled as the training clip's were."""
        return (self.raw(rows) - self.train_stats[0]) / self.train_stats[1]
