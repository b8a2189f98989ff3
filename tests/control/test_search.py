"""Step-level beam search on a scripted math task: the critic's values steer it to the right answer."""

from __future__ import annotations

import math
import re
import threading

import pytest

from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import OracleScorer
from agentrl.search import SearchTask, beam_search, beam_search_many

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


@pytest.mark.parametrize("num_envs", [1, 2])
def test_eval_beam_end_to_end_on_math_env(num_envs, tiny_model_dir, tmp_path) -> None:
    """`agentrl eval --beam 2` through the real Math env, the transformers backend and a saved critic; with
    `--num-envs 2` the two tasks are searched together."""
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
            "--model", str(tiny_model_dir), "--critic", str(tmp_path / "critic"), "--beam", "2", "--episodes", "2",
            "--num-envs", str(num_envs),
            "--max-steps", "2", "--max-new-tokens", "4", "--no-example", "--out", str(out), "--trajectories",
            str(traj), "--no-progress"]
    assert main(args) == 0
    episodes = read_episodes(traj)
    assert len({e.task_id for e in episodes}) == 2
    for episode in episodes:
        assert episode.policy == "beam-2" and 1 <= episode.num_steps <= 2
        for step in episode.steps:  # the step taken is one of its parent's candidates, with that candidate's value
            assert step.candidates and (step.action, step.value) in {(c.action, c.value) for c in step.candidates}
        assert episode.meta["search_steps"] <= 2 and episode.meta["expansions"] >= 2
    import json

    results = json.loads(out.read_text())
    assert results["episodes"] == 2 and results["config"]["beam"] == 2


class CountingScorer(OracleScorer):
    """The oracle, also keeping every batch of candidates it was asked to score."""

    def __init__(self, plan):
        super().__init__(plan)
        self.asked: list[list[list[str]]] = []

    def score(self, contexts, candidates):
        self.asked.append([[c.action for c in cands] for cands in candidates])
        return super().score(contexts, candidates)


class Repeating(Scripted):
    """Samples duplicates: the root's 4 samples are 3 copies of one step (spacing/case aside) and one other."""

    ROOT = ["3 * 4 = 12", "3 * 4 = 12", " 3 *  4 = 12 ", "#### 20"]

    def propose(self, contexts, k):
        self.proposals += 1
        return [[Decision(a, a) for a in (self.ROOT if c.memory.get("last") is None else SCRIPT[c.memory["last"]])]
                for c in contexts]


def test_duplicate_samples_are_scored_once_and_fill_one_beam() -> None:
    """B=3 at the root: 4 samples, 2 distinct steps -> the critic sees 2 candidates, and only 2 beams exist
    (without merging, three beams would hold the same state `3 * 4 = 12`)."""
    scorer = CountingScorer(oracle)
    result = beam_search(FakeMath(), Repeating(), scorer, width=3, max_steps=1)
    assert scorer.asked[0] == [["3 * 4 = 12", "#### 20"]]
    first = result.best.steps[0]
    assert [(c.action, c.samples, c.kept) for c in first.candidates] == [("3 * 4 = 12", 3, True), ("#### 20", 1, True)]
    assert result.samples == 4 and result.expansions == 2
    again = beam_search(FakeMath(), Repeating(), CountingScorer(oracle), width=3, max_steps=2)
    # step 2: only `3 * 4 = 12` is unfinished (one beam, not three): its 2 samples are the 2 new candidates
    assert again.samples == 4 + 2 and again.expansions == 2 + 2 and again.finished == 2


class FanOut(Scripted):
    """Proposes ``k`` distinct steps everywhere: ``d{depth}.{j}``."""

    def propose(self, contexts, k):
        depth = [len([m for m in c.messages if m["role"] == "assistant"]) for c in contexts]
        return [[Decision(f"d{d}.{j}", f"d{d}.{j}") for j in range(k)] for d in depth]


