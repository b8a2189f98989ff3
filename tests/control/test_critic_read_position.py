"""The critic is read where it was trained: every reader goes through the learner's afterstate positions.

A critic fitted by the learner to known afterstate targets returns those targets through the very code paths
best-of-K, beam search and replay use (``CriticScorer.score``, ``BestOfK.act``, ``beam_search``, the replay
view). Before the fix (critic trained only at the states *before* actions), the values these paths read at a
candidate's end-of-turn token were never a training target, and this test's values were all about the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from agentrl.data import collate, encode_after_action, tokenize_episode
from agentrl.policies.base import Context, Decision
from agentrl.policies.best_of_k import BestOfK
from agentrl.policies.scoring import CriticScorer
from agentrl.search import beam_search
from agentrl.trajectory import TrajectoryWriter
from agentrl.types import Episode, Step

SYSTEM = "Open the right door."
TASK = "You are in a hall. Your task is to: open the red door."
RED, BLUE, LOOK = "Action: open red door", "Action: open blue door", "Action: look"
OBS = {RED: "The red door opens.", BLUE: "Nothing happens.", LOOK: "You see a red door and a blue door."}
# (turns, success): afterstate targets (policy == reference, so every log-ratio is 0) are the outcome R
EPISODES = [((RED,), True), ((BLUE, LOOK), False), ((LOOK, RED), True), ((LOOK, BLUE), False)]
# V after each candidate at the two states search visits: the mean outcome of the episodes through it
ROOT = {RED: 1.0, BLUE: 0.0, LOOK: 0.5}
AFTER_LOOK = {RED: 1.0, BLUE: 0.0}


def _messages(turns: tuple[str, ...]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    for i, turn in enumerate(turns):
        messages.append({"role": "assistant", "content": turn})
        if i < len(turns) - 1:
            messages.append({"role": "user", "content": OBS[turn]})
    return messages


def _episode(n: int, turns: tuple[str, ...], success: bool) -> Episode:
    steps = [Step(observation=TASK if i == 0 else OBS[turns[i - 1]], action=t[8:]) for i, t in enumerate(turns)]
    return Episode(episode_id=f"door/train/t0/s{n}", task_id="t0", env_id="agentrl/Door-v0", split="train",
                   task_type="door", policy="expert", success=success, reward=float(success), steps=steps,
                   messages=_messages(turns))  # fmt: skip


def _context(turns: tuple[str, ...] = ()) -> Context:
    messages = _messages(turns)
    if turns:
        messages.append({"role": "user", "content": OBS[turns[-1]]})
    return Context(slot=0, messages=messages, observation="", info={}, env_kind="alfworld",
                   memory={"cache_key": "door"})


@pytest.mark.parametrize("level", ["token", "step", "response"])
def test_scorer_reads_exactly_the_positions_the_learner_trains(tiny_model, level) -> None:
    """For every turn of every episode: the scorer's (ids, position) == the learner's ids and afterstate."""
    _model, tokenizer = tiny_model
    scorer = CriticScorer(None, tokenizer)  # encode() needs only the tokenizer
    items = [tokenize_episode(_episode(n, t, ok), tokenizer, level=level) for n, (t, ok) in enumerate(EPISODES)]
    batch = collate(items, pad_id=0)
    for row, (item, (turns, _ok)) in enumerate(zip(items, EPISODES, strict=True)):
        assert len(item.after_positions) == len(turns)
        for j, position in enumerate(item.after_positions):
            ids, read = scorer.encode(_context(turns[:j]), Decision(turns[j][8:], turns[j]))
            assert read == position and ids == item.input_ids[: position + 1]
            assert (ids, read) == encode_after_action(tokenizer, _messages(turns[: j + 1]))
            assert tokenizer.decode([ids[read]]) == "<|im_end|>"
            assert int(batch["after_positions"][row, j]) == position and bool(batch["after_mask"][row, j])


@pytest.fixture(scope="module")
def fitted_critic(tiny_model_dir, tmp_path_factory) -> Path:
    """A critic the learner fitted to the door episodes (policy held at the reference: lr 1e-9)."""
    from agentrl.cli.learn import Config
    from agentrl.learner import train

    folder = tmp_path_factory.mktemp("door")
    with TrajectoryWriter(folder / "door.jsonl") as writer:
        for n, (turns, ok) in enumerate(EPISODES):
            writer.write(_episode(n, turns, ok))
    train(Config(algo="oreo", level="step", data=[str(folder / "door.jsonl")], model=str(tiny_model_dir),
                 out=str(folder / "oreo"), lr=1e-9, critic_lr=3e-3, batch_size=4, max_steps=150, log_every=150))
    return folder / "oreo" / "critic"


class Proposer:
    """A CandidateSampler that proposes fixed turns at each state (by how many turns the chat has)."""

    name = "proposer"

    def begin(self, slot, observation, info, env_kind):
        return _context()

    def propose(self, contexts, k):
        out = []
        for ctx in contexts:
            turns = [m["content"] for m in ctx.messages if m["role"] == "assistant"]
            options = [RED, BLUE, LOOK] if not turns else [RED, BLUE]
            out.append([Decision(t[8:], t, "") for t in options][:k])
        return out

    def observe(self, context, decision, observation, info):
        context.messages += [{"role": "assistant", "content": decision.raw}, {"role": "user", "content": observation}]


class DoorEnv:
    def reset(self, *, seed=None, options=None):
        self.done = False
        return TASK, {"task_id": "t0", "task_type": "door", "won": False}

    def step(self, action):
        won = action == "open red door"
        obs = OBS["Action: " + action] if "Action: " + action in OBS else "Nothing happens."
        return obs, float(won), won or action == "open blue door", False, {"task_id": "t0", "won": won}


def test_fitted_critic_returns_its_targets_through_best_of_k_beam_and_replay(fitted_critic, tiny_model) -> None:
    from agentrl.replay import play

    _model, tokenizer = tiny_model
    scorer = CriticScorer.from_pretrained(str(fitted_critic), tokenizer)
    root = scorer.score([_context()], [[Decision(t[8:], t) for t in ROOT]])[0]
    after_look = scorer.score([_context((LOOK,))], [[Decision(t[8:], t) for t in AFTER_LOOK]])[0]
    assert root == pytest.approx(list(ROOT.values()), abs=0.15)
    assert after_look == pytest.approx(list(AFTER_LOOK.values()), abs=0.15)

    # best-of-K: acts on the red door, with the values it records for replay
    decision = BestOfK(Proposer(), scorer, k=3).act([_context()])[0]
    assert decision.action == "open red door"
    assert [c.value for c in decision.candidates] == pytest.approx(root, abs=1e-4)
    assert decision.value == pytest.approx(max(root), abs=1e-4)

    # beam search: the same values steer and are recorded in the chosen beam's steps
    result = beam_search(DoorEnv(), Proposer(), scorer, width=2, max_steps=3, env_kind="alfworld")
    first = result.best.steps[0]
    assert first.action == "open red door" and first.value == pytest.approx(ROOT[RED], abs=0.15)
    assert [c.value for c in first.candidates] == pytest.approx(root[:2], abs=1e-4)  # k = width = 2

    # replay shows the recorded values
    episode = Episode(episode_id="door/valid/t0/s0", task_id="t0", env_id="agentrl/Door-v0", split="valid",
                      task_type="door", policy="best_of_k", success=True, reward=1.0,
                      steps=[Step(observation=TASK, action=decision.action, value=decision.value,
                                  candidates=decision.candidates)])  # fmt: skip
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    play(episode, console)
    text = console.export_text()
    assert f"value {decision.value:+.3f}" in text
    assert "3 candidates" in text and "+0.5" in text  # the look candidate's value, V = 0.5 within 0.15


def test_search_refuses_a_critic_not_trained_at_afterstates(tiny_model_dir, tmp_path) -> None:
    from agentrl.cli.learn import Config
    from agentrl.learner import train
    from agentrl.models import ModelError

    with TrajectoryWriter(tmp_path / "door.jsonl") as writer:
        for n, (turns, ok) in enumerate(EPISODES):
            writer.write(_episode(n, turns, ok))
    train(Config(algo="oreo", level="response", afterstates=False, data=[str(tmp_path / "door.jsonl")],
                 model=str(tiny_model_dir), out=str(tmp_path / "oreo"), batch_size=4, max_steps=1))
    with pytest.raises(ModelError, match="not trained at afterstates"):
        CriticScorer.from_pretrained(str(tmp_path / "oreo" / "critic"))


def test_lora_critic_loads_its_own_tokenizer(tiny_model_dir, tmp_path) -> None:
    """A LoRA critic folder (adapter/ + tokenizer, no config.json) scores without a tokenizer being passed."""
    from agentrl.cli.learn import Config
    from agentrl.learner import train

    with TrajectoryWriter(tmp_path / "door.jsonl") as writer:
        for n, (turns, ok) in enumerate(EPISODES):
            writer.write(_episode(n, turns, ok))
    train(Config(algo="oreo", lora=True, critic_lora=True, lora_r=4, data=[str(tmp_path / "door.jsonl")],
                 model=str(tiny_model_dir), out=str(tmp_path / "oreo"), batch_size=4, max_steps=1))
    scorer = CriticScorer.from_pretrained(str(tmp_path / "oreo" / "critic"))
    assert len(scorer.score([_context()], [[Decision("look", LOOK)]])[0]) == 1
