"""The contract a talking-head method meets, and the registry of the installed ones.

A method is a nerfstudio method whose model drives a person's face with audio. To be one, it provides
1. a model class that subclasses `audio_driven_model.AudioDrivenModel` (for rays through fields,
   `talking_head_model.TalkingHeadModel`), with its config subclassing `AudioDrivenModelConfig`;
2. `get_outputs` giving at least `FOREGROUND_OUTPUTS` (the foreground, not yet over the background plate, and
   parsing probabilities over every class, background first), and `get_outputs_for_camera` ending in
   `AudioDrivenModel.finish_camera_outputs`, which adds what `CAMERA_OUTPUTS` adds (the plate composited in);
3. audio from `AudioDrivenModel.audio_codes(camera_or_ray_metadata, count)`: a camera whose metadata is None or
   names no `audio_index` (the live viewer's, nerfstudio's own tools') renders the audio the viewer's controls
   choose, else the clip average; it renders identity 0 when its metadata names no `identity`; fields size
   their audio input by `AudioDrivenModel.audio_dim` (the code, plus one value with `opening_condition`);
4. its trainer configs built by `method_configs.common.talking_head_trainer` (and `tiny_trainer`), whose pipeline
   (`engine.talking_head_pipeline.TalkingHeadPipeline`) refuses a checkpoint that another method wrote; a model that
   loads checkpoints itself raises a `RuntimeError` or `ValueError` on a foreign one, which
   `inference.checkpoints.load_trained_pipeline` reports with the file and the method;
5. two entry points in the `nerfstudio.method_configs` group of pyproject.toml: `<name>`, the full-size (GPU)
   MethodSpecification, and `<name>-tiny`, its CPU preset (minutes on the synthetic sample), both with that model;
   the package reinstalled (`pip install -e .`) so that the entry points are seen.

`talking_head_methods()` finds the installed methods from those entry points alone, so the benchmark's roster
(`bench.bench_methods`), the loaders' messages and the contract tests (tests/test_method_contract.py) cover a newly
registered method with no other edit. A model class may set `supports_data_parallel = False` (its parameter set
changes during training), which refuses data-parallel training (`engine.talking_head_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

METHOD_CONFIGS_GROUP = "nerfstudio.method_configs"
"""The entry-point group nerfstudio discovers methods in (`ns-train <name>`); the registry reads it too."""

TINY_SUFFIX = "-tiny"
"""A method `<name>`'s CPU preset is registered as `<name>-tiny`."""

FOREGROUND_OUTPUTS: tuple[str, ...] = ("rgb", "accumulation", "depth", "parsing_probs", "audio_region")
"""What every method's `get_outputs` gives (training and rendering alike): the foreground colour (not yet over the
plate), its opacity, depth, parsing probabilities over all classes (background = 1 - opacity) and the probability
of the audio region (lower face and mouth)."""

CAMERA_OUTPUTS: tuple[str, ...] = (*FOREGROUND_OUTPUTS, "rgb_foreground", "parsing")
"""What every method's `get_outputs_for_camera` gives (after `finish_camera_outputs`): `rgb` now composited over
the identity's background plate, the foreground as `rgb_foreground`, and `parsing` coloured by class."""


@dataclass(frozen=True)
class TalkingHeadMethod:
    """One installed talking-head method, as its entry points register it."""

    name: str
    """The full-size (GPU) preset's name: `ns-train <name>`, and the method's name in tables and `--method`."""
    tiny: str
    """The CPU preset's name (`<name>-tiny`), for tests and the benchmark's `small` runs."""
    model_class: type
    """The model class both presets build (a subclass of `AudioDrivenModel`)."""
    trains_on_rays: bool
    """Its datamanager draws batches of rays (a rays-per-batch option), not whole frames."""

    def preset(self, small: bool) -> str:
        """The registered name of the CPU preset (`small`) or of the full-size one."""
        return self.tiny if small else self.name

    @property
    def trains_data_parallel(self) -> bool:
        """Whether several processes can train one model (`supports_data_parallel` of the model class)."""
        return bool(getattr(self.model_class, "supports_data_parallel", True))


def _specifications() -> dict[str, object]:
    """Every MethodSpecification of the entry-point group by name, loaded now (never at import: nerfstudio imports
    our method configs through these entry points, and they import this package's models)."""
    return {point.name: point.load() for point in entry_points(group=METHOD_CONFIGS_GROUP)}


@cache
def talking_head_methods() -> tuple[TalkingHeadMethod, ...]:
    """The installed talking-head methods, in registration order: the entry points whose model subclasses
    `AudioDrivenModel`, each with its `-tiny` preset (a method without one breaks the contract: ValueError)."""
    from aenerf_ns.models.audio_driven_model import AudioDrivenModel

    models = {}
    for name, spec in _specifications().items():
        config = getattr(spec, "config", None)
        target = getattr(getattr(getattr(config, "pipeline", None), "model", None), "_target", None)
        if isinstance(target, type) and issubclass(target, AudioDrivenModel):
            models[name] = (target, hasattr(config.pipeline.datamanager, "train_num_rays_per_batch"))
    methods = []
    for name, (model_class, trains_on_rays) in models.items():
        if name.endswith(TINY_SUFFIX) and name.removesuffix(TINY_SUFFIX) in models:
            continue
        tiny = name + TINY_SUFFIX
        if tiny not in models:
            raise ValueError(
                f"talking-head method {name!r} registers no CPU preset {tiny!r}: add a {tiny} entry point to the "
                f"{METHOD_CONFIGS_GROUP} group (see aenerf_ns.models.method_contract)"
            )
        if models[tiny][0] is not model_class:
            raise ValueError(f"{tiny!r} builds {models[tiny][0].__name__}, but {name!r} builds {model_class.__name__}")
        methods.append(TalkingHeadMethod(name, tiny, model_class, trains_on_rays))
    return tuple(methods)


def registered_names() -> list[str]:
    """The installed talking-head methods' names (full-size presets), in registration order."""
    return [method.name for method in talking_head_methods()]


def talking_head_method(name: str) -> TalkingHeadMethod:
    """The installed method called `name` (not its `-tiny` preset's name); ValueError naming the installed ones."""
    for method in talking_head_methods():
        if method.name == name:
            return method
    raise ValueError(f"unknown talking-head method {name!r}; installed: {', '.join(registered_names())}")


def preset_method(preset: str) -> TalkingHeadMethod | None:
    """The method that registers `preset` (its full-size or CPU preset's name), or None for another method's."""
    for method in talking_head_methods():
        if preset in (method.name, method.tiny):
            return method
    return None
