"""What the training loop needs around it: models, the reference cache, checkpoints, and the output folder.

Kept apart from :mod:`agentrl.learner` so that the loop itself stays one readable function.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentrl.critic import CRITIC_ADAPTER, ValueModel, active_adapter, adapters_disabled, decoder_of, is_peft
from agentrl.data import ReferenceCache, TokenizedEpisode, collate
from agentrl.models import ModelError

POLICY_ADAPTER = "default"
EXACT_KL_MAX_VOCAB = 4096  # up to this vocabulary the default KL is exact (one reference forward per batch)
KL_TOPK = 64  # above it, the KL against the cached top-k of the reference (a lower bound)
LOW_COVERAGE = 0.95  # warn when the reference's top-k holds less of its probability mass than this


# ----------------------------------------------------------------------------------------------- models


def lora_config(r: int, alpha: int, dropout: float = 0.0) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", bias="none")


def build_policy(model_path: str, lora: bool, lora_r: int, lora_alpha: int, device: str) -> nn.Module:
    """The policy: the full causal LM (trained) or LoRA adapter ``default`` on its frozen weights."""
    from transformers import AutoModelForCausalLM

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


def resolve_kl_topk(requested: int | None, policy: nn.Module, console: Any) -> int:
    """``--kl-topk``: as given, or by default 0 (exact) for vocabularies of at most ``EXACT_KL_MAX_VOCAB``.

    On the small vocabularies of from-scratch models the top-k KL is a loose lower bound (one check on a
    1,024-token model: top-8 0.0225 against the exact 0.0416), and the exact KL costs one reference forward
    per micro-batch, cheap for such models; a large vocabulary keeps the cached top-64.
    """
    if requested is not None:
        return requested
    vocab = policy.get_output_embeddings().weight.shape[0]
    chosen = 0 if vocab <= EXACT_KL_MAX_VOCAB else KL_TOPK
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
    with active_adapter(policy, POLICY_ADAPTER if is_peft(policy) else None):
        out = decoder_of(policy)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = out.last_hidden_state[:, :-1][batch["action_mask"][:, 1:]]
        lm = policy.get_base_model() if is_peft(policy) else policy
        logits = lm.get_output_embeddings()(hidden)
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
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
    from agentrl.losses_oreal import rloo_advantages

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


# ------------------------------------------------------------------------------------------ distributed


def init_distributed(device: str) -> tuple[int, int, str]:
    """``(rank, world_size, device)``. Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE > 1``) joins
    the process group (NCCL on GPU, gloo on CPU) and picks ``cuda:LOCAL_RANK``; otherwise ``(0, 1, device)``."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


def all_reduce_mean(grads_of: list[nn.Parameter], values: dict[str, float], world: int) -> dict[str, float]:
    """Data parallelism without wrapping the models: averages the gradients of ``grads_of`` and the
    metric ``values`` over all processes (each process ran different micro-batches)."""
    import torch.distributed as dist

    for p in grads_of:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)
    keys = sorted(values)
    device = grads_of[0].device if grads_of else "cpu"
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return {k: v / world for k, v in zip(keys, packed.tolist(), strict=True)}


# ------------------------------------------------------------------------------------------ checkpoints


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path, step: int, policy: nn.Module, critic: ValueModel | None, optimizers: list, schedulers: list
) -> Path:
    """``folder/step-XXXXXX/``: trainable weights (safetensors), optimizer + scheduler + RNG states, step.

    Written under a temporary name and renamed, so a crash never leaves a half checkpoint.
    """
    from safetensors.torch import save_file

    target = folder / f"step-{step:06d}"
    tmp = folder / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in policy_trainable_state(policy).items()},
        str(tmp / "policy.safetensors"),
    )
    if critic is not None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in critic.trainable_state().items()},
            str(tmp / "critic.safetensors"),
        )
    state = {
        "optimizers": [o.state_dict() for o in optimizers],
        "schedulers": [s.state_dict() for s in schedulers],
        "rng": _rng_state(),
    }
    torch.save(state, tmp / "state.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step}) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("step-*") if (p / "trainer_state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(
    path: Path, policy: nn.Module, critic: ValueModel | None, optimizers: list, schedulers: list
) -> int:
    """Restores what :func:`save_checkpoint` wrote; returns the optimizer step to continue from."""
    from safetensors.torch import load_file

    def restore(tensors: dict[str, torch.Tensor], own: dict[str, torch.Tensor], what: str) -> None:
        missing = set(own) - set(tensors)
        if missing:
            raise ValueError(
                f"{path}: {what} checkpoint lacks {sorted(missing)[:3]} (different model or flags?)"
            )
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(tensors[name])

    restore(load_file(str(path / "policy.safetensors")), policy_trainable_state(policy), "policy")
    if critic is not None:
        restore(load_file(str(path / "critic.safetensors")), critic.trainable_state(), "critic")
    # Optimizer/scheduler states hold tensors, numbers and python RNG tuples only: weights_only is enough.
    state = torch.load(path / "state.pt", weights_only=True)
    for opt, s in zip(optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(s)
    for sched, s in zip(schedulers, state["schedulers"], strict=True):
        sched.load_state_dict(s)
    _set_rng_state(state["rng"])
    return int(json.loads((path / "trainer_state.json").read_text())["step"])


# ------------------------------------------------------------------------------------------------ output


def save_outputs(
    out: Path, policy: nn.Module, critic: ValueModel | None, tokenizer: Any, model_path: str
) -> None:
    """``OUT/policy`` (a plain HF checkpoint; for LoRA the merged weights), ``OUT/policy_lora`` (the adapter,
    whose ``adapter_config.json`` names the base), ``OUT/critic``."""
    policy_dir = out / "policy"
    shutil.rmtree(policy_dir, ignore_errors=True)
    if is_peft(policy):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        adapter_dir = out / "policy_lora"
        shutil.rmtree(adapter_dir, ignore_errors=True)
        policy.save_pretrained(adapter_dir, selected_adapters=[POLICY_ADAPTER])
        tokenizer.save_pretrained(adapter_dir)
        (adapter_dir / "README.md").write_text(
            f"LoRA adapter of the policy on base `{model_path}`.\n"
            "Load: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), this_folder)`, or\n"
            "`agentrl.models.load_causal_lm(this_folder)`. Merged weights: `../policy`.\n"
        )
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        merged.save_pretrained(policy_dir)
        del merged, base
    else:
        policy.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    if critic is not None:
        critic_dir = out / "critic"
        shutil.rmtree(critic_dir, ignore_errors=True)
        critic.save_pretrained(critic_dir)
        tokenizer.save_pretrained(critic_dir)
