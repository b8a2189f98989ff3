"""agentrl's environments; importing this package registers them with Gymnasium.

``gymnasium.make("agentrl/ALFWorld-v0", data=ROOT, split="train")``,
``gymnasium.make("agentrl/TextWorld-v0", games=PATH)``, ``gymnasium.make("agentrl/Math-v0", dataset=NAME)``.
Entry points are strings, so alfworld/textworld/sympy load only when an env is made.
"""

from gymnasium.envs.registration import register, registry

ENV_IDS = ("agentrl/ALFWorld-v0", "agentrl/TextWorld-v0", "agentrl/Math-v0")


def _register(env_id: str, entry_point: str, max_episode_steps: int) -> None:
    if env_id not in registry:  # importing twice (e.g. in worker processes) must not warn
        register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


_register("agentrl/ALFWorld-v0", "agentrl.envs.alfworld.env:ALFWorldEnv", max_episode_steps=50)
_register("agentrl/TextWorld-v0", "agentrl.envs.textworld_env:TextWorldEnv", max_episode_steps=100)
_register("agentrl/Math-v0", "agentrl.envs.math.env:MathEnv", max_episode_steps=20)
