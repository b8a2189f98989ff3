"""What the training loop is set up with: models, the reference cache, the training items and checks on the data.

Kept apart from :mod:`agentrl.learner` so that the loop itself stays readable; checkpoints and the output folder
are in :mod:`agentrl.learner_io`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentrl.critic import CRITIC_ADAPTER, ValueModel, active_adapter, adapters_disabled, decoder_of, is_peft
from agentrl.data import TokenizedEpisode, collate
from agentrl.learn_config import LearnConfig
from agentrl.losses.oreal import rloo_advantages
from agentrl.models import ModelError, adapter_base, is_adapter, resolve_model
from agentrl.training_data import ReferenceCache
from agentrl.trajectory import iter_episodes

POLICY_ADAPTER = "default"
EXACT_KL_MAX_VOCAB = 4096  # up to this vocabulary the default KL is exact (one reference forward per batch)
KL_TOPK = 64  # above it, the KL against the cached top-k of the reference (a lower bound)
LOW_COVERAGE = 0.95  # warn when the reference's top-k holds less of its probability mass than this


# ----------------------------------------------------------------------------------------------- models


def lora_config(r: int, alpha: int, dropout: float = 0.0) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", bias="none")


def cpu_bf16_is_native(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU does bf16 matmuls in hardware (AVX512-BF16 or AMX flags). Without them torch emulates
    bf16, measured 120x slower than fp32 (1.3 vs 160 GFLOPS on a 2-core AVX2 EPYC): a LoRA epoch of SmolLM2 went
    from an hour to days. Unknown (no cpuinfo) counts as native, so nothing warns where nothing is known."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return True
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def check_adapter_start(cfg: LearnConfig, model_path: str, reference_algos: tuple[str, ...],
                        critic_algos: tuple[str, ...]) -> None:
    """Refuses to start from an adapter folder where the run would be wrong: a critic built from an adapter,
    or a LoRA run whose reference (the adapters switched off) would be the adapter's base, not the adapter.

    Raises:
        ModelError: ``cfg.algo`` cannot start from the adapter ``model_path`` this way.
    """
    if not is_adapter(model_path):
        return
    if cfg.algo in critic_algos or (cfg.lora and cfg.algo in reference_algos):
        raise ModelError(
            f"--model {cfg.model}: a LoRA adapter; --algo {cfg.algo} from it would measure against its base, not "
            "against it (or build a critic from it). Continue an adapter with --algo sft or rs, or start "
            f"{cfg.algo} from a merged checkpoint (the `policy/` folder of the learn run that made the adapter)"
        )


def build_policy(model_path: str, lora: bool, lora_r: int, lora_alpha: int, device: str) -> nn.Module:
    """The policy: the full causal LM (trained) or LoRA adapter ``default`` on its frozen weights.

    From an adapter folder (a shipped agent, ``OUT/policy_lora``) with ``lora``, that adapter itself is trained on
    (its own rank and alpha; ``lora_r`` / ``lora_alpha`` are ignored); without ``lora``, base + adapter merged.
    """
    from transformers import AutoModelForCausalLM

    if is_adapter(model_path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(resolve_model(adapter_base(model_path)), dtype=torch.float32)
        if lora:
            model = PeftModel.from_pretrained(base, model_path, adapter_name=POLICY_ADAPTER, is_trainable=True)
            return model.to(device)
        return PeftModel.from_pretrained(base, model_path).merge_and_unload().to(device)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(lora_r, lora_alpha), adapter_name=POLICY_ADAPTER)
    return model.to(device)


def enable_gradient_checkpointing(*models: nn.Module) -> None:
    """Recompute each decoder layer in backward instead of storing its activations (less memory, one more
    forward's worth of compute); applied to the policy and a separate critic backbone alike."""
    for model in models:
        lm = model.get_base_model() if is_peft(model) else model
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_critic(
    policy: nn.Module, model_path: str, critic_lora: bool, lora_r: int, lora_alpha: int, device: str
) -> ValueModel:
    """The critic: a second adapter on the policy's frozen base (policy is LoRA and ``critic_lora``), a LoRA
    adapter on its own frozen copy (``critic_lora`` with a full policy), or a separate full backbone."""
    from transformers import AutoModel, AutoModelForCausalLM

    hidden = policy.config.hidden_size
    if critic_lora and is_peft(policy):
        policy.add_adapter(CRITIC_ADAPTER, lora_config(lora_r, lora_alpha))
        for name, p in policy.named_parameters():  # add_adapter leaves the new adapter frozen
            if f".{CRITIC_ADAPTER}." in name:
                p.requires_grad_(True)
        return ValueModel(policy, hidden, adapter=CRITIC_ADAPTER, base=model_path).to(device)
    if critic_lora:
        from peft import get_peft_model

        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        backbone = get_peft_model(base, lora_config(lora_r, lora_alpha), adapter_name=CRITIC_ADAPTER)
        return ValueModel(backbone, hidden, adapter=CRITIC_ADAPTER, base=model_path).to(device)
    backbone = AutoModel.from_pretrained(model_path, dtype=torch.float32)
    return ValueModel(backbone, hidden, base=model_path).to(device)


def load_critic_weights(critic: ValueModel, folder: str | Path) -> None:
    """Starts ``critic`` from a critic saved by an earlier run (``OUT/critic``): its value head and its adapter
    (LoRA) or backbone (full), e.g. to carry OREAL's token reward model from one ``iterate`` round to the next.

    Raises:
        ModelError: ``folder`` is not a critic, or its layout (full / LoRA) differs from ``critic``'s.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path = folder / "value_model.json"
    if not meta_path.is_file():
        raise ModelError(f"critic_init: {folder} is not a critic folder (no value_model.json)")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind != critic.kind:
        raise ModelError(f"critic_init: {folder} holds a {kind} critic, this run builds a {critic.kind} one")
    critic.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
    if critic.adapter:
        from peft import set_peft_model_state_dict

        tensors = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(critic.backbone, tensors, adapter_name=critic.adapter)
    else:
        from transformers import AutoModel

        critic.backbone.load_state_dict(AutoModel.from_pretrained(folder, dtype=torch.float32).state_dict())


def resolve_kl_topk(requested: int | None, policy: nn.Module, console: Any | None) -> int:
    """``--kl-topk``: as given, or by default 0 (exact) for vocabularies of at most ``EXACT_KL_MAX_VOCAB``.

    On the small vocabularies of from-scratch models the top-k KL is a loose lower bound (one check on a
    1,024-token model: top-8 0.0225 against the exact 0.0416), and the exact KL costs one reference forward
    per micro-batch, cheap for such models; a large vocabulary keeps the cached top-64. The choice is printed
    on ``console`` (None: for a loss without a KL term, silently).
    """
    if requested is not None:
        return requested
    vocab = policy.get_output_embeddings().weight.shape[0]
    chosen = 0 if vocab <= EXACT_KL_MAX_VOCAB else KL_TOPK
    if console is not None:
        console.print(f"KL: {'exact' if chosen == 0 else f'reference top-{chosen}'} (vocabulary {vocab})")
    return chosen


def report_kl_coverage(cache: ReferenceCache, topk: int, console: Any) -> float:
    """Prints how much of the reference's probability mass its cached top-k holds (mean over action tokens),
    with a warning when it is below ``LOW_COVERAGE``: the top-k KL is then far below the true KL."""
    mass = torch.cat([lp.float().exp().sum(-1) for lp in cache.topk_logps]).mean().item()
    if mass < LOW_COVERAGE:
        console.print(
            f"[yellow]warning:[/] the reference's top-{topk} holds only {100 * mass:.1f}% of its probability mass "
            "on average: the top-k KL is a loose lower bound; pass --kl-topk 0 for the exact KL"
        )
    else:
        console.print(f"KL: the reference's top-{topk} holds {100 * mass:.1f}% of its probability mass")
    return mass


def policy_parameters(policy: nn.Module) -> list[nn.Parameter]:
    """The policy's trainable parameters (its own LoRA adapter only, when the critic shares the base)."""
    if is_peft(policy):
        return [p for n, p in policy.named_parameters() if f".{POLICY_ADAPTER}." in n]
    return [p for p in policy.parameters() if p.requires_grad]


def policy_trainable_state(policy: nn.Module) -> dict[str, torch.Tensor]:
    if is_peft(policy):
        return {n: p for n, p in policy.named_parameters() if f".{POLICY_ADAPTER}." in n}
    return dict(policy.named_parameters())


def action_logits(policy: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Policy logits only at the ``N`` positions that predict action tokens: ``[N, V]``.

    Runs the decoder on the whole batch and the LM head on the ``N`` hidden states that predict the action
    tokens (position ``i - 1`` for action token ``i``), so no ``[B, L, V]`` tensor is ever built.
    """
    return masked_logits(policy, batch, ("action_mask",))[0]


def masked_logits(policy: nn.Module, batch: dict[str, torch.Tensor], masks: tuple[str, ...]) -> list[torch.Tensor]:
    """Policy logits at the positions that predict the tokens of each ``[B, L]`` mask in ``masks`` (one decoder
    forward for all of them): ``[N_m, V]`` per mask, as :func:`action_logits` for the action mask."""
    with active_adapter(policy, POLICY_ADAPTER if is_peft(policy) else None):
        out = decoder_of(policy)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        lm = policy.get_base_model() if is_peft(policy) else policy
        head = lm.get_output_embeddings()
        logits = [head(out.last_hidden_state[:, :-1][batch[m][:, 1:]]) for m in masks]
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = [torch.tanh(x / cap) * cap for x in logits]
    return logits


def reference_logits(
    policy: nn.Module, reference: nn.Module | None, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Reference logits ``[N, V]`` (no gradient): the LoRA policy with adapters disabled, or ``reference``."""
    with torch.no_grad():
        if reference is not None:
            return action_logits(reference, batch)
        with adapters_disabled(policy):
            return action_logits(policy, batch)


@torch.no_grad()
def compute_reference_cache(
    policy: nn.Module,
    episodes: list[TokenizedEpisode],
    pad_id: int,
    topk: int,
    batch_size: int,
    device: str,
    fingerprint: str,
    autocast: Any,
    progress: Any = None,
) -> ReferenceCache:
    """Reference log-probs of every action token and the reference's top-k at each action position.

    Must run before the first update: the reference is the initial policy (a LoRA policy is run with its
    adapters disabled, i.e. the frozen base).
    """
    policy.eval()
    logps, ids, top_logps = [], [], []
    task = progress.add_task("reference cache", total=len(episodes)) if progress else None
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        with autocast():
            logits = (
                reference_logits(policy, None, batch) if is_peft(policy) else action_logits(policy, batch)
            )
        for rows in torch.split(torch.arange(logits.shape[0], device=logits.device), 4096):
            lp = torch.log_softmax(logits[rows].float(), dim=-1)
            logps.append(lp.gather(-1, batch["targets"][rows, None]).squeeze(-1).cpu())
            top = lp.topk(min(topk, lp.shape[-1]), dim=-1)
            ids.append(top.indices.cpu())
            top_logps.append(top.values.cpu())
        if progress:
            progress.advance(task, len(chunk))
    if progress:
        progress.remove_task(task)
    counts = [e.num_actions for e in episodes]
    return ReferenceCache(
        logps=list(torch.split(torch.cat(logps), counts)),
        topk_ids=list(torch.split(torch.cat(ids), counts)),
        topk_logps=list(torch.split(torch.cat(top_logps), counts)),
        fingerprint=fingerprint,
    )


# ------------------------------------------------------------------------------------------------ data


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def data_source_warnings(cfg: LearnConfig, model_path: str, passes: float) -> list[str]:
    """What makes the data wrong for DQO's importance weight or OREAL's on-policy update (empty: nothing).

    ``passes``: how many passes over the data the policy's updates make (OREAL's warm-up steps not counted).

    DQO's ``w = pi / pi_ref`` assumes the episodes were sampled from ``pi_ref``, the model training starts from;
    OREAL's update assumes they were sampled from the current policy (one round, one pass). Demonstrations (an
    ``expert`` policy) and rollouts of another model break both; a second pass breaks OREAL's.
    """

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


def oreal_items(
    episodes: list[TokenizedEpisode], seed: int, pairs: bool
) -> tuple[list[int], list[float], dict[str, int]]:
    """OREAL's training items: groups of samples of one task, their RLOO advantages, mixed groups only.

    Each task's episodes form a group (``rollout --samples-per-task K``); its advantages are leave-one-out over
    the whole group on rewards +1 (success) and -1 (failure), as the authors' code scores them, whatever
    ``--reward-map`` says. Groups whose pass rate is 0 or 1 carry no signal and are dropped. ``pairs`` keeps one
    success and one failure per group, drawn with ``seed`` (the authors' code).

    Returns:
        ``items`` (episode indices, in task order), ``advantages`` (one per episode, 0 where not kept) and counts
        ``{"groups", "mixed_groups", "all_success", "all_failure"}``.
    """

    tasks: dict[str, list[int]] = {}
    for i, episode in enumerate(episodes):
        tasks.setdefault(episode.task_id, []).append(i)
    group = torch.empty(len(episodes), dtype=torch.long)
    for g, members in enumerate(tasks.values()):
        group[members] = g
    reward = torch.tensor([1.0 if e.success else -1.0 for e in episodes])
    advantages = rloo_advantages(reward, group).tolist() if episodes else []
    rng = random.Random(seed)
    items: list[int] = []
    counts = {"groups": len(tasks), "mixed_groups": 0, "all_success": 0, "all_failure": 0}
    for task in sorted(tasks):
        wins = [i for i in tasks[task] if episodes[i].success]
        fails = [i for i in tasks[task] if not episodes[i].success]
        if not fails or not wins:
            counts["all_success" if wins else "all_failure"] += 1
            continue
        counts["mixed_groups"] += 1
        items += [rng.choice(wins), rng.choice(fails)] if pairs else sorted(tasks[task])
    kept = set(items)
    return items, [a if i in kept else 0.0 for i, a in enumerate(advantages)], counts
