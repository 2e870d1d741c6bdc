"""Runs saved by earlier releases, whose config.yml names classes by their earlier module paths, keep loading."""

import importlib.util

import numpy as np
import pytest
import torch

OLD_STYLE_CONFIG = """\
pipeline: !!python/object:aenerf_ns.talking_head_model.TalkingHeadModelConfig
  _target: !!python/name:aenerf_ns.aenerf_model.AENeRFModel ''
  parser: !!python/object:aenerf_ns.dataparsers.talking_head_dataparser.TalkingHeadDataParserConfig {}
  report: !!python/object/apply:aenerf_ns.evaluation.SomeEnum [1]
  current: !!python/object:aenerf_ns.evaluation.evaluate.FrameScores {}
  base: !!python/name:nerfstudio.pipelines.base_pipeline.VanillaPipeline ''
  module: !!python/module:aenerf_ns.audio_io
  verbatim: !<tag:yaml.org,2002:python/name:aenerf_ns.warper.Warper> ''
  note: aenerf_ns.aenerf_model is plain text here
"""


def test_python_tags_are_rewritten_to_the_current_modules():
    from aenerf_ns.inference.legacy_modules import upgrade_python_tags

    lines = upgrade_python_tags(OLD_STYLE_CONFIG).splitlines()
    assert lines == [
        "pipeline: !!python/object:aenerf_ns.models.talking_head_model.TalkingHeadModelConfig",
        "  _target: !!python/name:aenerf_ns.aenerf.aenerf_model.AENeRFModel ''",
        "  parser: !!python/object:aenerf_ns.data.talking_head_dataparser.TalkingHeadDataParserConfig {}",
        "  report: !!python/object/apply:aenerf_ns.evaluation.evaluate.SomeEnum [1]",
        "  current: !!python/object:aenerf_ns.evaluation.evaluate.FrameScores {}",
        "  base: !!python/name:nerfstudio.pipelines.base_pipeline.VanillaPipeline ''",
        "  module: !!python/module:aenerf_ns.audio.audio_io",
        "  verbatim: !<tag:yaml.org,2002:python/name:aenerf_ns.aenerf.warper.Warper> ''",
        "  note: aenerf_ns.aenerf_model is plain text here",
    ]


def test_renamed_classes_are_looked_up_before_their_module():
    from aenerf_ns.inference.legacy_modules import upgrade_python_tags

    renames = {"aenerf_ns.aenerf_model.OldModel": "aenerf_ns.aenerf.aenerf_model.AENeRFModel"}
    text = "a: !!python/name:aenerf_ns.aenerf_model.OldModel ''\nb: !!python/name:aenerf_ns.aenerf_model.Other ''"
    assert upgrade_python_tags(text, names=renames) == (
        "a: !!python/name:aenerf_ns.aenerf.aenerf_model.AENeRFModel ''\n"
        "b: !!python/name:aenerf_ns.aenerf.aenerf_model.Other ''"
    )


def test_every_current_module_in_the_table_exists():
    from aenerf_ns.inference.legacy_modules import LEGACY_MODULES

    for old, new in LEGACY_MODULES.items():
        assert importlib.util.find_spec(new) is not None, f"{old} -> {new}: no such module"


def _first_frame(pipeline) -> torch.Tensor:
    from aenerf_ns.inference.audio_render import identity_poses, render_cameras

    poses = identity_poses(pipeline.datamanager.train_dataparser_outputs.cameras, 0)
    (camera,) = render_cameras(poses, np.array([0]), 0, scale=0.25)
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera.to(pipeline.model.device))["rgb"]


def test_a_run_saved_with_the_earlier_module_paths_loads_and_renders(tiny_run, tmp_path):
    import yaml

    from aenerf_ns.inference.checkpoints import load_trained_pipeline
    from aenerf_ns.inference.legacy_modules import LEGACY_MODULES, upgrade_python_tags

    old_text = upgrade_python_tags(tiny_run.read_text(), modules={new: old for old, new in LEGACY_MODULES.items()})
    assert "!!python/object:aenerf_ns.aenerf_model.AENeRFModelConfig" in old_text
    assert "!!python/object:aenerf_ns.dataparsers.talking_head_dataparser.TalkingHeadDataParserConfig" in old_text
    assert "aenerf_ns.aenerf.aenerf_model" not in old_text and "aenerf_ns.data." not in old_text
    with pytest.raises(yaml.constructor.ConstructorError, match="aenerf_ns"):
        yaml.load(old_text, Loader=yaml.Loader)  # plain YAML cannot find the earlier modules

    old_run = tmp_path / "old_run"
    old_run.mkdir()
    (old_run / "config.yml").write_text(old_text)
    (old_run / "nerfstudio_models").symlink_to(tiny_run.parent / "nerfstudio_models")
    config, pipeline, _, step = load_trained_pipeline(old_run / "config.yml", test_mode="inference")
    assert type(config.pipeline.model).__module__ == "aenerf_ns.aenerf.aenerf_model"
    assert step == 1
    frame = _first_frame(pipeline)
    assert frame.shape == (12, 12, 3) and torch.isfinite(frame).all()

    _, current, _, _ = load_trained_pipeline(tiny_run, test_mode="inference")
    assert torch.equal(frame, _first_frame(current)), "the old-style config loads the same trained weights"


def test_settings_saved_on_their_former_config_class_reach_the_current_one():
    """Older runs kept `num_references` on the dataparser; the AE-NeRF model reads it now."""
    import yaml

    from aenerf_ns.inference.legacy_modules import carry_moved_settings, upgrade_python_tags
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    config = aenerf_tiny_config()
    vars(config.pipeline.datamanager.dataparser)["num_references"] = 3  # as yaml restores an older run's field
    carry_moved_settings(config)
    assert config.pipeline.model.num_references == 3
    assert "num_references" not in vars(config.pipeline.datamanager.dataparser)

    current = aenerf_tiny_config()
    carry_moved_settings(current)  # a current run is left as it is
    assert current.pipeline.model.num_references == aenerf_tiny_config().pipeline.model.num_references

    old = "dm: !!python/object:aenerf_ns.talking_head_datamanager.SemanticDataManagerConfig {}\n"
    loaded = yaml.load(upgrade_python_tags(old), Loader=yaml.Loader)["dm"]
    assert type(loaded).__name__ == "TalkingHeadDataManagerConfig"


def test_a_run_saved_before_the_engine_options_keeps_the_papers_engine(sample_dataset, small_model):
    """A config.yml without the engine settings (written before they existed) gets the engine it was trained
    with: the model config's own defaults are the paper's, only the presets set the fast engine."""
    import yaml

    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    config = aenerf_tiny_config()
    config.pipeline.datamanager.data = sample_dataset
    for key, value in small_model.items():
        setattr(config.pipeline.model, key, value)
    engine_keys = ("ray_sampling:", "reference_points:", "position_encoding:", "audio_field_skip_threshold:")
    text = yaml.dump(config)
    assert "reference_points: surface" in text
    old_text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(engine_keys))
    old = yaml.load(old_text, Loader=yaml.Loader)
    model = old.pipeline.model
    engine = (model.ray_sampling, model.reference_points, model.position_encoding)
    assert engine == ("two-pass", "per-sample", "positional")
    torch.manual_seed(0)
    pipeline = old.pipeline.setup(device="cpu", test_mode="val")
    assert pipeline.model.proposal_sampling is None and "rgb_loss_coarse" in pipeline.get_train_loss_dict(0)[1]