def test_seven_beams_of_seven_samples() -> None:
    """B=7: 1 x 7 candidates, then 7 x 7 = 49 scored in one call; 7 beams survive each step."""
    scorer = CountingScorer(lambda context, action: -int(action.split(".")[1]))  # higher j, higher value
    result = beam_search(FakeMath(), FanOut(), scorer, width=7, max_steps=2)
    assert [sum(len(c) for c in call) for call in scorer.asked] == [7, 49]
    assert result.samples == result.expansions == 56 and result.search_steps == 2
    first, second = result.best.steps
    assert all(c.kept for c in first.candidates) and len(first.candidates) == 7
    assert second.action == "d1.6" and sum(bool(c.kept) for c in second.candidates) == 1  # every parent's d1.6


def test_replay_of_a_beam_episode_shows_values_samples_and_kept_beams(tmp_path) -> None:
    from rich.console import Console

    from agentrl.replay import play
    from agentrl.trajectory import TrajectoryWriter, read_episodes
    from agentrl.types import Episode

    result = beam_search(FakeMath(), Repeating(), OracleScorer(oracle), width=2, max_steps=4)
    best = result.best
    episode = Episode(episode_id="math/test/q1/s0", task_id="q1", env_id="agentrl/Math-v0", split="test",
                      task_type="arith", policy="beam-2", success=True, reward=best.reward, steps=best.steps,
                      messages=best.context.messages,
                      meta={"beam": 2, "search_steps": result.search_steps, "expansions": result.expansions,
                            "samples": result.samples, "finished_beams": result.finished})  # fmt: skip
    with TrajectoryWriter(tmp_path / "beam.jsonl") as writer:
        writer.write(episode)
    (back,) = read_episodes(tmp_path / "beam.jsonl")
    assert back.steps[0].candidates[0].samples == 3 and back.steps[0].candidates[0].kept is True
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    play(back, console)
    text = console.export_text()
    assert f"beam search B=2: {result.search_steps} search steps" in text
    assert f"{result.expansions} distinct candidates of {result.samples} sampled" in text
    root = next(line for line in text.splitlines() if "▶" in line)  # step 1: the step taken, 3 samples, kept
    assert "3 * 4 = 12" in root and "-2.000" in root and "×3" in root and "kept" in root
    other = next(line for line in text.splitlines() if "#### 20" in line and "×1" in line)
    assert "-10.000" in other and "kept" in other  # B=2: the other root candidate became the second beam
    assert "×n" in text and "beam" in text and "SUCCESS in 3 steps" in text


class Voting(Scripted):
    """The root's 4 samples: the right step 3 times, a wrong final answer once."""

    def propose(self, contexts, k):
        self.proposals += 1
        return [[Decision(a, a) for a in ("3 * 4 = 12", "3 * 4 = 12", "#### 20", "3 * 4 = 12")] for _ in contexts]


def nearly_flat(context, action):
    """Cost-to-go of a critic (value = minus this) that barely tells steps apart and leans the wrong way:
    V = 0.51 for the wrong answer, 0.50 for the right step (the chain-sum critic's failure)."""
    return -0.51 if action == "#### 20" else -0.50


def test_beam_prior_lets_the_policy_vote_where_the_critic_is_flat() -> None:
    """By V alone the once-sampled wrong answer wins (0.51 > 0.50); with the prior w * log(n / B) the step
    sampled 3 of 4 times wins (0.50 + w log 0.75 > 0.51 + w log 0.25 for w = 0.1). Candidate values stay the
    critic's V; the beam carries its prior."""
    by_value = beam_search(FakeMath(), Voting(), OracleScorer(nearly_flat), width=1, max_steps=1)
    assert by_value.best.actions == ["#### 20"] and by_value.best.prior == 0.0
    voted = beam_search(FakeMath(), Voting(), OracleScorer(nearly_flat), width=1, max_steps=1, prior_weight=0.1)
    assert voted.best.actions == ["3 * 4 = 12"]
    assert voted.best.prior == pytest.approx(0.1 * math.log(3 / 4))
    assert [(c.action, c.value, c.samples, c.kept) for c in voted.best.steps[0].candidates] == [
        ("3 * 4 = 12", 0.50, 3, True), ("#### 20", 0.51, 1, False)]
    with pytest.raises(ValueError, match="prior_weight"):
        beam_search(FakeMath(), Voting(), OracleScorer(nearly_flat), width=1, max_steps=1, prior_weight=-1)


