"""The whole OREO loop on household tasks in minutes: generate, demonstrate, SFT, roll out, OREO, evaluate."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import on_off, option, require
from agentrl.options import SamplingOptions, TinyModelOptions


@dataclass
class Config(TinyModelOptions, SamplingOptions):
    """Options of `agentrl demo` (every size lives here; `configs/demo.yaml` is the shipped choice)."""

    out: str = option("runs/demo", help="folder for data, models, trajectories and results (reruns skip done stages)")
    train_tasks: int = option(24, help="generated ALFWorld train tasks")
    eval_tasks: int = option(12, help="generated tasks of the evaluation split")
    eval_split: str = option("valid_unseen", help="evaluation split: valid_seen or valid_unseen (unseen rooms)")
    room_size: str = option("any", help="room size of generated tasks: any, small, medium or large")
    model: str = option("tiny", help="`tiny` (from scratch on the task text, CPU-sized) or a model name/folder")
    example: bool = option(False, help="put the in-context example in the prompt (the tiny model learns the format by SFT)")
    thoughts: str = option("on", help="on: the demonstrations' turns carry the expert's templated `Think:` line; off: "
                           "thought-free `Action: ...` turns (the models then talk that way: agent_config.json)")
    workers: int = option(2, help="processes generating tasks")
    history: int | None = option(None, help="prompt keeps the last N turns (default: all; learner trains on full chats)")
    max_new_tokens: int = option(40, help="token cap per generated turn (a ReAct turn of this task is ~25 tokens)")
    temperature: float | None = option(1.0, help="sampling temperature of the SFT-policy rollouts (evaluations are "
                                       "greedy; best-of-K samples at 1.0)")
    max_steps: int = option(15, help="step cap per episode (the ALFWorld protocol uses 40)")
    num_envs: int = option(4, help="parallel environments")
    sft_epochs: float = option(40.0, help="SFT passes over the expert demonstrations")
    sft_lr: float = option(2e-3, help="SFT learning rate (from-scratch models want a large one)")
    batch_size: int = option(8, help="episodes per optimizer step")
    max_length: int = option(4096, help="longest episode the learner keeps, in tokens (the tiny model has 4,096 "
                             "positions; a longer demonstration would be skipped)")
    samples_per_task: int = option(2, help="SFT-policy rollouts per train task (the paper: 5)")
    oreo_epochs: float = option(1.0, help="OREO passes over expert + policy rollouts")
    oreo_lr: float = option(2e-4, help="OREO policy learning rate")
    critic_lr: float = option(1e-3, help="OREO critic learning rate")
    beta: float = option(0.03, help="OREO KL coefficient beta")
    best_of: int = option(3, help="K of the best-of-K evaluation")
    live: bool = option(True, help="replay the last evaluation live")

    def __post_init__(self) -> None:
        require(self.train_tasks >= 6 and self.eval_tasks >= 1, "need train_tasks >= 6 and eval_tasks >= 1")
        require(self.eval_split in ("valid_seen", "valid_unseen"), f"eval_split: valid_seen|valid_unseen, got {self.eval_split!r}")
        require(self.best_of >= 2, f"best_of must be >= 2, got {self.best_of}")
        self.thoughts = on_off(self.thoughts, "thoughts")
        require(self.samples_per_task >= 1 and self.num_envs >= 1, "samples_per_task and num_envs must be >= 1")
        super().__post_init__()


def run(cfg: Config) -> int:
    from agentrl.demo import run_demo

    run_demo(cfg)
    return 0
