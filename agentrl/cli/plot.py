"""Plot training curves (--metrics), an episode's critic values (--trajectories) or success by method (--results)."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require


@dataclass
class Config:
    """Options of `agentrl plot` (exactly one of --metrics, --trajectories, --results)."""

    metrics: str | None = option(None, help="metrics.jsonl of a training run: losses, value loss, KL, lr over steps")
    trajectories: str | None = option(None, help="trajectory JSONL: plot the critic value per step of one episode")
    episode: int = option(0, help="with --trajectories: index of the episode (0-based; negative from the end)")
    task_id: str | None = option(None, help="with --trajectories: the first episode of this task id instead")
    results: list[str] = option([], help="results.json files of `agentrl eval`: success by method and task type", nargs="+")
    keys: list[str] = option([], help="with --metrics: only these metrics (default: all numeric ones)")
    out: str = option("", help="PNG file to write")

    def __post_init__(self) -> None:
        kinds = [k for k, v in (("--metrics", self.metrics), ("--trajectories", self.trajectories),
                                ("--results", self.results)) if v]
        require(len(kinds) == 1, "give exactly one of --metrics, --trajectories, --results"
                + (f" (got {', '.join(kinds)})" if kinds else ""))
        require(bool(self.out), "give --out FILE.png")
        require(self.out.lower().endswith(".png"), f"--out {self.out}: plots are written as .png")


def run(cfg: Config) -> int:
    from agentrl.evaluation import load_results, method_names
    from agentrl.plots import plot_metrics, plot_results, plot_values
    from agentrl.replay import select_episode
    from agentrl.trajectory import read_episodes

    if cfg.metrics:
        path = plot_metrics(cfg.metrics, cfg.out, keys=cfg.keys or None)
    elif cfg.trajectories:
        episode = select_episode(read_episodes(cfg.trajectories), cfg.episode, cfg.task_id)
        path = plot_values(episode, cfg.out)
    else:
        results = [load_results(p) for p in cfg.results]
        path = plot_results(results, cfg.out, names=method_names(results, cfg.results))
    print(f"wrote {path}")
    return 0
