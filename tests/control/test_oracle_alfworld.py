"""The oracle-critic check on generated ALFWorld tasks: best-of-K with oracle values strictly beats sampling.

The sampling policy takes the expert's action with probability 0.5, else a random admissible command. The
oracle scores a candidate by minus the expert's remaining plan length after it, relative to now: -1 for the
expert's own next action (its plan shrinks by one), +1 for anything else (a detour: the step plus its undoing).
No learning is involved, so a win here shows the controller uses values the right way round.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.cli.eval import Config, evaluate
from agentrl.policies.best_of_k import BestOfK, OracleScorer, expert_agreement_plan

from .fake_env import NoisyExpert

pytestmark = [pytest.mark.alfworld, pytest.mark.slow]


@pytest.fixture(scope="module")
def alfworld_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("alfworld")
    from agentrl.envs.alfworld.generator import generate_one

    root = tmp_path_factory.mktemp("alfworld-oracle")
    # task i has type i % 6: pick_and_place_simple (0, 6) and look_at_obj_in_light (1, 7) fit small rooms,
    # whose resets and steps are the fastest
    for index in (0, 1, 6, 7):
        generate_one(root, "train", seed=0, index=index, room_size="small")
    return root


def test_oracle_best_of_k_beats_sampling_on_generated_alfworld(alfworld_tasks: Path, tmp_path: Path) -> None:
    from agentrl.envs.workers import EnvPool

    def pool() -> EnvPool:
        return EnvPool("agentrl/ALFWorld-v0", {"data": str(alfworld_tasks), "split": "train", "max_episode_steps": 25},
                       1, processes=False)

    def cfg(name: str) -> Config:
        return Config(env="alfworld", data=str(alfworld_tasks), split="train", policy="expert", max_steps=25,
                      out=str(tmp_path / f"{name}.json"), trajectories=str(tmp_path / f"{name}.jsonl"), progress=False)

    sampled = evaluate(cfg("sampled"), pool=pool(), policy=NoisyExpert(p=0.5, seed=0))
    scorer = OracleScorer(expert_agreement_plan)
    best = evaluate(cfg("best"), pool=pool(), policy=BestOfK(NoisyExpert(p=0.5, seed=0), scorer, k=5))
    assert best["episodes"] == sampled["episodes"] == 4
    assert best["success_rate"] > sampled["success_rate"], (best["success_rate"], sampled["success_rate"])
    assert best["success_rate"] == 1.0
