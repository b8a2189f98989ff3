"""The learner: one explicit training loop for OREO, DQO, OREAL, SFT, rejection sampling (RS) and DPO.

``train(cfg)`` reads like nanoGPT's ``train.py``: data -> forward -> losses -> backward -> step -> log ->
checkpoint. What differs between algorithms is one micro-batch function each (``MICRO_STEPS``): forward,
loss from :mod:`agentrl.losses`, backward. Models, the reference cache and checkpoint I/O live in
:mod:`agentrl.learner_setup`.

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
from pathlib import Path
from typing import Any

import torch

from agentrl import losses, losses_dqo, losses_oreal
from agentrl.data import DataError, ReferenceCache, TokenizedEpisode, collate

DEFAULT_ALPHA = {"token": 0.01, "step": 0.1, "response": 0.3}  # paper A.3
STEP_SPLITS = {"turn": (), "line": ("\n",), "line+sentence": ("\n", ". ")}
GROUP_WINDOW = 16  # --group-by-length sorts windows of this many batches


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


def _oreo_micro(ctx: dict[str, Any], batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """OREO on one micro-batch: critic step on Eq. 8, policy step on Eq. 9/10 + alpha * KL.

    Default order: policy forward, critic forward, value backward, policy backward (two forwards, two
    backwards; both autograd graphs are alive together). ``--low-memory``: the critic first runs without
    gradients to give ``sg[V]`` for the policy loss, the policy backward frees the policy graph, then the
    critic runs with gradients (one graph at a time, for one more critic forward). Same numbers either way.
    With ``--afterstates`` (default) the critic is also trained at every turn's end-of-turn token, where
    best-of-K and beam search read it (:func:`agentrl.losses.afterstate_targets`).
    """
    cfg, policy, critic = ctx["cfg"], ctx["policy"], ctx["critic"]
    b, s = batch["state_mask"].shape

    def critic_values() -> tuple[torch.Tensor, torch.Tensor]:  # V at the states [B, S] and afterstates [B, T]
        with ctx["autocast"]():
            values = critic.values(batch["input_ids"], batch["attention_mask"])
        return values.gather(1, batch["state_positions"]), values.gather(1, batch["after_positions"])

    def value_step(values: tuple[torch.Tensor, torch.Tensor], token_lr: torch.Tensor) -> tuple[torch.Tensor, dict]:
        states, after = values
        after_args = {}
        if cfg.afterstates:
            token_dense = token_lr.new_zeros(batch["action_mask"].shape).masked_scatter(batch["action_mask"], token_lr)
            targets = losses.afterstate_targets(
                token_dense, batch["after_positions"], batch["after_mask"], batch["reward"], cfg.beta
            )
            after_args = {"after_values": after, "after_targets": targets, "after_mask": batch["after_mask"]}
        step_lr = losses.segment_sum(token_lr, batch["action_segments"], b, s)
        loss, metrics = losses.oreo_value_loss(
            states, step_lr, batch["state_mask"], batch["reward"], cfg.beta, **after_args
        )
        (loss * scale).backward()  # frees the critic's graph
        return loss, metrics

    if cfg.low_memory:
        with torch.no_grad():
            values = critic_values()
    with ctx["autocast"]():
        logits = ctx["action_logits"](policy, batch)  # [N, V], only the positions that predict actions
        if cfg.kl_topk > 0:
            logp, kl = losses.token_logps_and_topk_kl(
                logits, batch["targets"], batch["ref_topk_ids"], batch["ref_topk_logps"], cfg.chunk_size
            )
        else:  # exact full-vocabulary KL: one reference forward per micro-batch
            ref_logits = ctx["reference_logits"](policy, ctx["reference"], batch)
            logp, kl = losses.token_logps_and_kl(logits, batch["targets"], ref_logits, cfg.chunk_size)
    token_lr = logp - batch["ref_logps"]  # [N]
    step_lr = losses.segment_sum(token_lr, batch["action_segments"], b, s)  # [B, S]
    if not cfg.low_memory:
        values = critic_values()
        value_loss, vm = value_step(values, token_lr.detach())
    policy_loss, pm = losses.oreo_policy_loss(values[0], step_lr, batch["state_mask"], batch["reward"], cfg.beta)
    kl_mean = losses.row_mean(kl, batch["action_rows"], b)
    ((policy_loss + cfg.alpha * kl_mean) * scale).backward()
    if cfg.low_memory:
        value_loss, vm = value_step(critic_values(), token_lr.detach())
    total = value_loss.item() + policy_loss.item() + cfg.alpha * kl_mean.item()
    return {**vm, **pm, "kl": kl_mean.item(), "loss": total}


def _policy_logps(
    ctx: dict[str, Any], batch: dict[str, torch.Tensor], with_kl: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Policy log-probs of the action tokens ``[N]`` and, with ``with_kl``, ``KL(pi || pi_ref)`` ``[N]`` at
    their positions (against the cached reference top-k, or exact with ``--kl-topk 0``); else ``None``."""
    cfg, policy = ctx["cfg"], ctx["policy"]
    with ctx["autocast"]():
        logits = ctx["action_logits"](policy, batch)  # [N, V], only the positions that predict actions
        if not with_kl:
            return losses.token_logps(logits, batch["targets"], cfg.chunk_size), None
        if cfg.kl_topk > 0:
            return losses.token_logps_and_topk_kl(
                logits, batch["targets"], batch["ref_topk_ids"], batch["ref_topk_logps"], cfg.chunk_size
            )
        ref_logits = ctx["reference_logits"](policy, ctx["reference"], batch)
        return losses.token_logps_and_kl(logits, batch["targets"], ref_logits, cfg.chunk_size)


