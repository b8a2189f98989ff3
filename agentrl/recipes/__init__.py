"""Recipes: multi-stage experiments written once and driven by YAML (the demo, iterate, the mini-benchmarks).

* :mod:`agentrl.recipes.stages`: resumable stages that record their own wall time; the stage calls (task
  generation, rollouts, learning, evaluation, tiny models).
* :mod:`agentrl.recipes.config`: :class:`RecipeConfig`, the typed YAML of the offline-RL recipe.
* :mod:`agentrl.recipes.offline`: :func:`run_recipe`: data -> demonstrations -> SFT -> rounds of rollouts,
  learners and evaluations, per seed.
* :mod:`agentrl.recipes.summary`: aggregation over seeds, markdown tables, the summary plot.
"""

from agentrl.recipes.config import RecipeConfig
from agentrl.recipes.offline import run_recipe

__all__ = ["RecipeConfig", "run_recipe"]
