"""Renamed copies of ALFWorld episodes: object names consistently replaced within each episode (SFT data)."""

from __future__ import annotations

from agentrl.augment import AugmentConfig as Config
from agentrl.augment import augment

__all__ = ["Config", "run"]


def run(cfg: Config) -> int:
    counts = augment(cfg)
    originals = f" + {counts['originals']} originals" if cfg.keep_original else ""
    print(f"augment: {counts['episodes']} episodes -> {counts['copies']} renamed copies{originals} in {cfg.out} "
          f"({counts['seconds']:.2f} s, {counts['episodes_per_s']:.0f} episodes/s)")
    notes = [f"{counts[key]} {text}" for key, text in (
        ("skipped_copies", "copies not written (no free name to draw)"),
        ("partial_copies", "copies renamed only some types (too few free names in the pool)"),
        ("errored", "episodes with an error not copied"),
    ) if counts[key]]  # fmt: skip
    if notes:
        print("augment: " + "; ".join(notes))
    return 0
