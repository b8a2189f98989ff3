"""The learner: one explicit training loop for OREO, DQO, OREAL, SFT, rejection sampling (RS) and DPO.

``train(cfg)`` is setup -> loop, as torchtune shapes its recipes: :func:`setup_run` builds a :class:`Run`
(data, models, reference cache, optimizers, resumed state) and :func:`train_loop` reads like nanoGPT's
``train.py``: data -> forward -> losses -> backward -> step -> log -> checkpoint. What differs between
algorithms is one micro-batch function each (:mod:`agentrl.learner_steps`). Which items form which micro-batch:
:mod:`agentrl.batches`; models and the reference cache: :mod:`agentrl.learner_setup`; checkpoints and the
output folder: :mod:`agentrl.learner_io`.

Cost of one OREO micro-batch here (LoRA policy + LoRA critic on one frozen base, cached reference):
one policy forward/backward and one critic forward/backward; no reference forward and no second (no-grad)
policy forward, and only the action positions go through the LM head. The reference implementation runs two
policy forwards, a reference forward and a critic forward/backward with three full models in memory.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentrl import batches, learner_io, problem_outcomes
from agentrl import learner_setup as setup
from agentrl.config import to_dict
from agentrl.critic import ValueModel
from agentrl.data import DataError, TokenizedEpisode, parse_reward_map
from agentrl.learn_config import LearnConfig
from agentrl.learner_steps import CRITIC_ALGOS, MICRO_STEPS, REFERENCE_ALGOS
from agentrl.models import load_tokenizer, resolve_model
from agentrl.training_data import ReferenceCache, dpo_pairs, fingerprint, load_tokenized

STEP_SPLITS = {"turn": (), "line": ("\n",), "line+sentence": ("\n", ". ")}


@dataclass
class Run:
    """One training run, built by :func:`setup_run`: what the loop and the micro-batch steps read."""

    cfg: LearnConfig  # with --kl-topk resolved
    device: str
    rank: int  # this process; process 0 logs, checkpoints and saves
    world: int  # processes (data parallel)
    out: Path
    console: Any
    autocast: Callable[[], Any]  # bf16 autocast, or a null context
    tokenizer: Any
    model_path: str
    episodes: list[TokenizedEpisode]
    items: list  # episode indices; DPO: (success, failure) index pairs
    lengths: list[int] | None  # tokens per item when batches are grouped by length, else None
    advantages: list[float] | None  # OREAL: one RLOO advantage per episode
    policy: nn.Module
    critic: ValueModel | None  # OREO/DQO: the value model; OREAL: the token reward model
    total: int  # optimizer steps of the whole run
    ref_cache: ReferenceCache | None = None
    reference: nn.Module | None = None  # a frozen copy of the initial policy (exact KL with full fine-tuning only)
    params: list[nn.Parameter] = field(default_factory=list)  # the policy's trainable parameters
    critic_params: list[nn.Parameter] = field(default_factory=list)
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)  # policy, then critic
    schedulers: list[Any] = field(default_factory=list)
    step: int = 0  # optimizer steps done
    token_norms: tuple[float, float, float] | None = None  # OREAL: (N+, N-, N) of this step, per micro-batch

    @property
    def main(self) -> bool:
        return self.rank == 0


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


class MetricsLogger:
    """One JSON line per optimizer step in ``OUT/metrics.jsonl`` and a short line on stdout."""

    def __init__(self, path: Path, console: Any, resume_step: int = 0):
        self.path = path
        if path.exists():  # resumed: keep the lines up to the checkpoint (a torn last line is dropped)
            path.write_text(
                "".join(ln + "\n" for ln in path.read_text().splitlines() if _step_of(ln) <= resume_step)
            )
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.console = console

    def log(self, metrics: dict[str, Any], echo: bool) -> None:
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()
        if echo:
            keys = ("loss", "value_loss", "rm_loss", "policy_loss", "kl", "lr", "tokens_per_s")
            parts = [f"{k} {metrics[k]:.4g}" for k in keys if metrics.get(k) is not None]
            self.console.print(f"step {metrics['step']:>5}  " + "  ".join(parts))

    def close(self) -> None:
        self.file.close()


def _schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


# ------------------------------------------------------------------------------------------------ setup


def _runtime(cfg: LearnConfig) -> tuple[str, int, int, Any, Callable[[], Any]]:
    """``(device, rank, world, console, autocast)``; seeds torch (the same seed on every process: LoRA and
    value-head initialisation are identical without a broadcast)."""
    from rich.console import Console

    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, device = learner_io.init_distributed(device)  # (0, 1, device) unless launched multi-process
    console = Console(highlight=False, soft_wrap=True, quiet=rank != 0)
    torch.manual_seed(cfg.seed)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda"))
    if bf16 and device == "cpu" and not setup.cpu_bf16_is_native():
        console.print("[yellow]warning: `--precision bf16` on a CPU without bf16 instructions (avx512_bf16/amx) "
                      "runs about 100x slower than fp32: use `--precision fp32` (or auto) here[/]")
    autocast = (
        (lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )
    return device, rank, world, console, autocast


def _training_items(
    cfg: LearnConfig, tokenizer: Any, console: Any
) -> tuple[list[TokenizedEpisode], list, list[float] | None]:
    """The episodes (tokenized once) and the items to train on: episode indices; DPO: (success, failure) pairs
    of a task; OREAL: mixed-outcome groups, with RLOO advantages."""

    episodes, counts = load_tokenized(
        cfg.data, tokenizer, level=cfg.level, step_delimiters=STEP_SPLITS[cfg.step_split],
        reward_map=parse_reward_map(cfg.reward_map), max_length=cfg.max_length, only_success=cfg.algo == "rs",
        allow_labels=cfg.algo == "sft", cap_positives=cfg.cap_positives, seed=cfg.seed,
        observations=cfg.obs_loss_turns if cfg.obs_loss_weight > 0 else None, history=cfg.history,
    )  # fmt: skip
    if cfg.algo in ("oreo", "dqo"):  # the critic learns steps only from problems with both outcomes
        console.print(problem_outcomes.describe_outcomes(counts))
    if cfg.cap_positives:
        console.print(problem_outcomes.describe_cap(counts))
    advantages = None
    if cfg.algo == "dpo":
        items: list = dpo_pairs(episodes, cfg.seed)
    elif cfg.algo == "oreal":
        items, advantages, groups = setup.oreal_items(episodes, cfg.seed, cfg.oreal_pairs)
        counts = {**counts, **groups}
    else:
        items = list(range(len(episodes)))
    console.print(f"data: {counts}, {len(items)} training items" + (" (pairs)" if cfg.algo == "dpo" else ""))
    if not items:
        raise DataError(
            f"no training data left in {cfg.data} (counts: {counts}; rs needs successes, dpo pairs, oreal "
            "tasks with both a success and a failure)"
        )
    return episodes, items, advantages


def _total_steps(cfg: LearnConfig, num_items: int, world: int, model_path: str, console: Any) -> int:
    """Optimizer steps of the run (``--max-steps``, else ``--epochs`` passes; OREAL's reward-model warm-up
    comes on top of the policy's epochs), after warning about data the algorithm's assumptions do not fit."""
    per_epoch = max(1, num_items // (cfg.batch_size * world)) // cfg.grad_accum
    warmup = cfg.oreal_rm_warmup if cfg.algo == "oreal" else 0
    total = cfg.max_steps or max(1, int(cfg.epochs * per_epoch)) + warmup
    for warning in setup.data_source_warnings(cfg, model_path, max(0, total - warmup) / per_epoch):
        console.print(f"[yellow]warning: {warning}[/]")
    return total


def uses_kl(cfg: LearnConfig) -> bool:
    """Whether the loss has a KL regulariser to compute: OREO's, and DQO's when ``alpha > 0``."""
    return cfg.algo == "oreo" or (cfg.algo == "dqo" and cfg.alpha > 0)


def _models(cfg: LearnConfig, model_path: str, device: str, console: Any) -> tuple[nn.Module, ValueModel | None, Any]:
    """The policy and, for the critic algorithms, the critic; returns ``cfg`` with ``--kl-topk`` resolved."""
    policy = setup.build_policy(model_path, cfg.lora, cfg.lora_r, cfg.lora_alpha, device)
    critic = None
    if cfg.algo in CRITIC_ALGOS:
        critic = setup.build_critic(policy, model_path, cfg.critic_lora, cfg.lora_r, cfg.lora_alpha, device)
        # saved with it: search reads a critic only where it was trained (OREO's and DQO's afterstates; OREAL's
        # is a token reward model, never a value)
        afterstates = cfg.algo in ("oreo", "dqo") and bool(cfg.afterstates)
        critic.trained_at = {"algo": cfg.algo, "level": cfg.level, "afterstates": afterstates}
        if cfg.critic_init:
            setup.load_critic_weights(critic, cfg.critic_init)
    kl_topk = setup.resolve_kl_topk(cfg.kl_topk, policy, console if uses_kl(cfg) else None)
    cfg = dataclasses.replace(cfg, kl_topk=kl_topk)
    if cfg.gradient_checkpointing:
        setup.enable_gradient_checkpointing(policy, *([critic.backbone] if critic is not None else []))
    return policy, critic, cfg


def _reference(run: Run) -> tuple[ReferenceCache | None, nn.Module | None]:
    """The reference cache (computed once per dataset, before any update: the reference is the initial policy)
    and, for the exact KL with full fine-tuning, a frozen copy of the initial policy."""
    from rich.progress import Progress


    cfg = run.cfg
    kl_algo = uses_kl(cfg)
    ref_cache = None
    if cfg.algo in REFERENCE_ALGOS:
        topk = max(1, cfg.kl_topk)
        key = fingerprint(run.model_path, *cfg.data, cfg.level, cfg.step_split, cfg.max_length, topk)
        path = run.out / "reference_cache.safetensors"
        ref_cache = ReferenceCache.load(path, key)
        if ref_cache is None:
            with Progress(console=run.console, transient=True) as bar:
                ref_cache = setup.compute_reference_cache(
                    run.policy, run.episodes, run.tokenizer.pad_token_id, topk, cfg.batch_size, run.device, key,
                    run.autocast, bar,
                )  # fmt: skip
            if run.main:
                ref_cache.save(path)
        if kl_algo and cfg.kl_topk > 0:
            setup.report_kl_coverage(ref_cache, cfg.kl_topk, run.console)
    reference = None
    if kl_algo and cfg.kl_topk == 0 and not setup.is_peft(run.policy):
        reference = copy.deepcopy(run.policy).eval().requires_grad_(False)
    return ref_cache, reference


def _optimizers(run: Run) -> None:
    """AdamW for the policy (and the critic) with the learning-rate schedules, into ``run``."""
    cfg = run.cfg
    run.params = setup.policy_parameters(run.policy)
    run.optimizers = [torch.optim.AdamW(run.params, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if run.critic is not None:
        run.critic_params = run.critic.trainable_parameters()
        run.optimizers.append(
            torch.optim.AdamW(run.critic_params, lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
        )
    frozen = [p for p in run.params + run.critic_params if not p.requires_grad]
    if frozen:  # a parameter the optimizer owns but autograd ignores would silently never train
        raise RuntimeError(f"{len(frozen)} trainable parameters have requires_grad=False")
    run.schedulers = [
        torch.optim.lr_scheduler.LambdaLR(o, _schedule(cfg.lr_schedule, cfg.warmup_steps, run.total))
        for o in run.optimizers
    ]


def setup_run(cfg: LearnConfig) -> Run:
    """Everything a run needs, in the order it must happen: data (tokenized once), models, the reference cache
    (before any update), optimizers, and with ``--resume`` the latest checkpoint's state."""

    device, rank, world, console, autocast = _runtime(cfg)
    out = Path(cfg.out)
    resume_from = learner_io.latest_checkpoint(out / "checkpoints") if cfg.resume else None
    if cfg.resume and resume_from is None:
        console.print(f"[yellow]--resume: no checkpoint in {out / 'checkpoints'}; starting from scratch[/]")
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(cfg.model)
    setup.check_adapter_start(cfg, model_path, REFERENCE_ALGOS, CRITIC_ALGOS)
    tokenizer = load_tokenizer(model_path)
    episodes, items, advantages = _training_items(cfg, tokenizer, console)
    lengths = batches.grouping_lengths(cfg.algo, cfg.group_by_length, [len(e.input_ids) for e in episodes], items)
    total = _total_steps(cfg, len(items), world, model_path, console)
    policy, critic, cfg = _models(cfg, model_path, device, console)
    run = Run(cfg=cfg, device=device, rank=rank, world=world, out=out, console=console, autocast=autocast,
              tokenizer=tokenizer, model_path=model_path, episodes=episodes, items=items, lengths=lengths,
              advantages=advantages, policy=policy, critic=critic, total=total)  # fmt: skip
    run.ref_cache, run.reference = _reference(run)
    _optimizers(run)
    if resume_from:
        run.step = learner_io.load_checkpoint(resume_from, policy, critic, run.optimizers, run.schedulers)
        console.print(f"resumed from {resume_from} (step {run.step})")
    if run.main:
        (out / "learn_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    return run


# ------------------------------------------------------------------------------------------------- loop


def _optimizer_step(run: Run) -> dict[str, Any]:
    """One optimizer step: ``--grad-accum`` micro-batches (every ``world``-th of the one global sequence on
    this process), gradients averaged over processes, clipped per model, one step of each optimizer."""
    cfg = run.cfg
    started = time.perf_counter()
    sums: dict[str, float] = {}
    tokens = 0
    if cfg.algo == "oreal":  # per-token losses divide by the whole step's token counts
        run.token_norms = batches.step_token_norms(cfg, run.episodes, run.items, run.lengths, run.step, run.world)
    for j in range(cfg.grad_accum):
        micro = batches.micro_index(run.step, j, cfg.grad_accum, run.world, run.rank)
        chosen = batches.micro_batch(run.items, micro, cfg.batch_size, cfg.seed, run.lengths)
        batch = batches.collate_items(
            cfg.algo, run.episodes, chosen, run.tokenizer.pad_token_id, run.ref_cache, run.advantages
        )
        batch = {k: v.to(run.device) for k, v in batch.items()}
        tokens += int(batch["attention_mask"].sum())
        # Each micro-batch loss is scaled by 1/grad_accum: the gradients add up to the full batch mean.
        for k, v in MICRO_STEPS[cfg.algo](run, batch, 1.0 / cfg.grad_accum).items():
            sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
    if run.world > 1:
        sums = learner_io.all_reduce_mean(run.params + run.critic_params, {**sums, "tokens": tokens}, run.world)
        tokens = int(sums.pop("tokens") * run.world)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
    if run.critic is not None:
        sums["critic_grad_norm"] = torch.nn.utils.clip_grad_norm_(run.critic_params, cfg.max_grad_norm).item()
    lrs = [s.get_last_lr()[0] for s in run.schedulers]
    for opt, sched in zip(run.optimizers, run.schedulers, strict=True):
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    run.step += 1
    if run.device.startswith("cuda"):
        torch.cuda.synchronize()  # honest timing: wait for the GPU before reading the clock
    elapsed = time.perf_counter() - started
    return {
        "step": run.step, "loss": sums.pop("loss"), "value_loss": sums.pop("value_loss", None),
        "policy_loss": sums.pop("policy_loss", None), "kl": sums.pop("kl", None), "lr": lrs[0],
        "critic_lr": lrs[1] if len(lrs) > 1 else None, "grad_norm": grad_norm.item(),
        "tokens_per_s": tokens / elapsed, "step_time_s": elapsed, **sums,
    }  # fmt: skip


def train_loop(run: Run, logger: MetricsLogger | None) -> dict[str, Any] | None:
    """Optimizer steps until ``run.total`` (or ``--stop-after``), logging each and checkpointing every
    ``--save-every`` steps and at the end; returns the last step's metrics."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cfg = run.cfg
    stop_at = min(run.total, cfg.stop_after) if cfg.stop_after else run.total
    metrics = None
    run.policy.train()
    if run.critic is not None:
        run.critic.train()
    columns = [TextColumn("[bold]learn {task.fields[algo]}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]  # fmt: skip
    with Progress(*columns, console=run.console, transient=True) as bar:
        task = bar.add_task("learn", total=run.total, completed=run.step, algo=cfg.algo)
        while run.step < stop_at:
            metrics = _optimizer_step(run)
            if logger is not None:
                logger.log(metrics, echo=run.step % cfg.log_every == 0 or run.step == stop_at)
            bar.update(task, completed=run.step)
            if run.main and ((cfg.save_every and run.step % cfg.save_every == 0) or run.step == stop_at):
                learner_io.save_checkpoint(run.out / "checkpoints", run.step, run.policy, run.critic,
                                           run.optimizers, run.schedulers)  # fmt: skip
    return metrics


def train(cfg: LearnConfig, save: bool = True) -> dict[str, Any]:
    """Trains a policy (and for OREO/DQO a critic, for OREAL a token reward model) on trajectory files; see
    ``agentrl learn --help`` for ``cfg``.

    ``save=False`` skips writing ``OUT/policy`` and ``OUT/critic`` at the end (benchmarks).

    Returns:
        A summary: ``{"steps", "total", "final": last metrics, "out"}``.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own rich progress is enough
    run = setup_run(cfg)
    logger = MetricsLogger(run.out / "metrics.jsonl", run.console, resume_step=run.step) if run.main else None
    try:
        metrics = train_loop(run, logger)
    finally:
        if logger is not None:
            logger.close()
    out, console = run.out, run.console
    if run.step >= run.total and save and run.main:
        learner_io.save_outputs(out, run.policy, run.critic, run.tokenizer, run.model_path)
        critic = f", critic -> {out / 'critic'}" if run.critic else ""
        console.print(f"done: {run.step} steps; policy -> {out / 'policy'}{critic}")
    else:
        console.print(f"stopped at step {run.step} of {run.total}; continue with --resume")
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()  # the main process has finished writing before anyone exits
        dist.destroy_process_group()
    return {"steps": run.step, "total": run.total, "final": metrics, "out": str(out)}

