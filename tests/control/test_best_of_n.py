"""Best-of-N over whole solutions: N sampled episodes per task, the one the critic values most at its final
afterstate is the task's episode, every solution's value recorded for replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from agentrl.evaluate import EvalConfig, evaluate, solutions_path
from agentrl.replay import play
from agentrl.search import best_of_n, final_afterstate, score_solutions
from agentrl.trajectory import read_episodes
from agentrl.types import Episode, Step

from .fake_env import CorridorPool, NoisyExpert

QUESTION = "Question: What is 2 + 3 * 4?"
# sample -> its steps; the stand-in critic values a solution by its final line
SOLUTIONS = [["2 + 3 = 5", "#### 20"], ["3 * 4 = 12", "2 + 12 = 14", "#### 14"], ["#### 14"], ["3 * 4 = 12"]]
FINAL_VALUE = {"#### 20": 0.1, "#### 14": 0.9, "3 * 4 = 12": 0.5}


def _solution(sample: int, steps: list[str], error: str | None = None) -> Episode:
    messages = [{"role": "system", "content": "Solve step by step."}, {"role": "user", "content": QUESTION}]
    for step in steps:
        messages += [{"role": "assistant", "content": step}, {"role": "user", "content": "Next step."}]
    return Episode(episode_id=f"math/test/q1/s{sample}", task_id="q1", env_id="agentrl/Math-v0", split="test",
                   task_type="arith", policy="react", success=steps[-1] == "#### 14", reward=float(steps[-1] == "#### 14"),
                   steps=[Step(observation=QUESTION, action=s) for s in steps], messages=messages, error=error,
                   meta={"sample": sample})  # fmt: skip


class FinalLineCritic:
    """A stand-in critic: V of a candidate turn by its text; records every call (contexts, candidates)."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def score(self, contexts, candidates):
        self.calls.append(([list(c.messages) for c in contexts], [[d.raw for d in cands] for cands in candidates]))
        return [[self.table[d.raw] for d in cands] for cands in candidates]


def test_best_of_n_picks_the_solution_with_the_highest_final_value() -> None:
    """Values 0.1, 0.9, 0.9, 0.5 (+ an errored solution): the first 0.9 (sample 1) wins the tie with sample 2."""
    episodes = [_solution(i, s) for i, s in enumerate(SOLUTIONS)] + [_solution(4, ["#### 14"], error="env died")]
    critic = FinalLineCritic(FINAL_VALUE)
    values = score_solutions(episodes, critic)
    assert values == [0.1, 0.9, 0.9, 0.5, None]
    (contexts, raws), = critic.calls  # one scoring call for all solutions
    assert raws == [["#### 20"], ["#### 14"], ["#### 14"], ["3 * 4 = 12"]]
    assert contexts[1][-1] == {"role": "user", "content": "Next step."} and contexts[1][-2]["content"] == "2 + 12 = 14"
    chosen = best_of_n(episodes, values, critic="C")
    assert chosen.meta["chosen"] == 1 and chosen.meta["value"] == 0.9 and chosen.meta["best_of_n"] == 5
    assert chosen.steps[-1].value == 0.9 and chosen.success and chosen.meta["critic"] == "C"
    assert [s["value"] for s in chosen.meta["solutions"]] == values
    assert [s["chosen"] for s in chosen.meta["solutions"]] == [False, True, False, False, False]
    assert chosen.meta["solutions"][4]["error"] == "env died" and episodes[1].steps[-1].value is None  # a copy
    # the ranking is by value alone: a lower-valued success loses to a higher-valued failure
    flipped = best_of_n(episodes[:2], [0.95, 0.9])
    assert flipped.meta["chosen"] == 0 and not flipped.success
    with pytest.raises(ValueError, match="one value per solution"):
        best_of_n(episodes, values[:2])


def test_the_final_afterstate_is_the_trained_read_position(tiny_model) -> None:
    """The critic reads a solution where the learner trains it: the end-of-turn token of its last assistant turn
    (agentrl.data.encode_after_action), not after the env's answer that follows in the chat."""
    from agentrl.data import encode_after_action
    from agentrl.policies.scoring import CriticScorer

    _model, tokenizer = tiny_model
    episode = _solution(1, SOLUTIONS[1])
    context, decision = final_afterstate(episode)
    ids, position = CriticScorer(None, tokenizer).encode(context, decision)
    assert (ids, position) == encode_after_action(tokenizer, episode.messages[:-1])
    assert tokenizer.decode([ids[position]]) == "<|im_end|>" and position == len(ids) - 1
    assert final_afterstate(Episode("e", "t", "x", "test", "arith", "react")) is None


