"""Which of AE-NeRF's two fields renders a ray: the region sampler assigns a group, the model honours it.

Rays without a group (evaluation, the viewer, rendering) count as `OVERLAP`: both fields render them.
"""

from __future__ import annotations

AUDIO_ONLY = 0
"""Ray of the audio region that only the audio-associated field renders."""
OTHER_ONLY = 1
"""Ray outside the audio region that only the audio-independent field renders."""
OVERLAP = 2
"""Ray rendered by both fields and blended by their masks (every ray at inference)."""
