"""The transformers backend's constrained path: choices scored on the carried cache equal full forwards."""

from __future__ import annotations

import pytest
import torch

from agentrl.backends.base import Request, Sampling
from agentrl.backends.transformers_backend import TransformersBackend

CHOICES = ["go to fridge 1", "go to fridge 10", "take mug 1 from countertop 1", "look", "go to fridge 1"]


def _chat(obs: str, partial: str | None = "Think: I need the mug.\nAction: ") -> list[dict[str, str]]:
    chat = [{"role": "system", "content": "You are in a kitchen."}, {"role": "user", "content": obs}]
    return chat + ([{"role": "assistant", "content": partial}] if partial is not None else [])


def _reference(model, backend, messages, choices):
    """Each choice alone: one full forward over chat + choice + end-of-turn, no cache, no padding, no packing.

    A choice's log-prob sums ``log p`` over its tokens after the longest prefix that the prompt and every choice
    share (a choice's first token may merge with the prompt's last, e.g. ``": "`` + ``"go"`` -> ``":"``,
    ``" go"``: counting from the shared point keeps the scores of all choices comparable).
    """
    prompt = backend.encode(messages)
    full = {
        c: backend.tokens(backend.render(messages) + c) + [backend.end_id] for c in dict.fromkeys(choices)
    }
    start = min(next(i for i, (a, b) in enumerate(zip(prompt + [-1], ids, strict=False)) if a != b)
                for ids in full.values())  # fmt: skip
    out = {}
    for choice, ids in full.items():
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        total = sum(float(logp[i - 1, ids[i]]) for i in range(start, len(ids)))
        out[choice] = (total, len(ids) - start)
    return out


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_the_constrained_choice_is_the_argmax_of_full_forwards(tiny_model, how):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    chats = [_chat("You see a fridge 1 and a countertop 1. " * 3), _chat("Hi", partial=None)]
    for turn in range(2):  # the second turn continues the carried caches
        if turn == 1:
            backend.reset_stats()
        requests = [Request(messages=c, cache_key=f"e{i}", choices=CHOICES) for i, c in enumerate(chats)]
        got = backend.generate(requests, Sampling(n=4, choice_score=how))
        for chat, completions in zip(chats, got, strict=True):
            ref = _reference(model, backend, chat, CHOICES)
            score = {c: (lp / n if how == "mean" else lp) for c, (lp, n) in ref.items()}
            want = sorted(score, key=lambda c: -score[c])
            assert [c.text for c in completions] == want  # the 4 distinct choices, best first
            for c in completions:
                assert c.logprob == pytest.approx(ref[c.text][0], abs=1e-4)
                assert c.num_tokens == ref[c.text][1] and c.finish_reason == "stop"
        chats = [_next_turn(chat, completions[0].text) for chat, completions in zip(chats, got, strict=True)]
    # the second turn reused the cache: it fed the last choice, the observation and the new partial turn only
    assert backend.stats.prefill_tokens < 0.4 * backend.stats.prompt_tokens


def _next_turn(chat: list[dict[str, str]], choice: str) -> list[dict[str, str]]:
    """The chat after taking ``choice``: its turn completed, an observation, and a thought-free partial turn."""
    partial = chat[-1]["content"] if chat[-1]["role"] == "assistant" else ""
    head = chat[:-1] if chat[-1]["role"] == "assistant" else chat
    return [
        *head,
        {"role": "assistant", "content": partial + choice},
        {"role": "user", "content": "Nothing happens."},
        {"role": "assistant", "content": "Action: "},
    ]


def test_a_choice_call_leaves_the_cache_right_for_the_next_free_turn(tiny_model):
    model, tokenizer = tiny_model
    carry = TransformersBackend(model, tokenizer)
    fresh = TransformersBackend(model, tokenizer, carry_cache=False)
    chat = _chat("You see a fridge 1. " * 4)
    ((best, *_),) = carry.generate([Request(messages=chat, cache_key="k", choices=CHOICES)], Sampling())
    chat = chat[:-1] + [
        {"role": "assistant", "content": chat[-1]["content"] + best.text},
        {"role": "user", "content": "You arrive at fridge 1."},
    ]
    sampling = Sampling(max_new_tokens=6)
    got = carry.generate([Request(messages=chat, cache_key="k")], sampling)
    want = fresh.generate([Request(messages=chat, cache_key="k")], sampling)
    assert got[0][0].text == want[0][0].text


def test_sampled_choices_are_distinct_seeded_and_capped_by_the_choice_count(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False)
    request = Request(messages=_chat("You see a fridge 1."), choices=CHOICES)
    draws = [
        [c.text for c in backend.generate([request], Sampling(temperature=5.0, n=9, seed=s))[0]]
        for s in range(6)
    ]
    assert all(sorted(d) == sorted(set(CHOICES)) for d in draws)  # n capped at the 4 distinct choices
    again = [c.text for c in backend.generate([request], Sampling(temperature=5.0, n=9, seed=0))[0]]
    assert again == draws[0] and len({d[0] for d in draws}) > 1  # seeded, and not always the argmax
    with pytest.raises(ValueError, match="at least one choice"):
        backend.generate([Request(messages=_chat("x"), choices=[])], Sampling())


def test_free_and_constrained_requests_in_one_call_keep_their_order(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False, max_batch=1)
    free = Request(messages=_chat("Hi", partial=None))
    constrained = Request(messages=_chat("Hi"), choices=["look", "inventory"])
    out = backend.generate([free, constrained, free], Sampling(max_new_tokens=3))
    assert out[1][0].text in ("look", "inventory") and out[1][0].logprob is not None
    assert out[0][0].text == out[2][0].text and out[0][0].logprob == pytest.approx(out[2][0].logprob)
    assert out[0][0].logprob == pytest.approx(sum(lp for _, lp in out[0][0].token_logprobs))  # free text: its tokens


def test_options_tokenized_from_the_last_added_token_equal_whole_tokenization(tiny_model):
    from agentrl.backends.choices import choice_tokens

    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    for text in (backend.render(_chat("You see a fridge 1. " * 30)), "no added token here: Action: "):
        prompt, full = choice_tokens(backend, text, CHOICES)
        assert prompt == backend.tokens(text)
        assert full == [backend.tokens(text + c) + [backend.end_id] for c in CHOICES]


def test_choices_right_after_a_generated_thought_read_only_what_the_cache_lacks_and_stay_exact(tiny_model):
    """The thought's tokens are cached: the choice pass feeds the few head tokens left, then the tails."""
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    chat = _chat("You see a fridge 1 and a countertop 1. " * 3, partial=None)
    ((thought,),) = backend.generate([Request(messages=chat, cache_key="k")], Sampling(max_new_tokens=5))
    continued = [*chat, {"role": "assistant", "content": thought.text + "A"}]
    before = backend.stats.prefill_tokens
    got = backend.generate([Request(messages=continued, cache_key="k", choices=CHOICES)], Sampling(n=4))
    assert 0 < backend.stats.prefill_tokens - before <= 4
    ref = _reference(model, backend, continued, CHOICES)
    score = {c: lp / n for c, (lp, n) in ref.items()}
    assert [c.text for c in got[0]] == sorted(score, key=lambda c: -score[c])
    for c in got[0]:
        assert c.logprob == pytest.approx(ref[c.text][0], abs=1e-4) and c.num_tokens == ref[c.text][1]
