"""Temporal consistency: how well the frame-to-frame changes of the output follow the
ground truth's. Lower is better; 0 means every temporal difference is reproduced.

    TC = mean over t >= 1 of  mean |(out_t - out_{t-1}) - (gt_t - gt_{t-1})|

Sequences are streamed frame by frame, so the accumulator :class:`TemporalConsistency`
keeps only the previous pair; :func:`temporal_consistency` runs it over whole clips.
"""

from __future__ import annotations

import torch
from torch import Tensor


class TemporalConsistency:
    """Streaming temporal consistency.

    ``update(output_frame, gt_frame)`` with frames ``(C, H, W)`` or ``(B, C, H, W)``
    (B independent sequences advanced together), then ``compute() -> float``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all frames (start a new sequence)."""
        self.prev_output: Tensor | None = None
        self.prev_gt: Tensor | None = None
        self.abs_error_sum = 0.0  # summed in float64 over all elements of all frame pairs
        self.num_elements = 0
        self.num_frames = 0

    @torch.no_grad()
    def update(self, output_frame: Tensor, gt_frame: Tensor) -> None:
        """Add the next frame of the output and of the ground truth (same shape)."""
        if output_frame.shape != gt_frame.shape:
            raise ValueError(
                f"output and ground-truth frames differ in shape: {tuple(output_frame.shape)} "
                f"vs {tuple(gt_frame.shape)}"
            )
        if output_frame.dim() not in (3, 4):
            raise ValueError(
                f"expected a frame (C, H, W) or (B, C, H, W), got {tuple(output_frame.shape)}"
            )
        output_frame = output_frame.detach().double()
        gt_frame = gt_frame.detach().double()
        if self.prev_output is not None:
            if output_frame.shape != self.prev_output.shape:
                raise ValueError(
                    f"frame {self.num_frames} has shape {tuple(output_frame.shape)}, earlier "
                    f"frames {tuple(self.prev_output.shape)}; call reset() between sequences"
                )
            output_change = output_frame - self.prev_output
            gt_change = gt_frame - self.prev_gt
            self.abs_error_sum += (output_change - gt_change).abs().sum().item()
            self.num_elements += output_change.numel()
        self.prev_output, self.prev_gt = output_frame, gt_frame
        self.num_frames += 1

    def compute(self) -> float:
        """Mean absolute error of consecutive-frame differences (needs >= 2 frames)."""
        if self.num_frames < 2:
            raise ValueError(f"temporal consistency needs at least 2 frames, got {self.num_frames}")
        return self.abs_error_sum / self.num_elements


def temporal_consistency(output_frames: Tensor, gt_frames: Tensor) -> float:
    """Temporal consistency of whole clips ``(T, C, H, W)`` (or ``(B, T, C, H, W)``)."""
    if output_frames.shape != gt_frames.shape:
        raise ValueError(
            f"output and ground truth differ in shape: {tuple(output_frames.shape)} vs "
            f"{tuple(gt_frames.shape)}"
        )
    if output_frames.dim() not in (4, 5):
        raise ValueError(
            f"expected frames (T, C, H, W) or (B, T, C, H, W), got {tuple(output_frames.shape)}"
        )
    time_dim = 0 if output_frames.dim() == 4 else 1
    accumulator = TemporalConsistency()
    for output_frame, gt_frame in zip(output_frames.unbind(time_dim), gt_frames.unbind(time_dim)):
        accumulator.update(output_frame, gt_frame)
    return accumulator.compute()