class Unlikely(Scripted):
    """Two distinct root samples with the policy's log-probs: the right step likely (-0.1), the wrong one not (-3)."""

    def propose(self, contexts, k):
        return [[Decision("3 * 4 = 12", "3 * 4 = 12", logprob=-0.1), Decision("#### 20", "#### 20", logprob=-3.0)]
                for _ in contexts]


def test_beam_prior_by_logprob_uses_the_policys_exact_log_prob() -> None:
    """Each step sampled once (the vote is a tie): by samples the flat critic's 0.51 still wins; by logprob the
    step the policy finds likely wins (0.50 - 0.1 w > 0.51 - 3 w), and the prior is w * its log-prob."""
    by_samples = beam_search(FakeMath(), Unlikely(), OracleScorer(nearly_flat), width=1, max_steps=1, prior_weight=0.1)
    assert by_samples.best.actions == ["#### 20"]
    by_logprob = beam_search(FakeMath(), Unlikely(), OracleScorer(nearly_flat), width=1, max_steps=1,
                             prior_weight=0.1, prior_by="logprob")  # fmt: skip
    assert by_logprob.best.actions == ["3 * 4 = 12"] and by_logprob.best.prior == pytest.approx(0.1 * -0.1)
    with pytest.raises(ValueError, match="no log-prob"):
        beam_search(FakeMath(), Voting(), OracleScorer(nearly_flat), width=1, max_steps=1, prior_weight=0.1,
                    prior_by="logprob")  # fmt: skip
    with pytest.raises(ValueError, match="prior_by"):
        beam_search(FakeMath(), Voting(), OracleScorer(nearly_flat), width=1, max_steps=1, prior_by="votes")


def test_beam_prior_accumulates_along_the_path() -> None:
    """Two steps of FanOut (every sample distinct, n = 1 of B = 2): the prior is 2 * w * log(1/2)."""
    result = beam_search(FakeMath(), FanOut(), OracleScorer(lambda c, a: 0.0), width=2, max_steps=2, prior_weight=0.5)
    assert len(result.best.steps) == 2 and result.best.prior == pytest.approx(2 * 0.5 * math.log(1 / 2))


@pytest.mark.parametrize("flags, message", [
    (["--beam", "3", "--beam-prior", "-1"], "--beam-prior must be >= 0"),
    (["--beam-prior", "0.1"], "--beam-prior weighs beam candidates: give --beam B"),
    (["--beam", "3", "--beam-prior", "0.1", "--beam-prior-by", "votes"], "--beam-prior-by must be one of samples, logprob"),
])
def test_beam_prior_bad_input_is_one_line(flags, message, tmp_path, capsys) -> None:
    from agentrl.cli import main

    code = main(["eval", "--env", "math", "--dataset", "chain-sum", "--model", "tiny", "--out",
                 str(tmp_path / "r.json"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("num_envs, rounds", [(1, 9), (2, 6), (3, 3)])
def test_tasks_searched_together_share_each_call_and_search_as_alone(num_envs, rounds) -> None:
    """Three tasks (3 rounds each) over ``num_envs`` envs: each round is one policy call and one critic call for
    every task in flight, a finished task hands its env on, and each task's result is what it gets alone."""
    alone = beam_search(FakeMath(), Scripted(), OracleScorer(oracle), width=2, max_steps=6)
    policy, scorer = Scripted(), CountingScorer(oracle)
    tasks = [SearchTask({"seed": i}, f"t{i}/beam") for i in range(3)]
    envs = [FakeMath() for _ in range(num_envs)]
    results = list(beam_search_many(envs, tasks, policy, scorer, width=2, max_steps=6))
    assert sorted(i for i, _ in results) == [0, 1, 2]
    for _, result in results:
        assert result.best.actions == alone.best.actions and result.best.reward == alone.best.reward == 1.0
        assert (result.search_steps, result.expansions) == (alone.search_steps, alone.expansions)
    assert alone.search_steps == 3 and policy.proposals == len(scorer.asked) == rounds  # ceil(3 / envs) x 3
    assert sum(e.resets for e in envs) == 3
    with pytest.raises(ValueError, match="at least one env"):
        list(beam_search_many([], tasks, Scripted(), scorer, width=2, max_steps=6))
