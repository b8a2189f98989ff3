"""ALFWorld on the real alfworld/TextWorld engine: env, offline task generator, hand-coded expert.

Modules: ``rooms`` (scenes from alfworld's FloorPlan layouts), ``pddl`` (problems and ``game.tw-pddl`` files),
``generator`` (expert-verified tasks in the ``alfworld-download`` layout), ``engine`` (TextWorld's PDDL engine
with caches), ``expert`` (alfworld's hand-coded expert, deterministic), ``env`` (``agentrl/ALFWorld-v0``).
Nothing here imports alfworld or textworld until it is used.
"""
