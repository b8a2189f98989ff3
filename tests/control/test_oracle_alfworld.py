"""The oracle-critic check on generated ALFWorld tasks: best-of-K with oracle values strictly beats sampling.

The sampling policy takes the expert's action with probability p, else a random admissible command. Two oracles,
no learning involved, so a win shows the controller uses values the right way round:

* ``ReplayPlanOracle`` (the literal one): value = minus the expert's remaining plan length after the candidate,
  measured by replaying the episode plus the candidate in a scratch env and letting the expert finish
  (measured here: best-of-3 1.0 vs sampling 0.25 on 4 tasks, 7.0 vs 18.3 mean steps);
* ``expert_agreement_plan`` (cheap, from ``info["expert_action"]`` alone): -1 for the expert's own next action
  (its plan shrinks by one), +1 for anything else (a detour); measured: best-of-5 1.0 vs sampling 0.25.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.evaluate import EvalConfig as Config
from agentrl.evaluate import evaluate
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


class ReplayPlanOracle:
    """The literal oracle: replay the episode plus the candidate in a scratch env, then let the expert finish.

    ``remaining_plan(context, action)`` = the number of expert steps from the state after ``action`` until the
    task is won (``cap`` when the expert cannot finish). Memoised per (task, action history).
    """

    def __init__(self, env, cap: int = 40):
        self.env, self.cap = env, cap
        self.memo: dict[tuple, int] = {}

    def __call__(self, context, action: str) -> int:
        history = (*context.memory.get("actions", []), action)
        key = (context.info["task_id"], history)
        if key not in self.memo:
            _, info = self.env.reset(options={"task_id": context.info["task_id"]})
            for a in history:
                _, _, _, _, info = self.env.step(a)
            steps = 0
            while not info["won"] and steps < self.cap and info.get("expert_action"):
                _, _, _, _, info = self.env.step(info["expert_action"])
                steps += 1
            self.memo[key] = steps if info["won"] else self.cap
        return self.memo[key]


def test_replay_oracle_best_of_k_beats_sampling(alfworld_tasks: Path, tmp_path: Path) -> None:
    """Value = minus the expert's remaining plan length after the candidate, measured by replaying the env."""
    import gymnasium

    import agentrl.envs  # noqa: F401
    from agentrl.envs.workers import EnvPool

    scratch = gymnasium.make("agentrl/ALFWorld-v0", data=str(alfworld_tasks), split="train").unwrapped
    oracle = ReplayPlanOracle(scratch)

    def run(policy, name: str) -> dict:
        cfg = Config(env="alfworld", data=str(alfworld_tasks), split="train", policy="expert", max_steps=20,
                     out=str(tmp_path / f"{name}.json"), progress=False)
        pool = EnvPool("agentrl/ALFWorld-v0", {"data": str(alfworld_tasks), "split": "train", "max_episode_steps": 20},
                       1, processes=False)
        return evaluate(cfg, pool=pool, policy=policy)

    sampled = run(NoisyExpert(p=0.3, seed=1), "sampled")
    best = run(BestOfK(NoisyExpert(p=0.3, seed=1), OracleScorer(oracle), k=3), "best")
    scratch.close()
    assert best["success_rate"] > sampled["success_rate"], (best["success_rate"], sampled["success_rate"])
    assert best["success_rate"] == 1.0
