"""What the learner writes and reads, and how its processes share gradients: checkpoints (exact resume), the
output folder, data-parallel reductions."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentrl.critic import ValueModel, is_peft
from agentrl.learner_setup import POLICY_ADAPTER, policy_trainable_state
from agentrl.models import adapter_base, is_adapter, resolve_model

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

        if is_adapter(model_path):  # a continued adapter: the frozen weights are its base's
            model_path = resolve_model(adapter_base(model_path))
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
