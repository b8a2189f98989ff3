"""One episode -> token ids, action masks (content + end-of-turn), state positions per level; collation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agentrl.data import DataError, collate, parse_reward_map, tokenize_episode
from agentrl.models import default_model_dir

from .helpers import episode


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _turn_texts(tok, item):
    """Decoded text of each contiguous run of action tokens."""
    runs, current = [], []
    for i, flag in enumerate(item.action_mask):
        if flag:
            current.append(item.input_ids[i])
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tok.decode(r) for r in runs]


def test_action_mask_is_assistant_content_plus_end_of_turn(tokenizer):
    ep = episode(3, 0, True)
    item = tokenize_episode(ep, tokenizer)
    contents = [m["content"] for m in ep.messages if m["role"] == "assistant"]
    assert _turn_texts(tokenizer, item) == [c + "<|im_end|>" for c in contents]
    assert [tokenizer.decode([item.input_ids[e]]) for e in item.after_positions] == ["<|im_end|>"] * 2
    assert (
        item.input_ids
        == tokenizer.apply_chat_template(ep.messages, tokenize=True, return_dict=True)["input_ids"]
    )
    assert item.reward == 1.0


def test_levels_segments_and_state_positions(tokenizer):
    ep = episode(1, 0, False)
    token = tokenize_episode(ep, tokenizer, level="token", reward_map={0.0: -1.0, 1.0: 1.0})
    assert token.reward == -1.0
    actions = [i for i, f in enumerate(token.action_mask) if f]
    assert token.state_positions == [i - 1 for i in actions]
    assert [token.segments[i] for i in actions] == list(range(len(actions)))

    step = tokenize_episode(ep, tokenizer, level="step")
    assert len(step.state_positions) == 2  # one per assistant turn
    for pos in step.state_positions:  # the last token before the turn: "\n" after "<|im_start|>assistant"
        assert tokenizer.decode(step.input_ids[: pos + 1]).endswith("<|im_start|>assistant\n")
        assert step.action_mask[pos + 1] and not step.action_mask[pos]

    lines = tokenize_episode(ep, tokenizer, level="step", step_delimiters=["\n"])
    assert len(lines.state_positions) == 4  # "Think: ...\n" and "Action: ...<|im_end|>" per turn
    second = [tokenizer.decode([t]) for t, s in zip(lines.input_ids, lines.segments, strict=True) if s == 1]
    assert "".join(second).startswith("Action:") and "".join(second).endswith("<|im_end|>")
    assert tokenizer.decode([lines.input_ids[lines.state_positions[1]]]).endswith("\n")

    response = tokenize_episode(ep, tokenizer, level="response")
    assert response.state_positions == [actions[0] - 1]
    assert sum(s == 0 for s in response.segments) == len(actions)


def test_math_steps_are_dense_when_a_delimiter_is_inside_a_token():
    """With a tokenizer that merges a blank line into one "\n\n" token (as Qwen2.5's does), splitting on
    "\n" cuts twice inside that token: the steps must still be numbered 0..S-1 with a state for each."""
    from agentrl.models import train_tokenizer

    text = "Tom starts with 3 apples.\n\nHe buys 5 more, so 3 + 5 = 8.\n#### 8"
    tok = train_tokenizer(
        [text, "Think: go.\nAction: look", "Your task is to: put mug 1 in fridge 1."] * 20, 400
    )
    tok.add_tokens(["\n\n"])  # the merge GPT-2's pre-tokenizer would not make
    assert "\n\n" in [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]
    ep = episode(0, 0, True, turns=1)
    ep.messages[-1]["content"] = text
    item = tokenize_episode(ep, tok, level="step", step_delimiters=["\n"])
    assert sorted(set(s for s in item.segments if s >= 0)) == [0, 1, 2]
    assert all(item.action_mask[p + 1] for p in item.state_positions) and len(item.state_positions) == 3


def test_collate_flattens_actions_in_row_major_order(tokenizer):
    items = [
        tokenize_episode(episode(0, 0, True), tokenizer),
        tokenize_episode(episode(1, 1, False, turns=1), tokenizer),
    ]
    batch = collate(items, tokenizer.pad_token_id)
    n0, n1 = items[0].num_actions, items[1].num_actions
    assert batch["targets"].shape == (n0 + n1,)
    assert torch.equal(batch["action_rows"], torch.tensor([0] * n0 + [1] * n1))
    s = batch["state_mask"].shape[1]
    assert batch["action_segments"][n0:].min() == s  # row 1 starts at 1 * S
    assert batch["state_mask"].sum().item() == n0 + n1
    assert batch["attention_mask"][1].sum().item() == len(items[1].input_ids)


def test_errors_name_the_episode(tokenizer, tmp_path):
    ep = episode(0, 0, True)
    ep.messages = []
    with pytest.raises(DataError, match="no `messages`"):
        tokenize_episode(ep, tokenizer)
    ep = episode(0, 0, True)
    ep.messages = [m for m in ep.messages if m["role"] != "assistant"]
    with pytest.raises(DataError, match="no assistant turn"):
        tokenize_episode(ep, tokenizer)
    with pytest.raises(DataError, match="has no entry in the reward map"):
        tokenize_episode(episode(0, 0, True), tokenizer, reward_map={0.0: -1.0})
    with pytest.raises(DataError, match="raw:mapped"):
        parse_reward_map("1=2")
    assert parse_reward_map("none") is None
    trimmed = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    trimmed.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    bad = episode(0, 0, True)
    bad.messages[2]["content"] += "  "
    with pytest.raises(DataError, match="does not render assistant turn 2"):
        tokenize_episode(bad, trimmed, where="x.jsonl:1")


@pytest.mark.skipif(
    not (default_model_dir() / "tokenizer.json").is_file(), reason="SmolLM2 not converted here"
)
def test_smollm2_template_with_injected_system_prompt():
    """SmolLM2's template adds a default system prompt when the chat has none: spans must still be exact."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(default_model_dir()))
    ep = episode(2, 0, True)
    ep.messages = ep.messages[1:]  # no system message
    item = tokenize_episode(ep, tok, level="step")
    contents = [m["content"] for m in ep.messages if m["role"] == "assistant"]
    assert _turn_texts(tok, item) == [c + "<|im_end|>" for c in contents]


def test_encode_after_action_needs_a_final_assistant_turn(tokenizer):
    from agentrl.data import encode_after_action

    chat = [{"role": "user", "content": "Your task is to: look."}]
    with pytest.raises(DataError, match="must end with the assistant turn"):
        encode_after_action(tokenizer, chat)
    ids, position = encode_after_action(tokenizer, [*chat, {"role": "assistant", "content": "Action: look"}])
    assert position == len(ids) - 1 and tokenizer.decode([ids[position]]) == "<|im_end|>"
