"""agentrl/Math-v0 and the grader."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import agentrl.envs  # noqa: F401
from agentrl.envs.math.grade import extract_answer, grade, strip_control


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("so the total is 5 + 3 = 8\n#### 8", "#### 8", True),
        ("#### 1,000", "1000", True),  # thousands commas
        ("The answer is $1,000.00.", "#### 1000", True),  # currency, trailing zeros, "answer is"
        ("#### 10%", "#### 10", True),  # percent
        ("#### 8.50", "8.5", True),
        ("\\boxed{\\frac{1}{2}}", "0.5", True),  # LaTeX fraction vs decimal
        ("\\boxed{\\dfrac{3}{4}}", "The final answer is \\boxed{0.75}", True),
        ("#### 2/3", "\\frac23", True),
        ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
        ("\\boxed{5\\text{ cm}}", "5", True),  # units in \text
        ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
        ("\\boxed{(1, 2)}", "(1,2)", True),
        ("\\boxed{\\text{Devon}}", "\\text{Devon}", True),
        ("#### -3", "-3", True),
        ("\\boxed{x = 5}", "5", True),
        ("\\boxed{\\$18.90}", "18.9", True),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
        ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}", True),
        ("#### 12", "#### 13", False),
        ("\\boxed{0.3333}", "\\frac{1}{3}", False),
        ("I don't know", "3", False),
    ],
)
def test_grade_formats(response: str, answer: str, expected: bool) -> None:
    assert grade(response, answer) is expected


@pytest.mark.parametrize(
    "response",
    [
        "\\boxed{9^{9^{9^{9}}}}",  # giant power
        "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",  # deep nesting
        "1" * 300_000,  # huge
        "\\boxed{__import__('os').system('echo pwned')}",  # would be code under eval
        "\\boxed{",  # unbalanced
        "#### 1/0",
        "\\boxed{\\frac{1}{0}}",
        "\x00\xff\ud800",
    ],
)
def test_grade_hostile_input_is_false(response: str) -> None:
    assert grade(response, "1") is False


def test_grade_never_raises_on_non_strings() -> None:
    assert grade(None, "1") is False  # type: ignore[arg-type]
    assert grade("#### 1", 1) is False  # type: ignore[arg-type]


def test_extract_answer_prefers_boxed_then_hashes() -> None:
    assert extract_answer("#### 4 and \\boxed{5}") == "5"
    assert extract_answer("x\n#### 7\n") == "7"
    assert extract_answer("we get 3 then 9 apples") == "9"


def test_gsm8k_walkthrough_wins_every_problem() -> None:
    """Following the reference steps (expert_action) solves all 100 shipped GSM8K test problems."""
    env = gym.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test")
    ids = env.unwrapped.task_ids
    assert len(ids) == 100 and ids == sorted(ids)
    won = 0
    for task_id in ids:
        obs, info = env.reset(options={"task_id": task_id})
        assert obs == info["task"] and info["admissible_actions"] == []
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        won += info["won"] and reward == 1.0
    assert won == 100


def test_math_step_mode_observation_and_wrong_answer() -> None:
    env = gym.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test")
    obs, info = env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step("Let me think.")
    assert obs.endswith("\n\nLet me think.") and reward == 0.0 and not terminated
    assert info["expert_action"] is None  # diverged from the reference
    obs, reward, terminated, truncated, info = env.step("#### -123456789")
    assert terminated and reward == 0.0 and not info["won"]


def test_math_single_mode_and_time_limit() -> None:
    env = gym.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test", mode="single")
    obs, info = env.reset(seed=0)
    _, reward, terminated, _, info = env.step(info["expert_action"])
    assert terminated and reward == 1.0
    env = gym.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test", max_episode_steps=2)
    env.reset(seed=0)
    assert [env.step("hmm")[3] for _ in range(2)] == [False, True]


def test_gsm_symbolic_split_by_seed_and_deterministic() -> None:
    pytest.importorskip("reasoning_gym")
    train = gym.make("agentrl/Math-v0", dataset="gsm-symbolic", split="train", size=20)
    again = gym.make("agentrl/Math-v0", dataset="gsm-symbolic", split="train", size=20)
    test = gym.make("agentrl/Math-v0", dataset="gsm-symbolic", split="test", size=20)
    assert train.unwrapped.task_ids == again.unwrapped.task_ids
    assert not set(train.unwrapped.task_ids) & set(test.unwrapped.task_ids)
    a, b = train.reset(seed=5), again.reset(seed=5)
    assert a[0] == b[0]


def test_jsonl_dataset(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [{"question": "1+1?", "answer": "1+1=2\n#### 2"},
            {"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = gym.make("agentrl/Math-v0", dataset=f"jsonl:{path}", split="train")
    assert len(env.unwrapped.task_ids) == 2
    _, info = env.reset(options={"task_id": "mine-000002"})
    _, reward, terminated, _, _ = env.step("\\boxed{0.5}")
    assert terminated and reward == 1.0
    path.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match=r"mine.jsonl:1"):
        gym.make("agentrl/Math-v0", dataset=f"jsonl:{path}")


def test_chain_sum_steps_are_the_running_sum() -> None:
    from agentrl.envs.math.datasets import chain_sum_steps

    assert chain_sum_steps("15 - 43 - 75") == ("15 - 43 = -28", "-28 - 75 = -103", "#### -103")
    assert chain_sum_steps("7 + 8") == ("7 + 8 = 15", "#### 15")
    for bad in ("2 * 3", "x + 1", "4 + 5 / 2"):
        with pytest.raises(ValueError, match="chain sum"):
            chain_sum_steps(bad)


def test_chain_sum_expert_wins_and_size_reaches_the_generator() -> None:
    pytest.importorskip("reasoning_gym")
    env = gym.make("agentrl/Math-v0", dataset="chain-sum", split="train", size=30)
    test = gym.make("agentrl/Math-v0", dataset="chain-sum", split="test", size=5)
    assert len(env.unwrapped.task_ids) == 30 and len(test.unwrapped.task_ids) == 5
    assert not set(env.unwrapped.task_ids) & set(test.unwrapped.task_ids)
    for task_id in env.unwrapped.task_ids:
        _, info = env.reset(options={"task_id": task_id})
        steps = 0
        while info["expert_action"] is not None:
            _, reward, terminated, _, info = env.step(info["expert_action"])
            steps += 1
        assert terminated and reward == 1.0 and 3 <= steps <= 4  # 3-4 terms: 2-3 sums, then `#### N`


def test_chain_sum_long_is_longer_and_seeded_apart() -> None:
    pytest.importorskip("reasoning_gym")
    from agentrl.envs.math.datasets import load_problems

    short = {p.question for p in load_problems("chain-sum", "test", 50, 0)}
    long = load_problems("chain-sum-long", "test", 50, 0)
    assert all(5 <= len(p.steps) <= 6 for p in long)  # 5-6 terms: 4-5 sums, then `#### N`
    assert all(p.id.startswith("chain-sum-long-test-") and p.source == "chain-sum-long" for p in long)
    assert not short & {p.question for p in long}
    train = {p.question for p in load_problems("chain-sum-long", "train", 50, 0)}
    assert not train & {p.question for p in long}


def test_rollout_config_passes_the_problem_count_to_math_envs() -> None:
    from agentrl.config import ConfigError
    from agentrl.rollout import RolloutConfig

    cfg = RolloutConfig(env="math", dataset="chain-sum", problems=4000, policy="expert", out="x.jsonl")
    assert cfg.env_kwargs()["size"] == 4000
    with pytest.raises(ConfigError, match="problems"):
        RolloutConfig(env="math", dataset="chain-sum", problems=0, policy="expert", out="x.jsonl")


@pytest.mark.parametrize(
    "response",
    ["#### 4\x00", "#### \x004", "The answer is 4\x1b", "#### 4\u200b", "\\boxed{4\x07}", "####\x0c 4\x7f"],
)
def test_grade_strips_control_characters_before_parsing(response: str) -> None:
    """NUL, ESC, BEL, zero-width space, DEL around a right answer: still right (they are dropped, not read)."""
    assert grade(response, "4") is True


def test_stripping_control_characters_does_not_make_wrong_answers_right() -> None:
    assert grade("#### 1\x002", "4") is False  # "12"
    assert grade("#### 1\x002", "12") is True
    assert strip_control("a\x00b\nc\td\r\u200be") == "ab\nc\td\re"


def test_dataset_splits_and_one_split_default() -> None:
    from agentrl.envs.math.datasets import dataset_splits, load_problems

    assert dataset_splits("gsm8k-test-100") == ("test",)
    assert dataset_splits("chain-sum") == ("train", "test")
    assert dataset_splits("jsonl:any.jsonl") == ()
    with pytest.raises(ValueError, match="unknown math dataset 'nope'"):
        dataset_splits("nope")
    with pytest.raises(ValueError, match="gsm8k-test-100 has no split 'train'"):
        load_problems("gsm8k-test-100", "train", 10, 0)


def test_deepcopy_continues_independently_and_shares_the_problem_set() -> None:
    """Beam search copies an env per surviving step: the copy is at the same state, steps on its own, and shares
    the read-only problems instead of copying them."""
    import copy

    env = gym.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test")
    task = env.unwrapped.task_ids[0]
    env.reset(options={"task_id": task})
    env.step("First, a step.")
    clone = copy.deepcopy(env)
    assert clone.unwrapped._problems is env.unwrapped._problems
    assert clone.unwrapped._steps == env.unwrapped._steps and clone.unwrapped._steps is not env.unwrapped._steps
    answer = env.unwrapped.answer(task)
    observation, reward, terminated, _, info = clone.step(f"#### {answer}")
    assert terminated and reward == 1.0 and info["won"]
    assert env.unwrapped._steps == ["First, a step."] and not env.unwrapped._done
    observation, reward, terminated, _, _ = env.step("#### -1")
    assert terminated and reward == 0.0
