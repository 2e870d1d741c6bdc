"""`aenerf-train`: `ns-train` with data-parallel training that also runs on CPU processes.

Same methods, options and output folders as `ns-train`. With `--machine.num-devices N` (and, across machines,
`--machine.num-machines`, `--machine.machine-rank`, `--machine.dist-url tcp://<machine 0>:<port>`) it starts one
process per GPU (NCCL), or per CPU process with `--machine.device-type cpu` (gloo); each process reads its own
shard of the training identities, and the replicas' parameters are checked to be identical at the end:

    aenerf-train aenerf --data data/base --machine.num-devices 8
"""

from __future__ import annotations

import tyro


def main(config) -> None:
    """nerfstudio's `ns-train` main, with this package's launcher."""
    import yaml
    from nerfstudio.utils.rich_utils import CONSOLE

    from aenerf_ns.engine.distributed_launch import launch
    from aenerf_ns.engine.talking_head_pipeline import DataParallelUnsupported, refuse_data_parallel

    if config.data:
        config.pipeline.datamanager.data = config.data
    if config.load_config:
        CONSOLE.log(f"Loading pre-set config from: {config.load_config}")
        config = yaml.load(config.load_config.read_text(), Loader=yaml.Loader)
    try:
        refuse_data_parallel(config.pipeline.model._target, config.machine.num_machines * config.machine.num_devices)
    except DataParallelUnsupported as exc:
        CONSOLE.print(f"[bold red]{config.method_name}: {exc}")
        raise SystemExit(2) from None
    config.set_timestamp()
    config.print_to_terminal()
    config.save_config()
    launch(config)


def entrypoint() -> None:
    """Console script `aenerf-train`."""
    from nerfstudio.configs.config_utils import convert_markup_to_ansi
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    tyro.extras.set_accent_color("bright_yellow")
    main(tyro.cli(AnnotatedBaseConfigUnion, description=convert_markup_to_ansi(__doc__)))


if __name__ == "__main__":
    entrypoint()
