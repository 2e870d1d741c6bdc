"""Where the classes named by older runs' config.yml files live now, so those runs keep loading.

A run's config.yml names every config, model and data class by dotted path in YAML python tags, e.g.
`!!python/object:aenerf_ns.talking_head_model.TalkingHeadModelConfig` or
`!!python/name:aenerf_ns.aenerf_model.AENeRFModel`. When a module changes place, its earlier path goes into
`LEGACY_MODULES`; when a class or function is renamed, its earlier full name goes into `LEGACY_NAMES`.
`upgrade_python_tags` rewrites a config.yml's tags to the current paths before the YAML is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LEGACY_MODULES: dict[str, str] = {
    "aenerf_ns.aenerf_model": "aenerf_ns.aenerf.aenerf_model",
    "aenerf_ns.audio_aware_aggregation": "aenerf_ns.aenerf.audio_aware_aggregation",
    "aenerf_ns.warper": "aenerf_ns.aenerf.warper",
    "aenerf_ns.reference_views": "aenerf_ns.aenerf.reference_views",
    "aenerf_ns.region_sampler": "aenerf_ns.aenerf.region_sampler",
    "aenerf_ns.mask_blend": "aenerf_ns.aenerf.mask_blend",
    "aenerf_ns.ssp_nerf_model": "aenerf_ns.ssp_nerf.ssp_nerf_model",
    "aenerf_ns.torso_deformation": "aenerf_ns.model_components.torso_deformation",
    "aenerf_ns.ssp_nerf.torso_deformation": "aenerf_ns.model_components.torso_deformation",
    "aenerf_ns.semantic_sampler": "aenerf_ns.ssp_nerf.semantic_sampler",
    "aenerf_ns.talking_head_model": "aenerf_ns.models.talking_head_model",
    "aenerf_ns.audio_field": "aenerf_ns.fields.audio_field",
    "aenerf_ns.viewer_audio": "aenerf_ns.viewer.viewer_audio",
    "aenerf_ns.models.audio_field": "aenerf_ns.fields.audio_field",
    "aenerf_ns.models.grid_density_field": "aenerf_ns.fields.grid_density_field",
    "aenerf_ns.models.mlp": "aenerf_ns.field_components.mlp",
    "aenerf_ns.models.triplane_encoding": "aenerf_ns.field_components.triplane_encoding",
    "aenerf_ns.models.proposal_sampling": "aenerf_ns.model_components.proposal_sampling",
    "aenerf_ns.models.torso_deformation": "aenerf_ns.model_components.torso_deformation",
    "aenerf_ns.models.viewer_audio": "aenerf_ns.viewer.viewer_audio",
    "aenerf_ns.models.audio_player": "aenerf_ns.viewer.audio_player",
    "aenerf_ns.models.viewer_camera": "aenerf_ns.viewer.viewer_camera",
    "aenerf_ns.aenerf.engines": "aenerf_ns.aenerf.model_presets",
    "aenerf_ns.audio_io": "aenerf_ns.audio.audio_io",
    "aenerf_ns.audio_features": "aenerf_ns.audio.audio_features",
    "aenerf_ns.audio_encoder": "aenerf_ns.audio.audio_code",
    "aenerf_ns.audio.audio_encoder": "aenerf_ns.audio.audio_code",
    "aenerf_ns.audio_smoothing": "aenerf_ns.audio.audio_smoothing",
    "aenerf_ns.dataset_format": "aenerf_ns.data.dataset_format",
    "aenerf_ns.parsing_labels": "aenerf_ns.data.parsing_labels",
    "aenerf_ns.talking_head_dataset": "aenerf_ns.data.talking_head_dataset",
    "aenerf_ns.talking_head_datamanager": "aenerf_ns.data.talking_head_datamanager",
    "aenerf_ns.dataparsers.talking_head_dataparser": "aenerf_ns.data.talking_head_dataparser",
    "aenerf_ns.face_tracking": "aenerf_ns.faces.face_tracking",
    "aenerf_ns.tflite_graph": "aenerf_ns.faces.tflite_graph",
    "aenerf_ns.face_parsing": "aenerf_ns.preprocess.face_parsing",
    "aenerf_ns.head_pose": "aenerf_ns.preprocess.head_pose",
    "aenerf_ns.video_frames": "aenerf_ns.preprocess.video_frames",
    "aenerf_ns.process_video": "aenerf_ns.preprocess.process_video",
    "aenerf_ns.synthetic_head": "aenerf_ns.synthetic.synthetic_head",
    "aenerf_ns.synthetic_speech": "aenerf_ns.synthetic.synthetic_speech",
    "aenerf_ns.synthetic_dataset": "aenerf_ns.synthetic.synthetic_dataset",
    "aenerf_ns.checkpoints": "aenerf_ns.inference.checkpoints",
    "aenerf_ns.audio_render": "aenerf_ns.inference.audio_render",
    "aenerf_ns.video_io": "aenerf_ns.inference.video_io",
    "aenerf_ns.evaluation": "aenerf_ns.evaluation.evaluate",
    "aenerf_ns.sync_metrics": "aenerf_ns.evaluation.sync_metrics",
    "aenerf_ns.mouth_opening": "aenerf_ns.evaluation.mouth_landmarks",
    "aenerf_ns.bench_run": "aenerf_ns.bench.bench_run",
    "aenerf_ns.bench_methods": "aenerf_ns.bench.bench_methods",
    "aenerf_ns.peer_methods": "aenerf_ns.bench.peer_methods",
    "aenerf_ns.resource_meter": "aenerf_ns.bench.resource_meter",
    "aenerf_ns.image_metrics": "aenerf_ns.utils.image_metrics",
    "aenerf_ns.atomic_io": "aenerf_ns.utils.atomic_io",
}
"""Module paths that earlier releases saved in config.yml -> the module that holds the same classes now."""

LEGACY_NAMES: dict[str, str] = {
    "aenerf_ns.talking_head_datamanager.SemanticDataManagerConfig": (
        "aenerf_ns.data.talking_head_datamanager.TalkingHeadDataManagerConfig"
    ),
    "aenerf_ns.data.talking_head_datamanager.SemanticDataManagerConfig": (
        "aenerf_ns.data.talking_head_datamanager.TalkingHeadDataManagerConfig"
    ),
    "aenerf_ns.audio_encoder.AudioEncoder": "aenerf_ns.audio.audio_code.ConvAudioCode",
    "aenerf_ns.audio.audio_encoder.AudioEncoder": "aenerf_ns.audio.audio_code.ConvAudioCode",
}
"""Full dotted names of renamed classes or functions -> their current full names (checked before modules)."""

PYTHON_TAG = re.compile(
    r"(?P<tag>(?:!!|tag:yaml\.org,2002:)python/(?P<kind>object/apply|object/new|object|name|module))"
    r":(?P<path>[A-Za-z_][\w.]*)"
)
"""A PyYAML python tag and the dotted path it names (`!!python/object:pkg.module.Class`)."""


def current_path(
    path: str,
    names_a_module: bool = False,
    modules: Mapping[str, str] = LEGACY_MODULES,
    names: Mapping[str, str] = LEGACY_NAMES,
) -> str:
    """The current dotted path of `path`, a module (`names_a_module`) or an object `module.Name`.

    Objects are looked up by full name first, then by their module; the last component is the object's own
    name, since PyYAML writes `module.__name__` for classes and functions. Unknown paths are returned as is.
    """
    if names_a_module:
        return modules.get(path, path)
    if path in names:
        return names[path]
    module, _, name = path.rpartition(".")
    return f"{modules[module]}.{name}" if module in modules else path


def upgrade_python_tags(
    yaml_text: str, modules: Mapping[str, str] = LEGACY_MODULES, names: Mapping[str, str] = LEGACY_NAMES
) -> str:
    """`yaml_text` with the dotted paths in its python tags rewritten by `current_path`; other text untouched."""

    def rewrite(match: re.Match) -> str:
        path = current_path(match["path"], match["kind"] == "module", modules, names)
        return f"{match['tag']}:{path}"

    return PYTHON_TAG.sub(rewrite, yaml_text)


MOVED_SETTINGS: tuple[tuple[str, str, str], ...] = (("datamanager.dataparser", "model", "num_references"),)
"""(old owner, new owner, setting) below `pipeline`: settings that moved from one config class to another."""


def carry_moved_settings(config) -> None:
    """Give settings that an older run saved on their former config class to the class that reads them now."""
    for old_owner, new_owner, name in MOVED_SETTINGS:
        source, target = config.pipeline, config.pipeline
        for part in old_owner.split("."):
            source = getattr(source, part)
        for part in new_owner.split("."):
            target = getattr(target, part)
        if hasattr(type(source), name) or name not in vars(source):
            continue  # a current run, or one that never had the setting
        value = vars(source).pop(name)
        if hasattr(target, name):
            setattr(target, name, value)
