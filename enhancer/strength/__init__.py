"""Signalled strength: the encoder chooses, per block, how strongly the enhancer acts.

- :class:`StrengthMap` (:mod:`.strength_map`): per-block residual scales, expanded with
  smooth ramps; ``enhanced = decoded + expand(map) * residual``.
- :class:`MapChooser` / :class:`SignalConfig` (:mod:`.choose`): the encoder's choice with the
  source in hand (LPIPS, MSE, a mix or DISTS; a PSNR floor; hysteresis against flicker).
- :func:`encode_map` / :func:`decode_map` (:mod:`.coding`): a few checked bytes per frame.
- :mod:`.sei`: the same bytes as H.264/HEVC user-data-unregistered SEI NAL units.
"""

from enhancer.strength.choose import OBJECTIVES, MapChooser, SignalConfig
from enhancer.strength.coding import decode_map, encode_map
from enhancer.strength.strength_map import (
    DEFAULT_SCALES,
    StrengthMap,
    StrengthMapError,
)

__all__ = ["DEFAULT_SCALES", "OBJECTIVES", "MapChooser", "SignalConfig", "StrengthMap",
           "StrengthMapError", "decode_map", "encode_map"]
