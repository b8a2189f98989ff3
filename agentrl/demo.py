"""`agentrl demo`: the OREO recipe end to end on generated household tasks, sized for a 2-core CPU.

1. generate ALFWorld train and unseen-room evaluation tasks (real engine, expert-verified);
2. collect expert demonstrations; build a tiny model whose tokenizer is fitted to their text;
3. SFT on the demonstrations;
4. roll out the SFT policy with sampling (successes and failures);
5. OREO (policy + critic) on demonstrations + rollouts, starting from the SFT policy;
6. evaluate SFT greedy, OREO greedy and OREO + best-of-K on the unseen tasks, with a live replay,
   and print the before/after table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agentrl import pipeline
from agentrl.pipeline import Stages, console


def run_demo(cfg: Any) -> dict[str, Any]:
    start = time.perf_counter()
    out = Path(cfg.out)
    data = out / "data"
    stages = Stages(out)
    common = {"env": "alfworld", "data": str(data), "num_envs": cfg.num_envs, "max_steps": cfg.max_steps,
              "history": cfg.history, "example": cfg.example, "seed": cfg.seed,
              "max_new_tokens": cfg.max_new_tokens}  # fmt: skip

    stages.run("generate train tasks", data / "json_2.1.1" / "train", pipeline.gen_tasks,
               root=data, split="train", n=cfg.train_tasks, seed=cfg.seed, room_size=cfg.room_size, workers=cfg.workers)
    stages.run(f"generate {cfg.eval_split} tasks", data / "json_2.1.1" / cfg.eval_split, pipeline.gen_tasks,
               root=data, split=cfg.eval_split, n=cfg.eval_tasks, seed=cfg.seed + 1, room_size=cfg.room_size,
               workers=cfg.workers)

    expert = out / "expert.jsonl"
    # The expert gets the generator's step cap, so no demonstration is cut short into a failure.
    stages.run("expert demonstrations", pipeline.finished(expert), pipeline.rollout,
               **{**common, "max_steps": max(cfg.max_steps, 50)}, split="train", policy="expert", out=str(expert),
               thoughts=cfg.thoughts)  # the models trained on these inherit the format (agent_config.json)

    base = pipeline.base_model(stages, "tiny model", cfg.model, expert, out / "base-model", cfg.seed,
                               **cfg.tiny_sizes())

    sft = out / "sft"
    stages.run("SFT on demonstrations", sft / "policy" / "config.json", pipeline.learn, algo="sft",
               data=[str(expert)], model=base, out=str(sft), lr=cfg.sft_lr, epochs=cfg.sft_epochs,
               batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed, lr_schedule="cosine",
               log_every=25)

    rollouts = out / "sft-rollouts.jsonl"
    stages.run("SFT-policy rollouts", pipeline.finished(rollouts), pipeline.rollout, **common, split="train",
               policy="react", model=str(sft / "policy"), temperature=cfg.temperature, top_p=cfg.top_p,
               samples_per_task=cfg.samples_per_task, out=str(rollouts))

    oreo = out / "oreo"
    stages.run("OREO (policy + critic)", oreo / "critic", pipeline.learn, algo="oreo",
               data=[str(expert), str(rollouts)], model=str(sft / "policy"), out=str(oreo), lr=cfg.oreo_lr,
               critic_lr=cfg.critic_lr, beta=cfg.beta, epochs=cfg.oreo_epochs, batch_size=cfg.batch_size,
               max_length=cfg.max_length, seed=cfg.seed, log_every=10)

    evals = {
        "SFT": {"model": str(sft / "policy")},
        "OREO": {"model": str(oreo / "policy")},
        f"OREO+best-of-{cfg.best_of}": {"model": str(oreo / "policy"), "critic": str(oreo / "critic"),
                                        "best_of": cfg.best_of},
    }
    paths = []
    for i, (method, extra) in enumerate(evals.items()):
        path = out / "results" / f"{method}.json"
        stages.run(f"evaluate {method} on {cfg.eval_split}", path, pipeline.evaluate, **common, **extra,
                   split=cfg.eval_split, policy="react", method=method, out=str(path),
                   trajectories=str(path.with_suffix(".jsonl")), live=cfg.live and i == len(evals) - 1)
        paths.append(path)

    pipeline.compare(paths)
    total = time.perf_counter() - start
    times = ", ".join(f"{k} {v:.0f}s" for k, v in stages.times.items() if v)
    console.print(f"demo finished in {total:.0f} s ({times})")
    console.print(f"replay an episode: agentrl replay {paths[-1].with_suffix('.jsonl')} --episode 0")
    return {"results": [str(p) for p in paths], "seconds": total}
