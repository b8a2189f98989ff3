"""agentrl's environments, registered in one table; importing this package registers them with Gymnasium.

``gymnasium.make("agentrl/ALFWorld-v0", data=ROOT, split="train")``,
``gymnasium.make("agentrl/TextWorld-v0", games=PATH)``, ``gymnasium.make("agentrl/Math-v0", dataset=NAME)``.
:data:`SPECS` is the one place that says, per env, its id, entry point, step cap, splits and which options it
takes; the core's option groups (``agentrl.options.EnvOptions``) read it, nothing else lists envs. Entry points
are strings, so alfworld/textworld/sympy load only when an env is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gymnasium.envs.registration import register, registry


@dataclass(frozen=True)
class EnvSpec:
    """One registered environment.

    Attributes:
        name: the short name users type (``--env alfworld``).
        id: the Gymnasium id.
        entry_point: ``module:Class``, imported only when the env is made.
        max_steps: the step cap (Gymnasium ``TimeLimit``); every command defaults to it.
        splits: the split names the env knows; empty: any name (a label, or the dataset decides).
        train_split: the split rollouts default to.
        eval_split: the split evaluations default to.
        kwargs: ``(make keyword, option name)`` pairs: which user options the env takes, under which keyword.
        required: options the env cannot do without, each with a hint on how to get one.
        admissible: whether ``info["admissible_actions"]`` lists the valid actions (math: an answer is free text).
    """

    name: str
    id: str
    entry_point: str
    max_steps: int
    splits: tuple[str, ...]
    train_split: str
    eval_split: str
    kwargs: tuple[tuple[str, str], ...]
    required: dict[str, str] = field(default_factory=dict)
    admissible: bool = True


SPECS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in (
        # 40 steps: the ALFWorld protocol of the OREO paper (the hand-coded expert needs 5-42 on generated tasks).
        EnvSpec("alfworld", "agentrl/ALFWorld-v0", "agentrl.envs.alfworld.env:ALFWorldEnv", 40,
                ("train", "valid_seen", "valid_unseen"), "train", "valid_unseen",
                (("data", "data"), ("split", "split")),
                {"data": "an ALFWorld root holding json_2.1.1/<split>/... (make one: agentrl gen alfworld)"}),
        EnvSpec("textworld", "agentrl/TextWorld-v0", "agentrl.envs.textworld_env:TextWorldEnv", 40,
                (), "train", "valid_unseen", (("games", "games"),),
                {"games": "a game file or folder (make some: agentrl gen textworld)"}),
        # Splits depend on the dataset: agentrl.envs.math.datasets.dataset_splits.
        EnvSpec("math", "agentrl/Math-v0", "agentrl.envs.math.env:MathEnv", 20, ("train", "test"), "train", "test",
                (("dataset", "dataset"), ("split", "split"), ("size", "problems")), admissible=False),
    )
}  # fmt: skip
ENV_IDS = tuple(spec.id for spec in SPECS.values())

for _spec in SPECS.values():
    if _spec.id not in registry:  # importing twice (e.g. in worker processes) must not warn
        register(id=_spec.id, entry_point=_spec.entry_point, max_episode_steps=_spec.max_steps)
