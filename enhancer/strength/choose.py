"""The encoder's choice of a strength map, with the source in hand.

For every block and every scale ``s`` of the set, the encoder scores ``decoded + s *
residual`` against the source with the user's objective (LPIPS, MSE, a mix, or DISTS per
frame), then picks per block the scale that minimises

    cost[s] + lam * (a * mse[s] + b * flicker[s]) + switch * [s differs from the previous choice]

``flicker[s]`` is the block's temporal error, ``|(out_t - out_{t-1}) - (src_t - src_{t-1})|``
(the temporal-consistency metric's own term), with ``out_{t-1}`` the previous frame as the
decoder made it. ``lam >= 0`` is the smallest value (bisection) that keeps the frame's PSNR
within ``max_psnr_drop`` dB of the decode and the sequence's temporal error so far within
``max_flicker_rise`` of the plain decode's (``|(dec_t - dec_{t-1}) - (src_t - src_{t-1})|``):
the bound is on the running total, as the metric is a mean over the frames, so a frame
steadier than its decode leaves room for a later one, and one that could not meet its bound
is made up by the next; ``a`` and ``b`` put both terms on the objective's scale. ``switch``
(``hysteresis`` x the block's decode cost) keeps a block's scale unless another is clearly
better. The blended frame (smooth ramps, as
the decoder will see it) is then checked whole: if it breaks a bound or is worse than the
plain decode on the objective (or on DISTS, ``keep_dists``), ``lam`` grows. If no new map
passes, the candidates that keep the objective (and DISTS) and the PSNR floor (the last
map, those tried, the choice hysteresis alone would make, the enhancer's default strength
everywhere, the decode itself) are ranked: the best objective among those within the
temporal bound, else the steadiest. So a signalled frame is never worse than its decode on
the objective the user chose (nor on DISTS with ``keep_dists``), nor more than
``max_psnr_drop`` dB below it in PSNR; the temporal bound holds where any candidate
meets it (not always: dropping a strength is itself a step), and a frame that misses it
leaves less room for the next ones. A bound on the flicker of the map held steady (ignoring
the step of a change) was tried and measured worse on both LPIPS and flicker
(docs/strength.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from enhancer.strength.strength_map import (
    DEFAULT_SCALES,
    StrengthMap,
    StrengthMapError,
    check_block,
    check_scales,
    grid_shape,
)

OBJECTIVES = ("lpips", "mse", "mix", "dists")


@dataclass(frozen=True)
class SignalConfig:
    """How the encoder chooses the map.

    objective:      ``lpips`` (LPIPS-Alex per block), ``mse``, ``mix`` (LPIPS and MSE, each
                    relative to the decode's, weighted 1 : ``mse_weight``) or ``dists``
                    (DISTS, one scale per frame: DISTS has no per-block form).
    block:          block side in pixels (32-128, a multiple of 8).
    scales:         the residual scales to choose from (multiples of 0.25 in [0, 2]).
    max_psnr_drop:  the frame's PSNR may fall at most this many dB below the decode's.
    hysteresis:     a block keeps its previous scale unless another one is better by this
                    fraction of the block's decode cost (0: choose every frame afresh).
    mse_weight:     the MSE weight of ``mix``.
    min_gain:       a frame keeps the previous frame's map (and sends nothing) unless a new
                    one lowers its objective by more than this fraction of the decode's.
    max_flicker_rise: the sequence's temporal error, summed over its frames so far, may
                    exceed the plain decode's by at most this fraction (None: no temporal
                    bound, hysteresis only).
    keep_dists:     (lpips, mse, mix) the blended frame's DISTS may not exceed the decode's,
                    checked on the whole frame as the PSNR floor is (DISTS has no per-block
                    form): LPIPS alone let DISTS rise on soft film. Off by default: it
                    costs the encoder a VGG16 pass per frame and per map it checks (the
                    demo's signalled rows took 3x as long).
    """

    objective: str = "lpips"
    block: int = 64
    scales: tuple[float, ...] = field(default=DEFAULT_SCALES)
    max_psnr_drop: float = 0.05
    hysteresis: float = 0.02
    mse_weight: float = 0.5
    min_gain: float = 0.01
    max_flicker_rise: float | None = 0.0
    keep_dists: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise StrengthMapError(f"signal objective must be one of {OBJECTIVES}, got "
                                   f"{self.objective!r}")
        check_block(self.block)
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        check_scales(self.scales)
        if 0.0 not in self.scales:
            raise StrengthMapError(f"the scale set {self.scales} must contain 0 (the decode "
                                   "itself), the encoder's fallback")
        if not (math.isfinite(self.max_psnr_drop) and self.max_psnr_drop >= 0):
            raise StrengthMapError(f"max_psnr_drop must be a finite number >= 0 dB, got "
                                   f"{self.max_psnr_drop}")
        if not (math.isfinite(self.hysteresis) and self.hysteresis >= 0):
            raise StrengthMapError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if not (math.isfinite(self.min_gain) and self.min_gain >= 0):
            raise StrengthMapError(f"min_gain must be >= 0, got {self.min_gain}")
        if self.max_flicker_rise is not None and not (math.isfinite(self.max_flicker_rise)
                                                      and self.max_flicker_rise >= 0):
            raise StrengthMapError(f"max_flicker_rise must be >= 0 or None, got "
                                   f"{self.max_flicker_rise}")
        if not (math.isfinite(self.mse_weight) and self.mse_weight >= 0):
            raise StrengthMapError(f"mse_weight must be >= 0, got {self.mse_weight}")


@functools.lru_cache(maxsize=2)
def _spatial_lpips(device: str):
    """A private LPIPS-Alex that returns the per-pixel distance map (B, 1, H, W)."""
    from enhancer.metrics.lpips import LPIPSLoss

    loss = LPIPSLoss("alex").to(device)
    loss.model.spatial = True
    return loss.model


def _block_sum(pixel_map: Tensor, block: int) -> np.ndarray:
    """(1, 1, H, W) -> (rows, cols) float64: each block's sum over its pixels in the frame."""
    height, width = pixel_map.shape[-2:]
    rows, cols = grid_shape(height, width, block)
    pad = (0, cols * block - width, 0, rows * block - height)
    total = F.avg_pool2d(F.pad(pixel_map.float(), pad), block, divisor_override=1)
    return total[0, 0].double().cpu().numpy()


def _block_mean(pixel_map: Tensor, block: int) -> np.ndarray:
    """(1, 1, H, W) -> (rows, cols) float64: each block's mean over its pixels in the frame."""
    return _block_sum(pixel_map, block) / _block_sum(torch.ones_like(pixel_map), block)


def _mse(a: Tensor, b: Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def _dists_to(source: Tensor):
    """``frame -> DISTS(frame, source)`` (a float), the source's reference computed once."""
    from enhancer.metrics.dists import get_dists_model

    model = get_dists_model(device=source.device)
    reference = model.reference(source)
    return lambda frame: float(model.distance(model.features(frame), reference))


class MapChooser:
    """Chooses one frame's map after another (it remembers the previous choice and the
    previous source, decode and output frame, for hysteresis and the temporal bound)."""

    def __init__(self, config: SignalConfig, default_scale: float | None = None):
        """``default_scale``: the enhancer's strength where no map is sent (its checkpoint's
        ``residual_scale``); a uniform map at it is among the fallbacks, so a signalled
        frame does no worse than one without maps where that passes the checks."""
        self.config, self.default_scale = config, default_scale
        self.previous: StrengthMap | None = None
        self.previous_frames: tuple[Tensor, Tensor, Tensor] | None = None  # source, dec, out
        self.flicker_totals = (0.0, 0.0)  # the sequence's temporal error: decode, output

    @torch.no_grad()
    def choose(self, source: Tensor, decoded: Tensor, residual: Tensor) -> StrengthMap:
        """``source``, ``decoded``, ``residual`` (1, 3, H, W): the map for this frame."""
        if source.shape != decoded.shape or residual.shape != decoded.shape:
            raise StrengthMapError(f"source {tuple(source.shape)}, decoded "
                                   f"{tuple(decoded.shape)} and residual "
                                   f"{tuple(residual.shape)} must have one shape")
        config = self.config
        if self.previous_frames is not None and self.previous_frames[0].shape != source.shape:
            self.previous_frames = None  # a new sequence (or size): no temporal reference
        if self.previous_frames is None:
            self.flicker_totals = (0.0, 0.0)
        candidates = [(decoded + s * residual).clamp(0, 1) for s in config.scales]
        zero = config.scales.index(0.0)
        if config.objective == "dists":
            strength = self._choose_per_frame(source, decoded, candidates)
        else:
            strength = self._choose_per_block(source, decoded, residual, candidates, zero)
        output = strength.apply(decoded, residual)
        if self.previous_frames is not None:
            _, previous_decoded, previous_output = self.previous_frames
            decode_total, output_total = self.flicker_totals
            self.flicker_totals = (
                decode_total + float(self._flicker(source, decoded, previous_decoded).mean()),
                output_total + float(self._flicker(source, output, previous_output).mean()))
        self.previous = strength
        self.previous_frames = (source, decoded, output)
        return strength

    # -- per block (lpips, mse, mix) -----------------------------------------------------
    def _block_costs(self, source: Tensor, candidates: list[Tensor]):
        config = self.config
        mse_blocks = np.stack([_block_mean(((c - source) ** 2).mean(1, keepdim=True),
                                           config.block) for c in candidates])
        if config.objective == "mse":
            return mse_blocks, mse_blocks
        lpips_model = _spatial_lpips(str(source.device))
        batch = torch.cat(candidates)
        lpips_maps = lpips_model(batch, source.expand_as(batch), normalize=True)  # (K,1,H,W)
        lpips_blocks = np.stack([_block_mean(m[None], config.block) for m in lpips_maps])
        if config.objective == "lpips":
            return lpips_blocks, mse_blocks
        zero = config.scales.index(0.0)
        lpips_ref = max(float(lpips_blocks[zero].mean()), 1e-6)
        mse_ref = max(float(mse_blocks[zero].mean()), 1e-10)
        return lpips_blocks / lpips_ref + config.mse_weight * mse_blocks / mse_ref, mse_blocks

    def _frame_cost(self, source: Tensor, frame: Tensor) -> float:
        objective = self.config.objective
        if objective == "mse":
            return _mse(frame, source)
        lpips_value = float(_spatial_lpips(str(source.device))(
            frame, source, normalize=True).mean())
        return lpips_value  # mix: LPIPS is checked whole, MSE by the PSNR floor

    def _flicker(self, source: Tensor, frame: Tensor, previous_frame: Tensor) -> Tensor:
        """(1, 1, H, W): the temporal-consistency metric's per-pixel error of ``frame``
        following ``previous_frame`` (the source's change from the previous frame's)."""
        previous_source = self.previous_frames[0]
        return ((frame - previous_frame) - (source - previous_source)).abs().mean(1, keepdim=True)

    def _choose_per_block(self, source: Tensor, decoded: Tensor, residual: Tensor,
                          candidates: list[Tensor], zero: int, block_costs=None,
                          temporal_bound: bool = True, dists_of=None) -> StrengthMap:
        config = self.config
        height, width = decoded.shape[-2:]
        if block_costs is None:
            block_costs = self._block_costs(source, candidates)
        cost, mse_blocks = block_costs  # (K, rows, cols) each
        pixel_counts = _block_sum(torch.ones_like(decoded[:, :1]), config.block)
        mse_budget = _mse(decoded, source) * 10 ** (config.max_psnr_drop / 10)
        temporal = (temporal_bound and config.max_flicker_rise is not None
                    and self.previous_frames is not None)
        if temporal:
            _, previous_decoded, previous_output = self.previous_frames
            flicker_blocks = np.stack([_block_mean(self._flicker(source, c, previous_output),
                                                   config.block) for c in candidates])
            decode_total, output_total = self.flicker_totals
            flicker_budget = ((decode_total + float(self._flicker(
                source, decoded, previous_decoded).mean())) * (1 + config.max_flicker_rise)
                - output_total)
        else:
            flicker_blocks, flicker_budget, previous_output = np.zeros_like(cost), math.inf, None
        switch = np.zeros_like(cost)
        previous = self.previous
        comparable = (previous is not None and previous.block == config.block
                      and previous.scales == config.scales
                      and previous.indices.shape == cost.shape[1:])
        if config.hysteresis > 0 and comparable:
            penalty = config.hysteresis * np.abs(cost[zero])
            switch = np.where(np.arange(len(config.scales))[:, None, None]
                              == previous.indices[None], 0.0, penalty[None])
        # The constraints' terms on the objective's scale, so one multiplier weighs both.
        cost_scale = max(float(np.abs(cost).max()), 1e-12)
        penalty_terms = (cost_scale / max(float(mse_blocks.max()), 1e-12) * mse_blocks
                         + (cost_scale / max(float(flicker_blocks.max()), 1e-12) * flicker_blocks
                            if temporal else 0.0))

        def pick(lam: float) -> np.ndarray:
            return np.argmin(cost + lam * penalty_terms + switch, axis=0).astype(np.uint8)

        def frame_mean(blocks: np.ndarray, indices: np.ndarray) -> float:
            chosen = np.take_along_axis(blocks, indices[None].astype(np.int64), 0)[0]
            return float((chosen * pixel_counts).sum() / pixel_counts.sum())

        def feasible(indices: np.ndarray) -> bool:
            return (frame_mean(mse_blocks, indices) <= mse_budget
                    and frame_mean(flicker_blocks, indices) <= flicker_budget)

        lam_low, lam_high = 0.0, 0.0
        if not feasible(pick(0.0)):
            lam_high = 1.0
            while not feasible(pick(lam_high)) and lam_high < 1e9:
                lam_high *= 4
            for _ in range(30):
                middle = (lam_low + lam_high) / 2
                lam_low, lam_high = (lam_low, middle) if feasible(pick(middle)) \
                    else (middle, lam_high)
        lam = lam_high
        decode_cost = self._frame_cost(source, decoded)
        if config.keep_dists and dists_of is None:  # one memo per frame: maps recur
            to_source, memo = _dists_to(source), {}

            def dists_of(strength: StrengthMap | None, frame: Tensor) -> float:
                """DISTS of ``frame``, the blend of ``strength`` (None: the decode)."""
                key = None if strength is None else strength.indices.tobytes()
                if key not in memo:
                    memo[key] = to_source(frame)
                return memo[key]
        decode_dists = dists_of(None, decoded) if dists_of is not None else math.inf

        def whole_frame(strength: StrengthMap) -> tuple[float, float] | None:
            """(objective, temporal error) of the blended frame as the decoder makes it;
            None where it breaks the PSNR floor or is worse than the decode (on the
            objective, or on DISTS with ``keep_dists``)."""
            frame = strength.apply(decoded, residual)
            if _mse(frame, source) > mse_budget:
                return None
            value = self._frame_cost(source, frame)
            if value > decode_cost:
                return None
            if dists_of is not None and dists_of(strength, frame) > decode_dists:
                return None
            flicker = (float(self._flicker(source, frame, previous_output).mean())
                       if temporal else 0.0)
            return value, flicker

        kept = whole_frame(previous) if comparable else None
        passing = []  # (map, (objective, temporal error)): the decode's bounds hold
        for _ in range(4):
            strength = StrengthMap(config.block, config.scales, pick(lam))
            if int(np.count_nonzero(strength.indices != zero)) == 0:
                break
            chosen = whole_frame(strength)
            if chosen is not None and chosen[1] <= flicker_budget:
                # A new map costs bytes: keep the last one unless the new one gains more
                # than ``min_gain`` of the decode's objective on this frame.
                if (kept is not None and not strength.same_as(previous)
                        and kept[1] <= flicker_budget
                        and kept[0] - chosen[0] < config.min_gain * decode_cost):
                    return previous
                return strength
            if chosen is not None:
                passing.append((strength, chosen))
            lam = lam * 4 if lam > 0 else 1.0
        # No new map met every bound: the last map, the best of those tried, or the decode.
        none = StrengthMap.uniform(height, width, config.block, config.scales, zero)
        passing.append((none, (decode_cost, float(self._flicker(
            source, decoded, previous_output).mean()) if temporal else 0.0)))
        if kept is not None:
            passing.append((previous, kept))
        if self.default_scale in config.scales and self.default_scale != 0.0:
            uniform = StrengthMap.uniform(height, width, config.block, config.scales,
                                          config.scales.index(self.default_scale))
            uniform_cost = whole_frame(uniform)
            if uniform_cost is not None:
                passing.append((uniform, uniform_cost))
        if temporal:  # and the choice without the bound, so never steppier than that
            free = self._choose_per_block(source, decoded, residual, candidates, zero,
                                          block_costs, temporal_bound=False,
                                          dists_of=dists_of)
            free_cost = whole_frame(free)
            if free_cost is not None:
                passing.append((free, free_cost))
        steady = [item for item in passing if item[1][1] <= flicker_budget]
        if steady:  # the lowest objective among those within the temporal bound
            return min(steady, key=lambda item: item[1][0])[0]
        return min(passing, key=lambda item: item[1][1])[0]  # else the steadiest

    # -- per frame (dists) ---------------------------------------------------------------
    def _choose_per_frame(self, source: Tensor, decoded: Tensor,
                          candidates: list[Tensor]) -> StrengthMap:
        config = self.config
        height, width = decoded.shape[-2:]
        budget = _mse(decoded, source) * 10 ** (config.max_psnr_drop / 10)
        dists = _dists_to(source)
        scores = [dists(c) if _mse(c, source) <= budget else math.inf for c in candidates]
        best = int(np.argmin(scores))
        return StrengthMap.uniform(height, width, config.block, config.scales, best)
