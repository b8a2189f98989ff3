"""DAgger data (`--policy dagger --beta-schedule ...`): who acts, the expert's labels, the label chat, learner input.

The fake task (fake_env.py): ``open door``, then ``go to room R``. A scripted learner that always answers the same
command makes every label predictable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_env import FakePool

from agentrl.backends.base import Completion
from agentrl.cli import main
from agentrl.config import ConfigError
from agentrl.policies.dagger import beta_at
from agentrl.rollout import RolloutConfig, rollout
from agentrl.trajectory import read_episodes


class Scripted:
    """A generator whose every completion is ``text``; it keeps the prompts it was sent."""

    def __init__(self, text: str):
        self.text = text
        self.prompts: list[list[dict]] = []

    def generate(self, requests, sampling):
        self.prompts += [r.messages for r in requests]
        return [[Completion(text=self.text, num_tokens=2)] for _ in requests]

    def release(self, key):
        pass


def _run(tmp_path: Path, learner: str, name: str = "d.jsonl", num_tasks: int = 2, num_envs: int = 1, **kw):
    base = {"env": "alfworld", "data": str(tmp_path), "policy": "dagger", "model": "scripted", "thoughts": "off",
            "out": str(tmp_path / name), "progress": False, "max_steps": 3, "num_envs": num_envs}
    cfg = RolloutConfig(**{**base, **kw})
    generator = Scripted(learner)
    rollout(cfg, pool=FakePool(num_tasks=num_tasks, num_envs=num_envs), generator=generator)
    return read_episodes(cfg.out), generator


@pytest.mark.parametrize(
    ("schedule", "round_index", "beta"),
    [("0", 1, 0.0), ("constant:0.25", 7, 0.25), ("linear:4", 1, 0.75), ("linear:4", 4, 0.0), ("linear:4", 6, 0.0),
     ("linear:4", 0, 1.0), ("exp:0.5", 1, 0.5), ("exp:0.5", 3, 0.125), ("exp:0.5", 0, 1.0)],
)
def test_beta_schedules(schedule, round_index, beta):
    """linear:N is 1 - r/N floored at 0 (r=1: 1 - 1/4 = 0.75); exp:D is D^r (0.5^3 = 0.125)."""
    assert beta_at(schedule, round_index) == pytest.approx(beta)


@pytest.mark.parametrize("bad", ["sometimes", "cosine:3", "linear:0", "exp:2", "1.5", "constant:"])
def test_bad_beta_schedules_are_refused(bad, tmp_path, capsys):
    with pytest.raises(ValueError, match="beta schedule"):
        beta_at(bad, 1)
    assert main(["rollout", "--env", "alfworld", "--data", str(tmp_path), "--policy", "dagger",
                 "--beta-schedule", bad, "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "`beta_schedule`: beta schedule" in err and "Traceback" not in err


def test_learner_always_acts_at_beta_0_and_every_visited_state_gets_the_experts_label(tmp_path):
    """The learner says `look` forever: the door never opens, so the expert's label is `open door` at every one
    of the 3 visited states, and each is a correction."""
    episodes, generator = _run(tmp_path, "Action: look")
    assert len(episodes) == 2 and len(generator.prompts) == 2 * 3
    for ep in episodes:
        assert ep.policy == "dagger" and not ep.success
        assert [s.action for s in ep.steps] == ["look"] * 3
        assert [s.label for s in ep.steps] == ["open door"] * 3
        # the label chat: the expert's turns at the learner's states, the env's answers to what was executed
        assert [m["content"] for m in ep.messages if m["role"] == "assistant"] == ["Action: open door"] * 3
        assert [m["content"] for m in ep.messages[3::2]] == ["Nothing happens."] * 3
        assert ep.meta["dagger"] == {"beta": 0.0, "expert_steps": 0, "learner_steps": 3, "corrections": 3}
    # the learner generates from its own chat: its own `look`, not the label
    last = generator.prompts[-1]
    assert [m["content"] for m in last if m["role"] == "assistant"] == ["Action: look"] * 2


def test_labels_agree_where_the_learner_is_right(tmp_path):
    """The learner always says `open door`: right at step 1, wrong afterwards (the expert wants `go to room R`)."""
    episodes, _ = _run(tmp_path, "Action: open door", num_tasks=2)
    for ep in episodes:
        target = int(ep.task_id[1:]) % 4
        assert [s.label for s in ep.steps] == ["open door"] + [f"go to room {target}"] * 2
        assert ep.meta["dagger"]["corrections"] == 2
        assert ep.messages[-2]["content"] == f"Action: go to room {target}"


def test_the_expert_always_acts_at_beta_1_and_the_learner_is_never_asked(tmp_path):
    episodes, generator = _run(tmp_path, "Action: look", beta_schedule="1")
    assert generator.prompts == []
    for ep in episodes:
        assert ep.success and [s.action for s in ep.steps] == [s.label for s in ep.steps]
        assert ep.meta["dagger"] == {"beta": 1.0, "expert_steps": 2, "learner_steps": 0, "corrections": 0}


def test_mixed_coins_are_seeded_by_episode_not_by_the_number_of_envs(tmp_path):
    one, _ = _run(tmp_path, "Action: look", name="a.jsonl", num_tasks=6, beta_schedule="0.5", seed=3)
    two, _ = _run(tmp_path, "Action: look", name="b.jsonl", num_tasks=6, num_envs=3, beta_schedule="0.5", seed=3)
    key = {ep.episode_id: ([s.action for s in ep.steps], ep.meta["dagger"]) for ep in one}
    assert key == {ep.episode_id: ([s.action for s in ep.steps], ep.meta["dagger"]) for ep in two}
    totals = [sum(ep.meta["dagger"][k] for ep in one) for k in ("expert_steps", "learner_steps")]
    assert all(t > 0 for t in totals)


def test_sft_reads_the_labels_not_the_executed_actions(tmp_path, tiny_model):
    from agentrl.data import tokenize_episode

    _, tokenizer = tiny_model
    episodes, _ = _run(tmp_path, "Action: look", num_tasks=1)
    item = tokenize_episode(episodes[0], tokenizer, level="step")
    marked = tokenizer.decode([t for t, m in zip(item.input_ids, item.action_mask, strict=True) if m])
    assert marked == "Action: open door<|im_end|>" * 3


def test_trajectory_round_trips_labels_and_replay_shows_corrections(tmp_path):
    from rich.console import Console

    from agentrl.replay import play

    episodes, _ = _run(tmp_path, "Action: open door", num_tasks=1)
    row = json.loads(Path(tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert [s["label"] for s in row["steps"]] == ["open door", "go to room 0", "go to room 0"]
    console = Console(record=True, width=100, file=open("/dev/null", "w"))  # noqa: SIM115
    play(episodes[0], console)
    text = console.export_text()
    assert text.count("Expert") == 3 and text.count("(correction)") == 2


def test_dagger_needs_an_env_with_expert_labels(tmp_path):
    class NoExpert(FakePool):
        def reset(self, resets):
            out = super().reset(resets)
            for obs_info in out.values():
                obs_info[1].pop("expert_action", None)
            return out

    cfg = RolloutConfig(env="alfworld", data=str(tmp_path), policy="dagger", model="scripted",
                        out=str(tmp_path / "n.jsonl"), progress=False)
    with pytest.raises(ConfigError, match="DAgger needs the expert's labels"):
        rollout(cfg, pool=NoExpert(num_tasks=1), generator=Scripted("Action: look"))
