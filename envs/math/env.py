"""``agentrl/Math-v0``: one math problem per episode, one reasoning step per action.

``gymnasium.make("agentrl/Math-v0", dataset="gsm8k-test-100", split="test")``. In ``mode="step"`` each action
is one reasoning step (a line or short paragraph); the observation is the question followed by the steps so far.
The episode terminates when a step states a final answer (``#### N`` or ``\\boxed{...}``) with reward 1.0 if
:func:`agentrl.envs.math.grade.grade` accepts it, else 0.0; the ``TimeLimit`` (20 steps) truncates otherwise.
``mode="single"`` takes a whole response as one action and always terminates. This is how step-level OREO and
beam search see math: states are "question + steps so far".
"""

from __future__ import annotations

import copy

import gymnasium as gym

from agentrl.envs.math.datasets import load_problems
from agentrl.envs.math.grade import grade
from agentrl.envs.text import choose_task, clean_observation, text_space

MAX_STEP_CHARS = 20_000


def has_final_answer(text: str) -> bool:
    """True when ``text`` states a final answer (``#### ...`` or ``\\boxed{...}``)."""
    return "####" in text or "\\boxed" in text


class MathEnv(gym.Env):
    """Math word problems with step actions; ``info["expert_action"]`` is the reference solution's next step."""

    metadata = {"render_modes": ["ansi"]}
    # Read-only after __init__: copies share them (the problem set holds thousands of frozen records).
    _SHARED = frozenset({"_problems", "task_ids", "observation_space", "action_space"})

    def __init__(self, dataset: str = "gsm8k-test-100", split: str = "test", mode: str = "step", size: int = 1000,
                 seed: int = 0, render_mode: str | None = None) -> None:
        if mode not in ("step", "single"):
            raise ValueError(f"mode must be 'step' or 'single', got {mode!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.mode, self.render_mode = mode, render_mode
        self._problems = {p.id: p for p in load_problems(dataset, split, size, seed)}
        self.task_ids: list[str] = sorted(self._problems)
        self.observation_space = text_space(200_000)
        self.action_space = text_space(MAX_STEP_CHARS)
        self._problem = None
        self._steps: list[str] = []
        self._done = False
        self._won = False

    def __deepcopy__(self, memo: dict) -> MathEnv:
        """A copy at the same state that shares the read-only problem set (beam search copies an env per
        surviving candidate each step; copying the problems made that 57% of a B=5 search's time)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = value if key in self._SHARED else copy.deepcopy(value, memo)
        return clone

    def answer(self, task_id: str) -> str:
        """The reference final answer of a task (for evaluation code; not shown to the policy)."""
        return self._problems[task_id].answer

    def _observation(self) -> str:
        text = self._problem.question
        if self._steps:
            text += "\n\n" + "\n".join(self._steps)
        return clean_observation(text, 200_000)

    def _expert_action(self) -> str | None:
        steps = self._problem.steps
        if not steps:
            return None
        if self.mode == "single":
            return "\n".join(steps)
        # the reference's next step while the episode has followed it; None once it diverged or ran out
        n = len(self._steps)
        if n < len(steps) and list(steps[:n]) == self._steps:
            return steps[n]
        return None

    def _info(self) -> dict:
        return {
            "task_id": self._problem.id,
            "task_type": self._problem.source,
            "task": self._problem.question,
            "admissible_actions": [],
            "won": self._won,
            "expert_action": self._expert_action(),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        task_id = choose_task(self.task_ids, options, self.np_random, f"{len(self.task_ids)} problems")
        self._problem = self._problems[task_id]
        self._steps, self._done, self._won = [], False, False
        return self._observation(), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._problem is None:
            raise RuntimeError("MathEnv.step() called before reset()")
        text = action if isinstance(action, str) else ""
        text = text[:MAX_STEP_CHARS].strip() if self.mode == "step" else text[:MAX_STEP_CHARS]
        if self._done:
            return self._observation(), 0.0, True, False, self._info()
        self._steps.append(text)
        terminated = self.mode == "single" or has_final_answer(text)
        reward = 0.0
        if terminated:
            self._done = True
            self._won = grade("\n".join(self._steps), self._problem.answer)
            reward = 1.0 if self._won else 0.0
        return self._observation(), reward, terminated, False, self._info()

    def render(self) -> str | None:
        return self._observation() if self.render_mode == "ansi" and self._problem else None
