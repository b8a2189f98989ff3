"""Math word problems as an environment (``agentrl/Math-v0``) and the answer grader.

``from agentrl.envs.math import grade`` (or ``agentrl.envs.math.grade.grade``): see :mod:`.grade`.
"""

from agentrl.envs.math.grade import extract_answer, grade

__all__ = ["extract_answer", "grade"]
