"""agentrl: offline RL (OREO) for LLM agents."""
__version__ = "0.1.0"
