"""ValueModel: zero-initialised head, save/load round trip with the value head (full and LoRA critics)."""

from __future__ import annotations

import torch

from agentrl.critic import CRITIC_ADAPTER, ValueModel, active_adapter
from agentrl.learner_setup import build_critic, build_policy


def _ids(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_full_critic_round_trip_keeps_value_head(tiny_model_dir, tmp_path):
    policy = build_policy(str(tiny_model_dir), lora=False, lora_r=4, lora_alpha=4, device="cpu")
    critic = build_critic(
        policy, str(tiny_model_dir), critic_lora=False, lora_r=4, lora_alpha=4, device="cpu"
    )
    ids, mask = _ids(policy.config.vocab_size)
    assert torch.all(critic.values(ids, mask) == 0)  # zero-initialised head
    with torch.no_grad():
        critic.value_head.weight.normal_()
        critic.value_head.bias.fill_(0.25)
    expected = critic.values(ids, mask)
    assert expected.shape == (2, 9) and expected.abs().sum() > 0
    critic.save_pretrained(tmp_path / "critic")
    back = ValueModel.from_pretrained(tmp_path / "critic")
    assert back.kind == "full"
    assert torch.allclose(back.values(ids, mask), expected, atol=1e-6)


def test_lora_critic_on_shared_base_round_trip(tiny_model_dir, tmp_path):
    policy = build_policy(str(tiny_model_dir), lora=True, lora_r=4, lora_alpha=4, device="cpu")
    critic = build_critic(policy, str(tiny_model_dir), critic_lora=True, lora_r=4, lora_alpha=4, device="cpu")
    assert critic.backbone is policy  # one frozen base, two adapters
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # both adapters non-trivial
        critic.value_head.weight.normal_()
    ids, mask = _ids(policy.config.vocab_size)
    expected = critic.values(ids, mask)
    with active_adapter(policy, CRITIC_ADAPTER):
        assert policy.active_adapter == CRITIC_ADAPTER
    assert policy.active_adapter == "default"
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert any(f".{CRITIC_ADAPTER}." in n for n in trainable) and any(".default." in n for n in trainable)
    critic.save_pretrained(tmp_path / "critic")
    back = ValueModel.from_pretrained(tmp_path / "critic")
    assert back.kind == "lora" and back.base == str(tiny_model_dir)
    assert torch.allclose(back.values(ids, mask), expected, atol=1e-5)
    # the policy adapter is not part of the critic: the values differ from a base without the critic adapter
    with policy.disable_adapter():
        base_values = critic.value_head(
            policy.get_base_model().get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        ).squeeze(-1)
    assert not torch.allclose(base_values, expected, atol=1e-4)
