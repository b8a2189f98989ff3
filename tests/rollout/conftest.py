"""Makes ``fake_env`` (an in-process EnvPool stand-in) importable by the rollout tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
