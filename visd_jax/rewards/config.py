"""`RewardConfig`: the knobs where the two reference trainers (and the paper) differ.

Defaults are the VisionCoach release run script (`run_grpo_video.sh`): spatial IoU mode
`avg`, identity match `soft`, normalisation `matched`, symmetric temporal gate. Open-o3
Video's reward code is `RewardConfig.open_o3()`: no identity check, `max` over gold objects,
divide by all claims, and a one-sided gate `gt_time - claim_time < 1`.
"""
from __future__ import annotations

import dataclasses

_MODES = {
    "spatial_iou_mode": ("avg", "max"),
    "identity_match_mode": ("soft", "strict", "none"),
    "spatial_norm_mode": ("matched", "all"),
}


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    spatial_iou_mode: str = "avg"          # combine matched gold objects of a claim
    identity_match_mode: str = "soft"      # claim name vs gold object name
    spatial_norm_mode: str = "matched"     # denominator: claims that matched, or all claims
    symmetric_time_gate: bool = True       # |dt| <= gate (release) vs gt - t < gate (Open-o3)
    time_gate_s: float = 1.0               # claim-to-key-frame gate in seconds
    sigma_start: float = 4.0               # thk_temporal_point: sigma = start * (1 - p) ...
    sigma_final: float = 1.0               # ... while p < switch, then sigma = final
    sigma_switch: float = 0.75
    rouge_max_chars: int = 4096            # answers are truncated before ROUGE (see answer.py)

    def __post_init__(self):
        for field, allowed in _MODES.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"RewardConfig.{field}: expected one of {allowed}, "
                                 f"got {getattr(self, field)!r}")
        if not self.time_gate_s > 0 or not self.sigma_final > 0 or not self.sigma_start > 0:
            raise ValueError("RewardConfig: time_gate_s, sigma_start, sigma_final must be > 0")
        if not 0.0 < self.sigma_switch < 1.0:
            raise ValueError(f"RewardConfig.sigma_switch: expected in (0, 1), "
                             f"got {self.sigma_switch}")
        if self.rouge_max_chars < 1:
            raise ValueError("RewardConfig.rouge_max_chars: expected >= 1")

    @classmethod
    def open_o3(cls) -> "RewardConfig":
        """Open-o3 Video's `thk_spatial` (its reward_func.py), for comparison runs."""
        return cls(spatial_iou_mode="max", identity_match_mode="none",
                   spatial_norm_mode="all", symmetric_time_gate=False)


DEFAULT = RewardConfig()