def _state_values(ctx: dict[str, Any], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, S]`` the critic's values at the state positions."""
    with ctx["autocast"]():
        values = ctx["critic"].values(batch["input_ids"], batch["attention_mask"])
    return values.gather(1, batch["state_positions"])


def _dqo_micro(ctx: dict[str, Any], batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """DQO on one micro-batch: critic step on the lambda-return regression, policy step on the Q regression
    (+ alpha * KL when ``alpha > 0``), each weighted by the clipped trajectory importance weight where
    ``--dqo-weight`` says. The order (and ``--low-memory``) is OREO's: see :func:`_oreo_micro`."""
    cfg = ctx["cfg"]
    b, s = batch["state_mask"].shape
    mask, reward = batch["state_mask"], batch["reward"]
    if cfg.low_memory:
        with torch.no_grad():
            values = _state_values(ctx, batch)
    logp, kl = _policy_logps(ctx, batch, with_kl=cfg.alpha > 0)
    step_lr = losses.segment_sum(logp - batch["ref_logps"], batch["action_segments"], b, s)  # [B, S]
    weight = losses_dqo.trajectory_weight(step_lr, mask, cfg.dqo_clip)
    value_weight = weight if cfg.dqo_weight in ("both", "value") else None
    policy_weight = weight if cfg.dqo_weight in ("both", "policy") else None

    def value_step(values: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = losses_dqo.dqo_value_loss(
            values, step_lr.detach(), mask, reward, cfg.beta, cfg.dqo_lambda, value_weight
        )
        (loss * scale).backward()
        return loss, metrics

    if not cfg.low_memory:
        values = _state_values(ctx, batch)
        value_loss, vm = value_step(values)
    policy_loss, pm = losses_dqo.dqo_policy_loss(
        values, step_lr, mask, reward, cfg.beta, cfg.dqo_lambda, policy_weight
    )
    kl_mean = losses.row_mean(kl, batch["action_rows"], b) if kl is not None else None
    ((policy_loss + (cfg.alpha * kl_mean if kl_mean is not None else 0.0)) * scale).backward()
    if cfg.low_memory:
        value_loss, vm = value_step(_state_values(ctx, batch))
    out = {**vm, **pm, "is_weight_mean": weight.mean().item()}
    if kl_mean is not None:
        out["kl"] = kl_mean.item()
    return {**out, "loss": value_loss.item() + policy_loss.item() + cfg.alpha * out.get("kl", 0.0)}


def _oreal_micro(ctx: dict[str, Any], batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """OREAL on one micro-batch: the token reward model's BCE step, then (after ``--oreal-rm-warmup`` optimizer
    steps) the policy step on advantage-weighted BC + reshaped policy gradient + k3 KL, with token weights from
    the reward model's scores before its update."""
    cfg = ctx["cfg"]
    b, rows, success = batch["input_ids"].shape[0], batch["action_rows"], batch["success"]
    with ctx["autocast"]():
        values = ctx["critic"].values(batch["input_ids"], batch["attention_mask"])
    scores = values[:, :-1][batch["action_mask"][:, 1:]]  # [N] z_i at the position predicting action token i
    rm_loss, rm = losses_oreal.reward_model_loss(scores, rows, b, success)
    (rm_loss * scale).backward()
    if ctx["step"] < cfg.oreal_rm_warmup:
        return {**rm, "loss": rm_loss.item()}
    weight = losses_oreal.token_weights(scores, rows, b, success)
    logp, _ = _policy_logps(ctx, batch, with_kl=False)
    policy_loss, pm = losses_oreal.oreal_policy_loss(
        logp, batch["ref_logps"], rows, batch["advantage"], success, weight, cfg.oreal_eta, cfg.alpha,
        norms=ctx["token_norms"],
    )  # fmt: skip
    (policy_loss * scale).backward()
    total = rm_loss.item() + policy_loss.item()
    return {**rm, **pm, "token_weight_mean": weight.mean().item(), "loss": total}


def _sft_micro(ctx: dict[str, Any], batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """SFT (and RS, whose data holds successful episodes only): NLL of the action tokens."""
    logp, _ = _policy_logps(ctx, batch, with_kl=False)
    loss, m = losses.sft_loss(logp, batch["action_rows"], batch["input_ids"].shape[0])
    (loss * scale).backward()
    return {**m, "loss": loss.item(), "policy_loss": loss.item()}


def _dpo_micro(ctx: dict[str, Any], batch: dict[str, torch.Tensor], scale: float) -> dict[str, float]:
    """DPO: rows ``0..P-1`` of the batch are the successful episodes, rows ``P..2P-1`` their failed partners."""
    rows = batch["input_ids"].shape[0]
    logp, _ = _policy_logps(ctx, batch, with_kl=False)
    seq = logp.new_zeros(rows).index_add(0, batch["action_rows"], logp)
    ref = batch["ref_logps"].new_zeros(rows).index_add(0, batch["action_rows"], batch["ref_logps"])
    p = rows // 2
    loss, m = losses.dpo_loss(seq[:p], seq[p:], ref[:p], ref[p:], ctx["cfg"].beta)
    (loss * scale).backward()
    return {**m, "loss": loss.item(), "policy_loss": loss.item()}


MICRO_STEPS = {
    "oreo": _oreo_micro, "dqo": _dqo_micro, "oreal": _oreal_micro, "sft": _sft_micro, "rs": _sft_micro,
    "dpo": _dpo_micro,
}  # fmt: skip
# A value model trains beside the policy (OREAL's is its token reward model).
CRITIC_ALGOS = ("oreo", "dqo", "oreal")
# They need the reference's log-probs (cached before any update).
REFERENCE_ALGOS = ("oreo", "dqo", "oreal", "dpo")


def _schedule(kind: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _micro_batch(
    items: list, micro: int, batch_size: int, seed: int, lengths: list[int] | None = None
) -> list:
    """Items of global micro-batch ``micro``: epoch ``e`` visits the items in a permutation seeded by
    ``seed + e``, so the data position is a pure function of the micro-batch counter (exact resume).

    With ``lengths`` (tokens per item) batches are grouped by length, as Hugging Face's ``group_by_length``
    does: the permutation is cut into windows of ``GROUP_WINDOW`` batches, each window is sorted by length and
    cut into batches, and the batches are shuffled. Episodes of similar length share a batch, so less of each
    batch is padding (in random batches of ALFWorld demonstrations ~40% of the computed tokens are).
    """
    per_epoch = max(1, len(items) // batch_size)
    epoch, pos = divmod(micro, per_epoch)
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(len(items), generator=generator).tolist()
    if lengths is not None:
        order = order[: per_epoch * batch_size]  # the ragged tail is dropped either way
        window = GROUP_WINDOW * batch_size
        grouped = []
        for start in range(0, len(order), window):
            grouped += sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches = [grouped[b * batch_size : (b + 1) * batch_size] for b in range(per_epoch)]
        shuffle = torch.randperm(per_epoch, generator=generator).tolist()
        return [items[i] for i in batches[shuffle[pos]]]
    return [items[i] for i in order[pos * batch_size : (pos + 1) * batch_size]]


def _grouping_lengths(algo: str, group_by_length: bool | None, size: list[int], items: list) -> list[int] | None:
    """Per-item lengths for :func:`_micro_batch` to group by, or None for random batches.

    ``group_by_length=None`` groups for every algorithm without a critic (not OREO, DQO, OREAL). Agent episodes that succeed are short and
    failures run to the step cap (median 722 vs 1,486 tokens in seed 0 of bench/alfworld_mini/small.yaml), so
    length-sorted windows make batches of one outcome: 285 of that run's 300 OREO batches, against 20 of 300
    random ones. The critic then chases each batch's mean return instead of telling states apart. DPO items are
    (success, failure) pairs, grouped by the longer of the two.
    """
    if not (group_by_length if group_by_length is not None else algo not in CRITIC_ALGOS):
        return None
    return [max(size[c], size[r]) for c, r in items] if algo == "dpo" else size


def _collate(
    algo: str,
    episodes: list[TokenizedEpisode],
    chosen: list,
    pad_id: int,
    ref: ReferenceCache | None,
    advantages: list[float] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`agentrl.data.collate` of the chosen items; with ``advantages`` (OREAL) also ``advantage [B]`` and
    ``success [B]`` bool."""
    if algo == "dpo":  # items are (success, failure) index pairs
        idx = [c for c, _ in chosen] + [r for _, r in chosen]
    else:
        idx = chosen
    batch = collate([episodes[i] for i in idx], pad_id, indices=idx, ref=ref)
    if advantages is not None:
        batch["advantage"] = torch.tensor([advantages[i] for i in idx], dtype=torch.float32)
        batch["success"] = torch.tensor([episodes[i].success for i in idx], dtype=torch.bool)
    return batch


def _micro_index(step: int, j: int, grad_accum: int, world: int, rank: int) -> int:
    """Global micro-batch ``j`` of optimizer step ``step`` on process ``rank``: process ``rank`` takes every
    ``world``-th micro-batch of the one global sequence."""
    return (step * grad_accum + j) * world + rank


def _step_token_norms(
    cfg: Any, episodes: list[TokenizedEpisode], items: list, lengths: list[int] | None, step: int, world: int
) -> tuple[float, float, float]:
    """OREAL's per-token normalisers ``(N+, N-, N)``: action tokens of the successes, failures and all episodes
    of optimizer step ``step`` (every micro-batch of every process), per micro-batch."""
    positive = negative = 0
    for j in range(cfg.grad_accum):
        for rank in range(world):
            micro = _micro_index(step, j, cfg.grad_accum, world, rank)
            for i in _micro_batch(items, micro, cfg.batch_size, cfg.seed, lengths):
                if episodes[i].success:
                    positive += episodes[i].num_actions
                else:
                    negative += episodes[i].num_actions
    k = cfg.grad_accum * world
    return positive / k, negative / k, (positive + negative) / k


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def data_source_warnings(cfg: Any, model_path: str, passes: float) -> list[str]:
    """What makes the data wrong for DQO's importance weight or OREAL's on-policy update (empty: nothing).

    ``passes``: how many passes over the data the policy's updates make (OREAL's warm-up steps not counted).

    DQO's ``w = pi / pi_ref`` assumes the episodes were sampled from ``pi_ref``, the model training starts from;
    OREAL's update assumes they were sampled from the current policy (one round, one pass). Demonstrations (an
    ``expert`` policy) and rollouts of another model break both; a second pass breaks OREAL's.
    """
    from agentrl.trajectory import iter_episodes

    if cfg.algo not in ("dqo", "oreal") or (cfg.algo == "dqo" and cfg.dqo_weight == "none"):
        return []
    experts = others = 0
    for path in cfg.data:
        for episode in iter_episodes(path):
            if episode.policy == "expert":
                experts += 1
            elif not _same_model(str(episode.meta.get("model", model_path)), model_path):
                others += 1
    assumption = (
        "DQO's importance weight pi/pi_ref assumes episodes sampled from the initial policy"
        if cfg.algo == "dqo"
        else "OREAL is on-policy per round: it assumes episodes sampled from the policy being trained"
    )
    found = []
    if experts:
        found.append(f"{experts} expert demonstration(s)")
    if others:
        found.append(f"{others} episode(s) sampled from another model than {model_path}")
    if cfg.algo == "oreal" and passes > 1:
        found.append(f"{passes:.3g} policy passes over the data (stale after the first)")
    return [f"{assumption}; the data has {', '.join(found)}"] if found else []


def train(cfg: Any, save: bool = True) -> dict[str, Any]:
    """Trains a policy (and for OREO a critic) on trajectory files; see ``agentrl learn --help`` for ``cfg``.

    ``save=False`` skips writing ``OUT/policy`` and ``OUT/critic`` at the end (benchmarks).

    Returns:
        A summary: ``{"steps", "final": last metrics, "out"}``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers.utils import logging as hf_logging

    from agentrl import learner_setup as setup
    from agentrl.data import dpo_pairs, fingerprint, load_tokenized, parse_reward_map
    from agentrl.models import load_tokenizer, resolve_model

    hf_logging.disable_progress_bar()  # our own rich progress is enough
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, device = setup.init_distributed(device)  # (0, 1, device) unless launched multi-process
    main = rank == 0  # only the main process logs, checkpoints and saves
    console = Console(highlight=False, soft_wrap=True, quiet=not main)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    resume_from = setup.latest_checkpoint(ckpt_dir) if cfg.resume else None
    if cfg.resume and resume_from is None:
        console.print(f"[yellow]--resume: no checkpoint in {ckpt_dir}; starting from scratch[/]")
    out.mkdir(parents=True, exist_ok=True)
    # Same seed on every process: LoRA / value-head initialisation is identical, no broadcast needed.
    torch.manual_seed(cfg.seed)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda"))
    autocast = (
        (lambda: torch.autocast(device.split(":")[0], dtype=torch.bfloat16))
        if bf16
        else contextlib.nullcontext
    )

    # ---- data: tokenized once; DPO works on (success, failure) pairs of the same task
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    episodes, counts = load_tokenized(
        cfg.data, tokenizer, level=cfg.level, step_delimiters=STEP_SPLITS[cfg.step_split],
        reward_map=parse_reward_map(cfg.reward_map), max_length=cfg.max_length, only_success=cfg.algo == "rs",
        allow_labels=cfg.algo == "sft",
    )  # fmt: skip
    advantages = None  # OREAL: one RLOO advantage per episode
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
    lengths = _grouping_lengths(cfg.algo, cfg.group_by_length, [len(e.input_ids) for e in episodes], items)
    per_epoch = max(1, len(items) // (cfg.batch_size * world)) // cfg.grad_accum
    # OREAL's reward-model warm-up comes on top of the policy's epochs
    warmup = cfg.oreal_rm_warmup if cfg.algo == "oreal" else 0
    total = cfg.max_steps or max(1, int(cfg.epochs * per_epoch)) + warmup
    for warning in data_source_warnings(cfg, model_path, max(0, total - warmup) / per_epoch):
        console.print(f"[yellow]warning: {warning}[/]")

    # ---- models: policy (+ critic); the reference is the initial policy, cached before any update
    policy = setup.build_policy(model_path, cfg.lora, cfg.lora_r, cfg.lora_alpha, device)
    critic = None
    if cfg.algo in CRITIC_ALGOS:
        critic = setup.build_critic(policy, model_path, cfg.critic_lora, cfg.lora_r, cfg.lora_alpha, device)
        # saved with it: search reads a critic only where it was trained (OREO's afterstates; DQO's and OREAL's
        # critics are trained at the states only, and OREAL's is a token reward model, not a value)
        afterstates = cfg.algo == "oreo" and bool(cfg.afterstates)
        critic.trained_at = {"algo": cfg.algo, "level": cfg.level, "afterstates": afterstates}
        if cfg.critic_init:
            setup.load_critic_weights(critic, cfg.critic_init)
    cfg = dataclasses.replace(cfg, kl_topk=setup.resolve_kl_topk(cfg.kl_topk, policy, console))
    if cfg.gradient_checkpointing:
        setup.enable_gradient_checkpointing(policy, *([critic.backbone] if critic is not None else []))
    ref_cache = None
    if cfg.algo in REFERENCE_ALGOS:
        topk = max(1, cfg.kl_topk)
        key = fingerprint(model_path, *cfg.data, cfg.level, cfg.step_split, cfg.max_length, topk)
        ref_cache = ReferenceCache.load(out / "reference_cache.safetensors", key)
        if ref_cache is None:
            with Progress(console=console, transient=True) as bar:
                ref_cache = setup.compute_reference_cache(
                    policy, episodes, tokenizer.pad_token_id, topk, cfg.batch_size, device, key, autocast, bar
                )
            if main:
                ref_cache.save(out / "reference_cache.safetensors")
        if (cfg.algo == "oreo" or (cfg.algo == "dqo" and cfg.alpha > 0)) and cfg.kl_topk > 0:
            setup.report_kl_coverage(ref_cache, cfg.kl_topk, console)
    reference = None
    exact_kl = cfg.kl_topk == 0 and (cfg.algo == "oreo" or (cfg.algo == "dqo" and cfg.alpha > 0))
    if exact_kl and not setup.is_peft(policy):
        reference = copy.deepcopy(policy).eval().requires_grad_(False)  # full fine-tuning + exact KL only

    params = setup.policy_parameters(policy)
    critic_params: list = []
    optimizers = [torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if critic is not None:
        critic_params = critic.trainable_parameters()
        optimizers.append(torch.optim.AdamW(critic_params, lr=cfg.critic_lr, weight_decay=cfg.weight_decay))
    frozen = [p for p in params + critic_params if not p.requires_grad]
    if frozen:  # a parameter the optimizer owns but autograd ignores would silently never train
        raise RuntimeError(f"{len(frozen)} trainable parameters have requires_grad=False")
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(o, _schedule(cfg.lr_schedule, cfg.warmup_steps, total))
        for o in optimizers
    ]
    step = setup.load_checkpoint(resume_from, policy, critic, optimizers, schedulers) if resume_from else 0
    if resume_from:
        console.print(f"resumed from {resume_from} (step {step})")
    if main:
        (out / "learn_config.json").write_text(json.dumps(cfg_dict(cfg), indent=2) + "\n")
    logger = MetricsLogger(out / "metrics.jsonl", console, resume_step=step) if main else None
    ctx = {
        "cfg": cfg, "policy": policy, "critic": critic, "reference": reference, "autocast": autocast,
        "action_logits": setup.action_logits, "reference_logits": setup.reference_logits,
        "step": step, "token_norms": None,
    }  # fmt: skip
    micro_step = MICRO_STEPS[cfg.algo]
    stop_at = min(total, cfg.stop_after) if cfg.stop_after else total

    metrics: dict[str, Any] | None = None
    policy.train()
    if critic is not None:
        critic.train()
    columns = [
        TextColumn("[bold]learn {task.fields[algo]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("learn", total=total, completed=step, algo=cfg.algo)
        while step < stop_at:
            started = time.perf_counter()
            sums: dict[str, float] = {}
            tokens = 0
            ctx["step"] = step
            if cfg.algo == "oreal":  # per-token losses divide by the whole step's token counts
                ctx["token_norms"] = _step_token_norms(cfg, episodes, items, lengths, step, world)
            for j in range(cfg.grad_accum):
                micro = _micro_index(step, j, cfg.grad_accum, world, rank)
                chosen = _micro_batch(items, micro, cfg.batch_size, cfg.seed, lengths)
                batch = _collate(cfg.algo, episodes, chosen, tokenizer.pad_token_id, ref_cache, advantages)
                batch = {k: v.to(device) for k, v in batch.items()}
                tokens += int(batch["attention_mask"].sum())
                # Each micro-batch loss is scaled by 1/grad_accum: the gradients add up to the full batch mean.
                for k, v in micro_step(ctx, batch, 1.0 / cfg.grad_accum).items():
                    sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
            if world > 1:
                sums = setup.all_reduce_mean(params + critic_params, {**sums, "tokens": tokens}, world)
                tokens = int(sums.pop("tokens") * world)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if critic is not None:
                sums["critic_grad_norm"] = torch.nn.utils.clip_grad_norm_(
                    critic_params, cfg.max_grad_norm
                ).item()
            lrs = [s.get_last_lr()[0] for s in schedulers]
            for opt, sched in zip(optimizers, schedulers, strict=True):
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            step += 1
            if device.startswith("cuda"):
                torch.cuda.synchronize()  # honest timing: wait for the GPU before reading the clock
            elapsed = time.perf_counter() - started
            metrics = {
                "step": step, "loss": sums.pop("loss"), "value_loss": sums.pop("value_loss", None),
                "policy_loss": sums.pop("policy_loss", None), "kl": sums.pop("kl", None), "lr": lrs[0],
                "critic_lr": lrs[1] if len(lrs) > 1 else None, "grad_norm": grad_norm.item(),
                "tokens_per_s": tokens / elapsed, "step_time_s": elapsed, **sums,
            }  # fmt: skip
            if main:
                logger.log(metrics, echo=step % cfg.log_every == 0 or step == stop_at)
            bar.update(task, completed=step)
            if main and ((cfg.save_every and step % cfg.save_every == 0) or step == stop_at):
                setup.save_checkpoint(ckpt_dir, step, policy, critic, optimizers, schedulers)
    if main:
        logger.close()
    if step >= total and save and main:
        setup.save_outputs(out, policy, critic, tokenizer, model_path)
        console.print(
            f"done: {step} steps; policy -> {out / 'policy'}"
            + (f", critic -> {out / 'critic'}" if critic else "")
        )
    else:
        console.print(f"stopped at step {step} of {total}; continue with --resume")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the main process has finished writing before anyone exits
        dist.destroy_process_group()
    return {"steps": step, "total": total, "final": metrics, "out": str(out)}


def cfg_dict(cfg: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
