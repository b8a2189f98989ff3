"""Step-level beam search on a scripted math task: the critic's values steer it to the right answer."""

from __future__ import annotations

import re
import threading

import pytest

from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import OracleScorer
from agentrl.search import beam_search

QUESTION = "Question: What is 2 + 3 * 4?"
GOOD = {"3 * 4 = 12", "2 + 12 = 14", "#### 14"}
# what the scripted model proposes next, given its last step (first entry = what greedy takes)
SCRIPT = {
    None: ["#### 20", "3 * 4 = 12", "2 + 3 = 5"],
    "2 + 3 = 5": ["5 * 4 = 20", "#### 20"],
    "5 * 4 = 20": ["#### 20"],
    "3 * 4 = 12": ["#### 12", "2 + 12 = 14"],
    "2 + 12 = 14": ["#### 14", "14 is the answer"],
    "14 is the answer": ["#### 14"],
}


class FakeMath:
    """One question; a step with ``####`` ends the episode, won when the number after it is 14."""

    def __init__(self, uncopyable: bool = False):
        self.lock = threading.Lock() if uncopyable else None  # deepcopy fails on a lock
        self.steps = 0
        self.resets = 0

    def reset(self, *, seed=None, options=None):
        self.steps = 0
        self.resets += 1
        return QUESTION, {"task_id": "q1", "task_type": "arith", "won": False}

    def step(self, action: str):
        self.steps += 1
        match = re.search(r"####\s*(-?\d+)", action)
        won = bool(match) and match.group(1) == "14"
        return QUESTION, float(won), bool(match), False, {"task_id": "q1", "task_type": "arith", "won": won}


class Scripted:
    """A math 'model' that proposes the scripted next steps (a CandidateSampler)."""

    name = "scripted"

    def __init__(self):
        self.proposals = 0

    def begin(self, slot, observation, info, env_kind):
        return Context(slot=slot, messages=[{"role": "user", "content": observation}], observation=observation,
                       info=info, env_kind=env_kind)

    def propose(self, contexts, k):
        self.proposals += 1
        out = []
        for ctx in contexts:
            last = ctx.memory.get("last")
            out.append([Decision(action=a, raw=a) for a in SCRIPT[last][:k]])
        return out

    def act(self, contexts):
        return [p[0] for p in self.propose(contexts, 1)]

    def observe(self, context, decision, observation, info):
        context.messages += [{"role": "assistant", "content": decision.raw}, {"role": "user", "content": "Next step."}]
        context.memory["last"] = decision.action
        context.info = info


def oracle(context, action):
    """Cost-to-go: a correct step leaves fewer steps to the right answer; a wrong step makes it unreachable."""
    return {"3 * 4 = 12": 2, "2 + 12 = 14": 1, "#### 14": 0}.get(action, 10)


@pytest.mark.parametrize("uncopyable", [False, True])
def test_beam_finds_the_answer_greedy_misses(uncopyable: bool) -> None:
    made = []

    def make_env():
        made.append(FakeMath(uncopyable))
        return made[-1]

    env = make_env()
    scorer = OracleScorer(oracle)
    result = beam_search(env, Scripted(), scorer, width=2, max_steps=6, make_env=make_env)
    best = result.best
    assert best.done and best.info["won"] and [s.action for s in best.steps] == ["3 * 4 = 12", "2 + 12 = 14", "#### 14"]
    assert best.steps[-1].value == 0.0 and best.steps[0].candidates[0].action == "#### 20"
    assert best.context.messages[-2]["content"] == "#### 14"
    assert scorer.calls == result.search_steps  # one batched scoring call per search step
    assert env.steps == 0  # the root env is never stepped: beams step copies
    if uncopyable:
        assert len(made) > 1 and all(e.resets == 1 for e in made)  # replayed from reset
    # greedy: the first sample of each step
    greedy = beam_search(FakeMath(), Scripted(), OracleScorer(lambda c, a: 0.0), width=1, max_steps=6)
    assert not greedy.best.info["won"] and greedy.best.steps[0].action == "#### 20"


def test_search_stops_when_all_beams_finished_or_at_the_cap() -> None:
    result = beam_search(FakeMath(), Scripted(), OracleScorer(oracle), width=3, max_steps=10)
    assert result.finished == 3 and result.search_steps <= 4
    capped = beam_search(FakeMath(), Scripted(), OracleScorer(oracle), width=2, max_steps=1)
    # at the cap a beam with an answer beats a higher-valued beam without one (it could not be graded)
    assert capped.search_steps == 1 and capped.finished == 1 and capped.best.steps[0].action == "#### 20"
    with pytest.raises(ValueError, match="width >= 1"):
        beam_search(FakeMath(), Scripted(), OracleScorer(oracle), width=0, max_steps=1)


def test_eval_beam_end_to_end_on_math_env(tiny_model_dir, tmp_path) -> None:
    """`agentrl eval --beam 2` through the real Math env, the transformers backend and a saved critic."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentrl.cli import main
    from agentrl.critic import ValueModel
    from agentrl.trajectory import read_episodes

    torch.manual_seed(0)
    critic = ValueModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), hidden_size=64)
    torch.nn.init.normal_(critic.value_head.weight)
    critic.trained_at = {"level": "step", "afterstates": True}  # as the learner records it
    critic.save_pretrained(tmp_path / "critic")
    out, traj = tmp_path / "beam.json", tmp_path / "beam.jsonl"
    args = ["eval", "--env", "math", "--dataset", "gsm8k-test-100", "--split", "test", "--policy", "react",
            "--model", str(tiny_model_dir), "--critic", str(tmp_path / "critic"), "--beam", "2", "--episodes", "1",
            "--max-steps", "2", "--max-new-tokens", "4", "--no-example", "--out", str(out), "--trajectories",
            str(traj), "--no-progress"]
    assert main(args) == 0
    (episode,) = read_episodes(traj)
    assert episode.policy == "beam-2" and 1 <= episode.num_steps <= 2
    for step in episode.steps:  # the step taken is one of its parent's candidates, with that candidate's value
        assert step.candidates and (step.action, step.value) in {(c.action, c.value) for c in step.candidates}
    assert episode.meta["search_steps"] <= 2 and episode.meta["expansions"] >= 2
    import json

    results = json.loads(out.read_text())
    assert results["episodes"] == 1 and results["config"]["beam"] == 2
