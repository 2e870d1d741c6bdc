"""Entry point registering the `talking-head` dataparser with nerfstudio (kept light: imported at discovery)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.utils.safe_checkpoint import allow_numpy_scalars

allow_numpy_scalars()  # as in method_configs/common.py: nerfstudio's tools then read runs that hold numpy scalars

talking_head_dataparser = DataParserSpecification(
    config=TalkingHeadDataParserConfig(),
    description="Talking-head video: frames, head poses, parsing maps and speech audio (aenerf_ns format)",
)
