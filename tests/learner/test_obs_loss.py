"""The auxiliary observation loss (`learn --obs-loss-weight W`): data masks, the loss by hand, the SFT step, runs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from agentrl import losses
from agentrl.cli import main
from agentrl.data import DataError, collate, tokenize_episode
from agentrl.learn_config import LearnConfig
from agentrl.learner import train
from agentrl.learner_steps import _sft_micro
from agentrl.training_data import load_tokenized
from agentrl.types import Episode

from .conftest import _word_tokenizer
from .helpers import episode, write_dataset


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _runs(mask: list[bool], ids: list[int]) -> list[list[int]]:
    """The token ids of each contiguous run of True in ``mask``."""
    runs: list[list[int]] = []
    for i, flag in enumerate(mask):
        if flag and (i == 0 or not mask[i - 1]):
            runs.append([])
        if flag:
            runs[-1].append(ids[i])
    return runs


def _three_turns() -> Episode:
    """System, task, then three assistant turns with two observations between them."""
    return episode(2, 0, True, turns=3)


def test_observation_mask_marks_user_contents_after_the_first(tokenizer):
    ep = _three_turns()
    users = [m["content"] for m in ep.messages if m["role"] == "user"]
    later = tokenize_episode(ep, tokenizer, observations="later")
    assert [tokenizer.decode(r) for r in _runs(later.obs_mask, later.input_ids)] == users[1:]
    every = tokenize_episode(ep, tokenizer, observations="all")
    assert [tokenizer.decode(r) for r in _runs(every.obs_mask, every.input_ids)] == users
    plain = tokenize_episode(ep, tokenizer)
    assert plain.obs_mask == []  # not asked for: today's episode
    for item in (later, every):  # actions, ids and positions are untouched; masks are disjoint
        assert item.input_ids == plain.input_ids and item.action_mask == plain.action_mask
        assert item.after_positions == plain.after_positions
        assert not any(a and o for a, o in zip(item.action_mask, item.obs_mask, strict=True))


def test_observation_mask_on_another_template():
    """A word-level tokenizer with a Zephyr template (no ChatML): same observation runs."""
    ep = _three_turns()
    from jinja2 import Template

    from .conftest import ZEPHYR_TEMPLATE

    tok = _word_tokenizer([Template(ZEPHYR_TEMPLATE).render(messages=ep.messages)])
    item = tokenize_episode(ep, tok, observations="later")
    users = [m["content"] for m in ep.messages if m["role"] == "user"]
    assert [tok.decode(r) for r in _runs(item.obs_mask, item.input_ids)] == [
        tok.decode(tok(u, add_special_tokens=False)["input_ids"]) for u in users[1:]
    ]
    with pytest.raises(DataError, match="observations must be one of"):
        tokenize_episode(ep, tok, observations="first")


def test_collate_adds_observation_targets_only_when_marked(tokenizer):
    eps = [episode(0, 0, True, turns=3), episode(1, 0, True, turns=1)]  # the second has no later observation
    plain = collate([tokenize_episode(e, tokenizer) for e in eps], tokenizer.pad_token_id)
    assert not {"obs_mask", "obs_targets", "obs_rows"} & set(plain)
    items = [tokenize_episode(e, tokenizer, observations="later") for e in eps]
    batch = collate(items, tokenizer.pad_token_id)
    assert set(batch) == set(plain) | {"obs_mask", "obs_targets", "obs_rows"}
    for key in plain:
        assert torch.equal(batch[key], plain[key]), key
    expected = [t for t, m in zip(items[0].input_ids, items[0].obs_mask, strict=True) if m]
    assert batch["obs_targets"].tolist() == expected
    assert batch["obs_rows"].tolist() == [0] * len(expected)
    assert batch["obs_mask"].shape == batch["action_mask"].shape and not batch["obs_mask"][1].any()


def test_sft_obs_loss_hand_computed():
    """Actions: episode 0 log-probs [-1, -3], episode 1 [-2]; observations: episode 0 [-0.5, -1.5, -1], episode 1
    [-2]; W = 0.5.

    L_act = ((1 + 3)/2 + 2)/2 = 2; L_obs = ((0.5 + 1.5 + 1)/3 + 2)/2 = (1 + 2)/2 = 1.5; L = 2 + 0.5 * 1.5 = 2.75.
    dL/d logp_act: episode 0 -1/(2*2) = -0.25 each, episode 1 -1/(2*1) = -0.5.
    dL/d logp_obs: episode 0 -W/(2*3) = -1/12 each, episode 1 -W/(2*1) = -0.25.
    """
    act = torch.tensor([-1.0, -3.0, -2.0], requires_grad=True)
    obs = torch.tensor([-0.5, -1.5, -1.0, -2.0], requires_grad=True)
    loss, m = losses.sft_obs_loss(act, torch.tensor([0, 0, 1]), obs, torch.tensor([0, 0, 0, 1]), 2, 0.5)
    assert loss.item() == pytest.approx(2.75)
    assert m == pytest.approx({"sft_loss": 2.0, "obs_loss": 1.5, "obs_tokens": 4.0})
    loss.backward()
    assert act.grad.tolist() == pytest.approx([-0.25, -0.25, -0.5])
    assert obs.grad.tolist() == pytest.approx([-1 / 12, -1 / 12, -1 / 12, -0.25])


def test_sft_obs_loss_episode_without_observations_and_empty_batch():
    """Observations only in episode 1 ([-3]): L_obs = 3 (episode 0 is left out of the mean, not counted as 0);
    W = 2: L = L_act + 6. A batch with no observation token: L_obs = 0, L = L_act."""
    act, rows = torch.tensor([-1.0, -2.0]), torch.tensor([0, 1])
    loss, m = losses.sft_obs_loss(act, rows, torch.tensor([-3.0]), torch.tensor([1]), 2, 2.0)
    assert m["obs_loss"] == pytest.approx(3.0) and loss.item() == pytest.approx(1.5 + 6.0)
    empty = torch.zeros(0, requires_grad=True)
    loss, m = losses.sft_obs_loss(act, rows, empty, torch.zeros(0, dtype=torch.long), 2, 2.0)
    assert loss.item() == pytest.approx(1.5) and m["obs_loss"] == 0.0 and m["obs_tokens"] == 0.0


def test_gradient_reaches_observation_logits_only_with_weight_w():
    """One observation token, logits [0, 0], target 0: softmax [0.5, 0.5], d(-log p)/d logits = [-0.5, 0.5];
    with W = 0.5 the observation logits get [-0.25, 0.25]; with W = 0 nothing. The action logits' gradient is
    plain SFT's for every W: one action token, logits [ln 3, 0] (p = [0.75, 0.25]), target 1: [0.75, -0.75]."""
    import math

    def grads(weight: float) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        act_logits = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
        obs_logits = torch.zeros(1, 2, requires_grad=True)
        act = losses.token_logps(act_logits, torch.tensor([1]), 16)
        obs = losses.token_logps(obs_logits, torch.tensor([0]), 16)
        loss, _ = losses.sft_obs_loss(act, torch.tensor([0]), obs, torch.tensor([0]), 1, weight)
        loss.backward()
        return act_logits.grad, obs_logits.grad, loss.detach()

    act_grad, obs_grad, _ = grads(0.5)
    assert obs_grad.tolist() == [pytest.approx([-0.25, 0.25])]
    assert act_grad.tolist() == [pytest.approx([0.75, -0.75])]
    act_grad, obs_grad, loss = grads(0.0)
    assert obs_grad is None  # W = 0: the observation term is not in the graph
    assert act_grad.tolist() == [pytest.approx([0.75, -0.75])]
    plain, _ = losses.sft_loss(torch.log(torch.tensor([0.25])), torch.tensor([0]), 1)
    assert torch.equal(loss, plain.detach())  # W = 0 is sft_loss, bit for bit


