"""The critic: a language-model backbone with a scalar value head.

Value convention (shared by the learner, best-of-K and step beam search): ``values(input_ids,
attention_mask)[b, t]`` is ``V`` of the state made of tokens ``0..t`` of row ``b`` -- the value head applied
to the backbone's last hidden state of token ``t``. So:

* the state before an action that starts at token ``i`` is read at ``t = i - 1`` (for an assistant turn in
  a chat template: the last token of the generation prompt, e.g. the ``\\n`` after ``<|im_start|>assistant``);
* a candidate assistant turn is scored by the value at its end-of-turn token (``<|im_end|>``), i.e. the state
  after the action has been taken (the *afterstate*, :func:`agentrl.data.encode_after_action`). The learner
  trains the critic there (``agentrl learn --afterstates``, the default) and records it in
  ``value_model.json`` (``trained_at``); search refuses a critic that was not trained where it reads it.

Three layouts, all saved with safetensors and the value head included:

* ``full``: a separate backbone (``AutoModel``), fully trained;
* ``lora``: LoRA adapter ``critic`` on a frozen base; the base can be the policy's own base (``--lora
  --critic-lora``: one copy of the weights in memory, the policy and the critic are two adapters) or a
  separate copy (``--critic-lora`` with a fully trained policy).

Folder layout written by :meth:`ValueModel.save_pretrained`: ``value_model.json`` (kind, base, hidden size),
``value_head.safetensors``, and either the backbone checkpoint (``config.json``, ``model.safetensors``) or the
adapter in ``adapter/``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentrl.models import resolve_model

CRITIC_ADAPTER = "critic"
FORMAT = 1


def is_peft(model: Any) -> bool:
    """True for a ``peft.PeftModel`` (checked without importing peft)."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def decoder_of(model: Any) -> nn.Module:
    """The module that maps ``input_ids`` to last hidden states: the decoder of a causal LM (inside a
    ``PeftModel``, the LoRA layers stay in place) or the model itself when it has no LM head."""
    lm = model.get_base_model() if is_peft(model) else model
    if lm.get_output_embeddings() is None:
        return lm
    return lm.get_decoder()


@contextlib.contextmanager
def active_adapter(model: Any, name: str | None) -> Iterator[None]:
    """Activates LoRA adapter ``name`` of a ``PeftModel`` for the block, leaving ``requires_grad`` of every
    parameter as it was (peft's ``set_adapter`` would freeze the other adapters). ``None``: no change."""
    if name is None or not is_peft(model) or model.active_adapter == name:
        yield
        return
    previous = model.active_adapter
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.set_adapter(name)
    for p, flag in flags:
        p.requires_grad_(flag)
    try:
        yield
    finally:
        model.set_adapter(previous)
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def adapters_disabled(model: Any) -> Iterator[None]:
    """Runs a ``PeftModel`` as its frozen base for the block (the LoRA reference), keeping every
    parameter's ``requires_grad`` (peft re-freezes inactive adapters on exit otherwise)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class ValueModel(nn.Module):
    """LM backbone + zero-initialised linear value head (``V = 0`` everywhere before training).

    Args:
        backbone: a causal LM, a decoder-only ``AutoModel``, or a ``PeftModel`` holding adapter ``adapter``.
        hidden_size: the backbone's hidden size.
        adapter: LoRA adapter to activate for critic forwards (``None`` for a full backbone).
        base: name or folder of the frozen base (saved with a LoRA critic so it can be rebuilt).
    """

    def __init__(
        self, backbone: nn.Module, hidden_size: int, adapter: str | None = None, base: str | None = None
    ):
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self.base = base
        self.trained_at: dict[str, Any] | None = None  # {"level", "afterstates"}, set by the learner
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @property
    def kind(self) -> str:
        return "lora" if self.adapter else "full"

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token values.

        Args:
            input_ids: ``[B, L]`` token ids.
            attention_mask: ``[B, L]`` 1 for real tokens (right or left padding: positions follow the mask).

        Returns:
            ``[B, L]`` fp32; ``out[b, t]`` is V of the state ending at token ``t`` (see the module docstring).
        """
        # positions from the mask, so left-padded rows get the same values as unpadded ones
        positions = None if attention_mask is None else (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        with active_adapter(self.backbone, self.adapter):
            out = decoder_of(self.backbone)(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=positions
            )
            hidden = out.last_hidden_state
        head = self.value_head
        return head(hidden.to(head.weight.dtype)).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.values(input_ids, attention_mask)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The critic's own trainable tensors: the value head and the adapter (LoRA) or the backbone (full)."""
        state = {f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}
        if self.adapter:
            for name, p in self.backbone.named_parameters():
                if f".{self.adapter}." in name:
                    state[f"backbone.{name}"] = p
        else:
            state.update({f"backbone.{k}": v for k, v in self.backbone.state_dict().items()})
        return state

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the critic's optimizer updates (never the shared frozen base or the policy adapter)."""
        params = list(self.value_head.parameters())
        if self.adapter:
            params += [p for n, p in self.backbone.named_parameters() if f".{self.adapter}." in n]
        else:
            params += [p for p in self.backbone.parameters() if p.requires_grad]
        return params

    def save_pretrained(self, folder: str | Path) -> None:
        """Writes the critic (value head included) with safetensors; see the module docstring for the layout."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        head = {k: v.detach().float().contiguous().cpu() for k, v in self.value_head.state_dict().items()}
        save_file(head, str(folder / "value_head.safetensors"))
        if self.adapter:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                self.backbone.save_pretrained(tmp, selected_adapters=[self.adapter])
                saved = Path(tmp) / self.adapter if self.adapter != "default" else Path(tmp)
                shutil.rmtree(folder / "adapter", ignore_errors=True)
                shutil.copytree(saved, folder / "adapter")
        else:
            self.backbone.save_pretrained(folder)
        meta = {
            "format": FORMAT,
            "kind": self.kind,
            "base": self.base,
            "hidden_size": self.value_head.in_features,
            "trained_at": self.trained_at,
        }
        (folder / "value_model.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, dtype: torch.dtype | None = None, device: str | torch.device | None = None
    ) -> ValueModel:
        """Loads a critic written by :meth:`save_pretrained` (a LoRA critic also loads its base)."""
        from transformers import AutoModel, AutoModelForCausalLM

        folder = Path(folder)
        meta_path = folder / "value_model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder}: not a critic folder (no value_model.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{meta_path}: unsupported critic format {meta.get('format')!r} (expected {FORMAT})"
            )
        dtype = dtype or torch.float32
        if meta["kind"] == "lora":
            from peft import PeftModel


            if not meta.get("base"):
                raise ValueError(f"{meta_path}: a LoRA critic needs `base`")
            base = AutoModelForCausalLM.from_pretrained(resolve_model(meta["base"]), dtype=dtype)
            backbone = PeftModel.from_pretrained(base, folder / "adapter", adapter_name=CRITIC_ADAPTER)
            model = cls(backbone, int(meta["hidden_size"]), adapter=CRITIC_ADAPTER, base=meta["base"])
        else:
            backbone = AutoModel.from_pretrained(folder, dtype=dtype)
            model = cls(backbone, int(meta["hidden_size"]), base=meta.get("base"))
        from safetensors.torch import load_file

        model.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors")))
        model.trained_at = meta.get("trained_at")
        model.value_head.to(torch.float32)
        if device is not None:
            model.to(device)
        return model.eval()
