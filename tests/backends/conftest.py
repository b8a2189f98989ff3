"""The backend tests that run the rollout engine use its in-process env pool (``tests/rollout/fake_env.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "rollout"))
