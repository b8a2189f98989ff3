"""Replay an episode from a trajectory file in the terminal (thoughts, actions, critic values, candidates)."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require


@dataclass
class Config:
    """Options of `agentrl replay`."""

    file: str = option("", help="trajectory JSONL written by `agentrl rollout` or `agentrl eval`", positional=True)
    episode: int | None = option(None, help="index of the episode in the file (0-based; negative counts from the end)")
    task_id: str | None = option(None, help="replay the first episode of this task id (or episode id) instead")
    speed: float = option(1.0, help="steps per second when playing frame by frame")
    no_delay: bool = option(False, help="print all frames at once (for logs and pipes)")
    export: str | None = option(None, help="also save the view as .svg or .html")
    width: int | None = option(None, help="render at this many columns (default: the terminal's width)")

    def __post_init__(self) -> None:
        require(bool(self.file), "give the trajectory file: `agentrl replay FILE.jsonl`")
        require(self.speed > 0, f"--speed must be > 0, got {self.speed}")
        require(self.episode is None or self.task_id is None, "give --episode or --task-id, not both")
        require(self.width is None or self.width >= 20, f"--width must be >= 20, got {self.width}")
        if self.export is not None:
            require(self.export.lower().endswith((".svg", ".html", ".htm")), f"--export {self.export}: use .svg or .html")


def run(cfg: Config) -> int:
    import sys

    from rich.console import Console

    from agentrl.replay import export, play, select_episode
    from agentrl.trajectory import read_episodes

    episode = select_episode(read_episodes(cfg.file), cfg.episode, cfg.task_id)
    console = Console(record=cfg.export is not None, width=cfg.width, soft_wrap=False)
    delay = 0.0 if cfg.no_delay or not sys.stdout.isatty() else 1.0 / cfg.speed
    play(episode, console, delay=delay)
    if cfg.export:
        export(console, cfg.export, title=f"agentrl replay {episode.episode_id}")
        Console(stderr=True).print(f"saved {cfg.export}")
    return 0
