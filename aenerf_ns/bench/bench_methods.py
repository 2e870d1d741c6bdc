"""The methods `aenerf-bench` compares, each a nerfstudio TrainerConfig built for one dataset.

Peers are nerfstudio's own methods (audio-blind); ours are AE-NeRF (its presets' fast engine, with tri-plane or
hash-grid fields), its ablations (each switches off one of the paper's components, or the audio itself), SSP-NeRF,
AE-NeRF on the paper's engine (two passes of the fields, the reference scheme at every sample) and aenerf-gs (Gaussian
splatting with AE-NeRF's audio and non-audio split). `small`
selects the CPU presets (the `-tiny` methods and shrunken peers), otherwise the full-size GPU configurations.
Our methods' configs are copies of those registered with nerfstudio (this package's entry points), like the
peers'.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aenerf_ns.models.method_contract import talking_head_method, talking_head_methods


@dataclass(frozen=True)
class BenchMethod:
    """One entry of the benchmark."""

    name: str
    """Name in tables, plots and `--methods`."""
    role: Literal["peer", "ours", "ablation"]
    """Audio-blind nerfstudio peer, one of our methods, or an ablation of AE-NeRF."""
    summary: str
    """What it is, in a few words."""
    in_scaling: bool
    """Measured in the render-cost-versus-resolution table (ablations share their parent's cost)."""
    build: Callable[[Path, bool, float, int], object]
    """(data, small, train_fraction, rays per batch) -> TrainerConfig."""
    ray_based: bool = True
    """Renders by evaluating networks along camera rays, so its network evaluations per frame are counted (a
    Gaussian splatting method runs its networks per Gaussian and spends its time rasterizing)."""


OurMethod = str
"""One of our talking-head methods by name (`aenerf`, `ssp-nerf`, `aenerf-gs`, ...): whichever are installed, read
from the entry points (`models.method_contract.talking_head_methods`); `our_method_config` refuses other names."""


def our_method_config(
    method: OurMethod,
    data: Path,
    small: bool = True,
    train_fraction: float = 0.5,
    rays: int | None = None,
    model: dict | None = None,
    sampler: dict | None = None,
):
    """A copy of `method`'s registered TrainerConfig (its CPU preset when `small`) training on `data`.

    `rays` sets the rays per batch (None: the preset's; methods that train on whole frames have none); `model` and
    `sampler` override fields of the model config and of the pixel sampler config.
    """
    from nerfstudio.configs.method_configs import all_methods

    name = talking_head_method(method).preset(small)
    if name not in all_methods:
        raise RuntimeError(f"{name} is not registered with nerfstudio; is aenerf_ns installed (pip install -e .)?")
    config = copy.deepcopy(all_methods[name])
    datamanager = config.pipeline.datamanager
    datamanager.data = datamanager.dataparser.data = Path(data)
    datamanager.dataparser.train_fraction = train_fraction
    if rays is not None and hasattr(datamanager, "train_num_rays_per_batch"):
        datamanager.train_num_rays_per_batch = datamanager.eval_num_rays_per_batch = rays
    _override(config.pipeline.model, model or {})
    if sampler:
        _override(datamanager.pixel_sampler, sampler)
    return config


def _override(target, values: dict) -> None:
    """Set fields of config `target`; a name it does not have is an error, not a new attribute."""
    for key, value in values.items():
        if not hasattr(target, key):
            raise ValueError(f"{type(target).__name__} has no field {key!r}")
        setattr(target, key, value)


def _ours(
    method: OurMethod,
    model: dict | Callable[[bool], dict] | None = None,
    sampler: dict | None = None,
):
    """A builder of `method`'s preset with `model` overrides (a dict, or one per `small` from a function)."""

    def build(data: Path, small: bool, train_fraction: float, rays: int):
        overrides = model(small) if callable(model) else model
        return our_method_config(method, data, small, train_fraction, rays, overrides, sampler)

    return build


def _paper_engine(small: bool) -> dict:
    from aenerf_ns.aenerf.model_presets import paper_engine

    return paper_engine(tiny=small)


def _peer(name: str):
    def build(data: Path, small: bool, train_fraction: float, rays: int):
        from aenerf_ns.bench.peer_methods import peer_config

        return peer_config(name, data, rays, small, train_fraction)

    return build


METHODS: tuple[BenchMethod, ...] = (
    BenchMethod("nerfacto", "peer", "nerfstudio nerfacto: static scene, audio-blind", True, _peer("nerfacto")),
    BenchMethod("dnerf", "peer", "nerfstudio D-NeRF: conditioned on time, audio-blind", True, _peer("dnerf")),
    BenchMethod(
        "aenerf",
        "ours",
        "AE-NeRF: proposal grids, tri-plane fields, reference scheme once per ray",
        True,
        _ours("aenerf"),
    ),
    BenchMethod(
        "aenerf-hashgrid",
        "ours",
        "AE-NeRF with hash-grid fields instead of tri-planes",
        True,
        _ours("aenerf", {"position_encoding": "hashgrid"}),
    ),
    BenchMethod(
        "aenerf-no-aaa",
        "ablation",
        "AE-NeRF without audio-aware aggregation of reference features",
        False,
        _ours("aenerf", {"use_aaa": False}),
    ),
    BenchMethod(
        "aenerf-single-field",
        "ablation",
        "AE-NeRF with one field instead of the audio and non-audio pair",
        False,
        _ours("aenerf", {"use_dual_fields": False}),
    ),
    BenchMethod(
        "aenerf-uniform-rays",
        "ablation",
        "AE-NeRF with rays drawn uniformly instead of region-wise",
        False,
        _ours("aenerf", sampler={"audio_region_fraction": -1.0, "mouth_fraction": 0.0}),
    ),
    BenchMethod(
        "aenerf-no-audio",
        "ablation",
        "AE-NeRF without audio (and so without audio-aware aggregation): its own audio-blind floor",
        False,
        _ours("aenerf", {"use_audio": False, "use_aaa": False}),
    ),
    BenchMethod("ssp-nerf", "ours", "SSP-NeRF: one field with parsing, semantic rays, torso", True, _ours("ssp-nerf")),
    BenchMethod(
        "aenerf-paper",
        "ours",
        "AE-NeRF on the paper's engine: two passes of positional MLPs, reference scheme at every sample",
        True,
        _ours("aenerf", _paper_engine),
    ),
    BenchMethod(
        "aenerf-gs",
        "ours",
        "aenerf-gs: Gaussian splatting, audio-driven lower-face Gaussians, the rest audio-free",
        True,
        _ours("aenerf-gs"),
        ray_based=False,
    ),
)
"""The listed methods, in table order (a new method goes last: plots colour the n-th method with matplotlib's Cn)."""

BY_NAME: dict[str, BenchMethod] = {m.name: m for m in METHODS}
"""Listed methods by name."""


def roster() -> tuple[BenchMethod, ...]:
    """`METHODS`, then every other installed talking-head method (read from the entry points), so a newly
    registered method is benchmarked with no entry here; a row in `METHODS` only gives it its own summary."""
    extra = tuple(
        BenchMethod(m.name, "ours", f"{m.name}: installed talking-head method", True, _ours(m.name), m.trains_on_rays)
        for m in talking_head_methods()
        if m.name not in BY_NAME
    )
    return METHODS + extra


def bench_method(name: str) -> BenchMethod:
    """The roster's method called `name` (KeyError naming the choices otherwise)."""
    by_name = {m.name: m for m in roster()}
    if name not in by_name:
        raise KeyError(f"unknown method {name!r}; choose from {list(by_name)}")
    return by_name[name]


REFERENCE = "nerfacto"
"""Timings are also given as ratios to this method, measured in the same run."""