def test_sft_step_weight_zero_is_plain_sft_and_gradients_scale_with_w(tiny_model, tokenizer):
    """The SFT micro-step: W = 0 ignores observation fields (gradients bit-identical to today's step on a batch
    without them); W > 0 adds W x the observation gradient (G(1) - G(0) = 2 (G(0.5) - G(0)))."""
    model, _ = tiny_model
    eps = [_three_turns(), episode(1, 0, False, turns=2)]
    plain = collate([tokenize_episode(e, tokenizer) for e in eps], tokenizer.pad_token_id)
    marked = collate([tokenize_episode(e, tokenizer, observations="later") for e in eps], tokenizer.pad_token_id)

    def step(batch: dict, weight: float) -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        cfg = SimpleNamespace(obs_loss_weight=weight, chunk_size=1024)
        run = SimpleNamespace(cfg=cfg, policy=model, autocast=contextlib.nullcontext)
        metrics = _sft_micro(run, batch, 1.0)
        return metrics, [p.grad.clone() for p in model.parameters()]

    m0, g0 = step(plain, 0.0)
    m0_marked, g0_marked = step(marked, 0.0)
    assert m0 == m0_marked and "obs_loss" not in m0
    assert all(torch.equal(a, b) for a, b in zip(g0, g0_marked, strict=True))
    m_half, g_half = step(marked, 0.5)
    m_one, g_one = step(marked, 1.0)
    assert m_half["sft_loss"] == pytest.approx(m0["sft_loss"], abs=1e-6)  # one forward, same action logits
    assert m_half["obs_loss"] == pytest.approx(m_one["obs_loss"]) and m_half["obs_loss"] > 0
    assert m_half["loss"] == pytest.approx(m0["loss"] + 0.5 * m_half["obs_loss"], abs=1e-5)
    assert m_half["obs_tokens"] == float(marked["obs_targets"].numel()) > 0
    diffs = [(b - a).abs().max().item() for a, b in zip(g0, g_half, strict=True)]
    assert max(diffs) > 1e-4  # the observation term reaches the weights
    for a, half, one in zip(g0, g_half, g_one, strict=True):
        assert torch.allclose(one - a, 2 * (half - a), atol=1e-5)


