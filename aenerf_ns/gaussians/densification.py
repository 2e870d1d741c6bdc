"""Growing and pruning the Gaussians during training: gsplat's DefaultStrategy, with per-Gaussian labels kept.

gsplat's strategy (3DGS's rules: clone small and split large Gaussians whose screen-space gradient is high, prune
transparent and oversized ones, periodically reset opacities) rewrites the Gaussian parameters and their optimizer
states in place. The talking head also keeps a label per Gaussian that is not a parameter (which Gaussians belong to
the audio region); `Densification` hands such labels to the strategy's running state, which gsplat's operations
clone, split and prune along with the parameters, and takes them back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class DensificationConfig:
    """When and how the Gaussians are cloned, split and pruned (gsplat's DefaultStrategy)."""

    refine_start: int = 500
    """Step after which Gaussians are first grown and pruned."""
    refine_every: int = 100
    """Steps between two growing and pruning rounds."""
    refine_stop: int = 15000
    """Step after which the set of Gaussians stays fixed."""
    grow_grad2d: float = 0.0002
    """Mean screen-space gradient (normalised to [-1, 1] image coordinates) above which a Gaussian is grown."""
    grow_scale3d: float = 0.01
    """Gaussians larger than this (head units) are split when grown, smaller ones cloned."""
    prune_opacity: float = 0.005
    """Gaussians more transparent than this are removed."""
    prune_scale3d: float = 0.3
    """After the first opacity reset, Gaussians larger than this (head units) are removed."""
    reset_every: int = 3000
    """Steps between opacity resets (set above the step count to never reset)."""

    def strategy(self):
        """The gsplat strategy these settings describe."""
        from gsplat.strategy import DefaultStrategy

        return DefaultStrategy(
            prune_opa=self.prune_opacity,
            grow_grad2d=self.grow_grad2d,
            grow_scale3d=self.grow_scale3d,
            prune_scale3d=self.prune_scale3d,
            refine_start_iter=self.refine_start,
            refine_stop_iter=self.refine_stop,
            reset_every=self.reset_every,
            refine_every=self.refine_every,
        )


class Densification:
    """gsplat's strategy and its running state, carrying extra per-Gaussian labels through every change."""

    def __init__(self, config: DensificationConfig) -> None:
        self.strategy = config.strategy()
        self.state = self.strategy.initialize_state(scene_scale=1.0)

    def before_backward(self, params, optimizers: dict, step: int, info: dict) -> None:
        """Keep the gradient of the projected centres, which decides what grows."""
        self.strategy.step_pre_backward(params, optimizers, self.state, step, info)

    def after_backward(self, params, optimizers: dict, step: int, info: dict, labels: dict[str, Tensor]) -> dict:
        """Accumulate screen-space gradients and, on refinement steps, grow and prune `params` (in place) and the
        per-Gaussian `labels` with them; returns the labels afterwards."""
        self.strategy.check_sanity(params, optimizers)
        self.state.update(labels)
        try:
            self.strategy.step_post_backward(params, optimizers, self.state, step, info, packed=False)
        finally:
            carried = {name: self.state.pop(name) for name in labels}
        return carried