def _corridor_cfg(tmp_path: Path, **kw) -> EvalConfig:
    (tmp_path / "critic").mkdir(exist_ok=True)
    base = {"env": "alfworld", "data": str(tmp_path), "policy": "react", "model": str(tmp_path),
            "critic": str(tmp_path / "critic"), "best_of_n": 4, "max_steps": 6, "num_envs": 3, "progress": False,
            "out": str(tmp_path / "bon.json"), "trajectories": str(tmp_path / "bon.jsonl")}  # fmt: skip
    return EvalConfig(**{**base, **kw})


class TakeKeyCritic:
    """A stand-in critic for the corridor: a solution that ends by taking the key is worth 1, minus its length."""

    def score(self, contexts, candidates):
        return [[(1.0 if d.action == "take key" else 0.0) - 0.01 * len(c.messages) for d in cands]
                for c, cands in zip(contexts, candidates, strict=True)]


def test_eval_best_of_n_through_the_rollout_engine(tmp_path: Path) -> None:
    """`evaluate` with best_of_n: 4 solutions per task in .solutions.jsonl, the chosen one per task in the
    trajectories; with this critic a task succeeds exactly when one of its solutions did."""
    cfg = _corridor_cfg(tmp_path)
    assert cfg.temperature == 1.0 and cfg.method_name.endswith("+best-of-n-4")
    results = evaluate(cfg, pool=CorridorPool(num_tasks=6), policy=NoisyExpert(p=0.5, seed=1), scorer=TakeKeyCritic())
    solutions = read_episodes(solutions_path(cfg.trajectories))
    chosen = read_episodes(cfg.trajectories)
    assert len(solutions) == 24 and len(chosen) == results["episodes"] == 6
    for episode in chosen:
        mine = [s for s in solutions if s.task_id == episode.task_id]
        assert episode.episode_id.endswith("/s0") and episode.policy == "best-of-n-4"
        assert episode.success == any(s.success for s in mine)
        values = [s["value"] for s in episode.meta["solutions"]]
        assert len(values) == 4 and episode.meta["value"] == max(values) == episode.steps[-1].value
    solved = {s.task_id for s in solutions if s.success}
    failed = {s.task_id for s in solutions if not s.success}
    assert results["successes"] == len(solved) and 0 < len(solved) < 6  # some tasks have no successful solution
    assert solved & failed  # and some have both: there the critic's pick decides
    # resume: nothing left to do, nothing rewritten
    again = evaluate(_corridor_cfg(tmp_path, resume=True, out=str(tmp_path / "again.json")),
                     pool=CorridorPool(num_tasks=6), policy=NoisyExpert(p=0.5, seed=1), scorer=TakeKeyCritic())
    assert again["episodes"] == 6 and len(read_episodes(solutions_path(cfg.trajectories))) == 24
    # replay lists the solutions with their values, the chosen one marked
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    play(chosen[0], console)
    text = console.export_text()
    assert "4 solutions" in text and "best of 4 solutions" in text
    marked = next(line for line in text.splitlines() if "▶" in line and "solutions" not in line and "│" not in line)
    assert f"{chosen[0].meta['value']:+.3f}" in marked


@pytest.mark.parametrize(("kw", "message"), [
    ({"beam": 2, "env": "math"}, "--beam B or --best-of-n N"),
    ({"best_of": 3}, "--best-of K or --best-of-n N"),
    ({"policy": "expert"}, "use --policy react"),
    ({"best_of_n": 0}, "must be >= 1"),
    ({"critic": None}, "--best-of-n 4 needs --critic"),
])  # fmt: skip
def test_best_of_n_config_checks(tmp_path: Path, kw, message) -> None:
    from agentrl.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        _corridor_cfg(tmp_path, **kw)


def test_eval_best_of_n_end_to_end_on_math_env(tiny_model_dir, tmp_path) -> None:
    """`agentrl eval --best-of-n 2` through the real Math env, the transformers backend and a saved critic."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.cli import main
    from agentrl.critic import ValueModel

    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64)
    torch.nn.init.normal_(critic.value_head.weight)
    critic.trained_at = {"level": "step", "afterstates": True}
    critic.save_pretrained(tmp_path / "critic")
    out, traj = tmp_path / "bon.json", tmp_path / "bon.jsonl"
    args = ["eval", "--env", "math", "--dataset", "gsm8k-test-100", "--split", "test", "--policy", "react",
            "--model", str(tiny_model_dir), "--critic", str(tmp_path / "critic"), "--best-of-n", "2", "--episodes",
            "1", "--max-steps", "2", "--max-new-tokens", "4", "--no-example", "--out", str(out), "--trajectories",
            str(traj), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    (episode,) = read_episodes(traj)
    assert episode.policy == "best-of-n-2" and len(episode.meta["solutions"]) == 2
    values = [s["value"] for s in episode.meta["solutions"]]
    assert all(isinstance(v, float) for v in values) and episode.meta["value"] == max(values)
    assert len(read_episodes(solutions_path(traj))) == 2
    results = json.loads(out.read_text())
    assert results["episodes"] == 1 and results["config"]["best_of_n"] == 2