def test_training_with_observation_loss(tiny_model_dir, tmp_path):
    """`learn --algo sft --obs-loss-weight 1` logs obs_loss, which falls, records the option, and trains other
    weights than W = 0; W = 0 loads no observation masks and logs no obs_loss."""
    data = write_dataset(tmp_path / "train.jsonl", tasks=4)
    common = dict(data=[str(data)], model=str(tiny_model_dir), algo="sft", lr=3e-3, batch_size=8, max_steps=6)
    train(LearnConfig(out=str(tmp_path / "w0"), **common))
    train(LearnConfig(out=str(tmp_path / "w1"), obs_loss_weight=1.0, obs_loss_turns="all", **common))
    metrics = [json.loads(x) for x in (tmp_path / "w1" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["obs_loss"] < metrics[0]["obs_loss"]
    assert all(m["loss"] == pytest.approx(m["sft_loss"] + m["obs_loss"], abs=1e-5) for m in metrics)
    plain = [json.loads(x) for x in (tmp_path / "w0" / "metrics.jsonl").read_text().splitlines()]
    assert all("obs_loss" not in m for m in plain)
    recorded = json.loads((tmp_path / "w1" / "learn_config.json").read_text())
    assert recorded["obs_loss_weight"] == 1.0 and recorded["obs_loss_turns"] == "all"
    assert json.loads((tmp_path / "w0" / "learn_config.json").read_text())["obs_loss_weight"] == 0.0
    from safetensors.torch import load_file

    w0, w1 = (load_file(str(tmp_path / n / "policy" / "model.safetensors")) for n in ("w0", "w1"))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_weight_zero_loads_no_observation_masks(tiny_model_dir, tokenizer, tmp_path):
    from rich.console import Console

    from agentrl.learner import _training_items

    data = write_dataset(tmp_path / "train.jsonl", tasks=2)
    cfg = LearnConfig(algo="sft", data=[str(data)], out=str(tmp_path / "o"))
    episodes, _, _ = _training_items(cfg, tokenizer, Console(quiet=True))
    assert all(e.obs_mask == [] for e in episodes)
    marked, _ = load_tokenized(str(data), tokenizer, observations="later")
    assert all(any(e.obs_mask) for e in marked)


def test_observation_loss_options_are_checked(tmp_path, capsys):
    data = write_dataset(tmp_path / "train.jsonl", tasks=1)
    args = ["learn", "--data", str(data), "--out", str(tmp_path / "o")]
    assert main([*args, "--algo", "dpo", "--obs-loss-weight", "0.5"]) == 2
    assert "only sft and rs train with the observation loss" in capsys.readouterr().err
    assert main([*args, "--algo", "sft", "--obs-loss-weight", "-1"]) == 2
    assert "`obs_loss_weight` must be >= 0" in capsys.readouterr().err
    assert main([*args, "--algo", "sft", "--obs-loss-weight", "1", "--obs-loss-turns", "first"]) == 2
    assert "`obs_loss_turns`" in capsys.readouterr().err
    assert not Path(tmp_path / "o").exists()
