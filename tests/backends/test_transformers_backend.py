"""The transformers backend: batching with left padding, KV cache carried across turns, sampling, stops."""

from __future__ import annotations

import pytest
import torch

from agentrl.backends.base import Request, Sampling
from agentrl.backends.transformers_backend import TransformersBackend

CONVS = [
    [
        {"role": "system", "content": "You are in a kitchen."},
        {"role": "user", "content": "Your task is to: put a mug in fridge."},
    ],
    [{"role": "user", "content": "Question: Tom has 3 apples and buys 5 more."}],
    [{"role": "user", "content": "Hi"}],
]


def _reference(model, backend, messages, max_new_tokens):
    """One conversation alone through Hugging Face's own ``generate`` (no padding, no carried cache)."""
    ids = torch.tensor([backend.encode(messages)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=backend.pad_id,
        eos_token_id=sorted(backend.stop_ids),
    )
    new = [t for t in out[0, ids.shape[1] :].tolist() if t not in backend.stop_ids]
    return backend.tokenizer.decode(new, skip_special_tokens=True)


def test_carried_cache_gives_the_same_text_with_less_prefill(tiny_model):
    model, tokenizer = tiny_model
    carry = TransformersBackend(model, tokenizer, carry_cache=True)
    fresh = TransformersBackend(model, tokenizer, carry_cache=False)
    convs = [list(c) for c in CONVS]
    sampling = Sampling(max_new_tokens=6)
    for turn in range(3):
        if turn == 1:  # a new episode starts beside running ones: rows with and without a cache in one batch
            convs.append([{"role": "user", "content": "You are in a hallway. Your task is to: find a key."}])
        requests = [Request(messages=c, cache_key=f"env{i}") for i, c in enumerate(convs)]
        a = carry.generate(requests, sampling)
        b = fresh.generate(requests, sampling)
        assert [x[0].text for x in a] == [x[0].text for x in b], turn
        if turn in (0, 2):
            assert [x[0].text for x in b] == [_reference(model, fresh, c, 6) for c in convs]
        for conv, completions in zip(convs, a, strict=True):
            conv += [
                {"role": "assistant", "content": completions[0].text},
                {"role": "user", "content": f"You arrive at shelf {turn}. Nothing happens."},
            ]
    assert carry.stats.prompt_tokens == fresh.stats.prompt_tokens
    assert carry.stats.prefill_tokens < 0.6 * fresh.stats.prefill_tokens
    assert carry.stats.generated_tokens == fresh.stats.generated_tokens == (3 + 4 + 4) * 6
    carry.release("env0")
    assert "env0" not in carry._cache and "env1" in carry._cache


def test_a_new_conversation_borrows_the_shared_system_prompt(tiny_model):
    model, tokenizer = tiny_model
    carry = TransformersBackend(model, tokenizer, carry_cache=True)
    fresh = TransformersBackend(model, tokenizer, carry_cache=False)
    system = {"role": "system", "content": "You are an agent in a household. " * 20}
    first = [system, {"role": "user", "content": "You see a fridge 1."}]
    second = [system, {"role": "user", "content": "You see a sofa 2 and a lamp 1."}]
    sampling = Sampling(max_new_tokens=5)
    carry.generate([Request(messages=first, cache_key="episode-1")], sampling)
    carry.release("episode-1")  # the episode ended; its prefix stays available
    carry.reset_stats()
    got = carry.generate([Request(messages=second, cache_key="episode-2")], sampling)
    want = fresh.generate([Request(messages=second, cache_key="episode-2")], sampling)
    assert got[0][0].text == want[0][0].text
    assert carry.stats.prefill_tokens < 0.3 * carry.stats.prompt_tokens
    carry.clear_cache()
    assert carry._donors() == []


def test_new_conversations_in_one_batch_read_their_shared_prefix_once(tiny_model):
    model, tokenizer = tiny_model
    carry = TransformersBackend(model, tokenizer, carry_cache=True)
    fresh = TransformersBackend(model, tokenizer, carry_cache=False)
    system = {"role": "system", "content": "You are an agent in a household. " * 20}
    chats = [[system, {"role": "user", "content": f"You see a shelf {k}."}] for k in range(3)]
    requests = [Request(messages=c, cache_key=f"e{k}") for k, c in enumerate(chats)]
    got = carry.generate(requests, Sampling(max_new_tokens=5))
    want = fresh.generate(requests, Sampling(max_new_tokens=5))
    assert [g[0].text for g in got] == [w[0].text for w in want]
    assert carry.stats.prefill_tokens < 0.5 * carry.stats.prompt_tokens


def test_keyless_requests_find_their_previous_turn(tiny_model):
    model, tokenizer = tiny_model
    server_side = TransformersBackend(model, tokenizer, carry_cache=True, keyless_cache=2)
    fresh = TransformersBackend(model, tokenizer, carry_cache=False)
    chat = [{"role": "user", "content": "You are in a kitchen. Your task is to: put a mug in fridge. " * 5}]
    sampling = Sampling(max_new_tokens=4)
    for turn in range(3):  # the client resends the whole chat each turn, with no cache key
        if turn == 2:
            server_side.reset_stats()
        ((got,),) = server_side.generate([Request(messages=chat)], sampling)
        ((want,),) = fresh.generate([Request(messages=chat)], sampling)
        assert got.text == want.text
        chat += [{"role": "assistant", "content": got.text}, {"role": "user", "content": "Nothing happens."}]
    assert server_side.stats.prefill_tokens < 0.3 * server_side.stats.prompt_tokens
    assert len(server_side._cache) == 2  # bounded: the oldest keyless entry was evicted


def test_n_samples_seeded_and_length_finish(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer)
    sampling = Sampling(temperature=1.0, top_p=0.9, max_new_tokens=5, n=3, seed=7)
    requests = [Request(messages=CONVS[1]), Request(messages=CONVS[2])]
    first = backend.generate(requests, sampling)
    again = backend.generate(requests, sampling)
    assert [len(group) for group in first] == [3, 3]
    assert [[c.text for c in g] for g in first] == [[c.text for c in g] for g in again]
    texts = {c.text for g in first for c in g}
    assert len(texts) > 1  # sampling, not greedy
    assert all(c.finish_reason == "length" and c.num_tokens == 5 for g in first for c in g)


def test_n_samples_share_one_prompt_row_and_match_separate_rows(tiny_model):
    """Packed samples (one cache row per prompt) draw the same tokens as the prompt repeated n times, n = 1."""
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False)
    packed = backend.generate([Request(messages=c) for c in CONVS], Sampling(temperature=1.0, max_new_tokens=8,
                                                                             n=3, seed=11))
    rows = backend.generate([Request(messages=c) for c in CONVS for _ in range(3)],
                            Sampling(temperature=1.0, max_new_tokens=8, n=1, seed=11))
    assert [[c.text for c in group] for group in packed] == [[g[0].text for g in rows[3 * i : 3 * i + 3]]
                                                              for i in range(len(CONVS))]  # fmt: skip
    assert len({c.text for group in packed for c in group}) > 3


@pytest.mark.parametrize("temperature, n", [(0.0, 1), (0.7, 3)])
def test_completions_carry_the_models_log_prob_of_their_tokens(tiny_model, temperature, n):
    """Each completion's `token_logprobs` are log pi(token | prompt, earlier tokens) at temperature 1 (whatever
    the sampling temperature), the end-of-turn token included, and `logprob` is their sum: the same numbers a
    plain forward over prompt + completion gives."""
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False)
    out = backend.generate([Request(messages=c) for c in CONVS],
                           Sampling(temperature=temperature, max_new_tokens=6, n=n, seed=3))  # fmt: skip
    for messages, group in zip(CONVS, out, strict=True):
        prompt = backend.encode(messages)
        for completion in group:
            tokens = [t for t, _ in completion.token_logprobs]
            assert len(tokens) == completion.num_tokens
            ids = torch.tensor([prompt + tokens])
            with torch.no_grad():
                logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            expected = [logps[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]
            assert [lp for _, lp in completion.token_logprobs] == pytest.approx(expected, abs=1e-4)
            assert completion.logprob == pytest.approx(sum(expected), abs=1e-3)


def test_stop_string_cuts_the_text(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False)
    ((full,),) = backend.generate([Request(messages=CONVS[2])], Sampling(max_new_tokens=12))
    assert len(full.text) >= 4
    stop = full.text[2:4]
    ((cut,),) = backend.generate([Request(messages=CONVS[2])], Sampling(max_new_tokens=12, stop=[stop]))
    assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"


def test_end_of_turn_token_stops_generation(tiny_model):
    model, tokenizer = tiny_model
    backend = TransformersBackend(model, tokenizer, carry_cache=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in backend.stop_ids
    with torch.no_grad():  # make the model always predict <|im_end|> after one step
        bias = torch.zeros(model.config.vocab_size)
        bias[end] = 1e4
        original = model.lm_head.forward
        model.lm_head.forward = lambda x: original(x) + bias
        try:
            ((done,),) = backend.generate([Request(messages=CONVS[2])], Sampling(max_new_tokens=8))
        finally:
            model.lm_head.forward = original
    assert (done.text, done.num_tokens, done.finish_reason) == ("", 1, "stop")


@pytest.mark.slow
def test_react_on_the_default_model_records_a_real_step():
    from agentrl.models import ModelError, default_model_dir

    if not (default_model_dir() / "config.json").is_file():
        pytest.skip("default model not prepared (agentrl model default)")
    from agentrl.policies import make_policy

    try:
        backend = TransformersBackend.from_pretrained("default", dtype="bfloat16")
    except ModelError as err:  # pragma: no cover
        pytest.skip(str(err))
    policy = make_policy("react", generator=backend, sampling=Sampling(max_new_tokens=8), example=False)
    info = {"task_id": "t", "task": "put a mug in fridge", "admissible_actions": []}
    ctx = policy.begin(
        0,
        "You are in the middle of a room. You see a fridge 1 and a countertop 1. "
        "Your task is to: put a mug in fridge.",
        info,
        "alfworld",
    )
    (decision,) = policy.act([ctx])
    assert decision.raw.strip() and decision.new_tokens > 0
    policy.observe(ctx, decision, "Nothing happens.", info)
    assert ctx.messages[-2] == {"role": "assistant", "content": decision.raw}


def test_from_pretrained_takes_a_lora_adapter_folder(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")  # records base_model_name_or_path = tiny_model_dir
    backend = TransformersBackend.from_pretrained(str(tmp_path / "adapter"))
    ((out,),) = backend.generate([Request(messages=CONVS[2])], Sampling(max_new_tokens=3))
    assert out.num_tokens == 3
    plain = TransformersBackend.from_pretrained(str(tiny_model_dir))
    ((ref,),) = plain.generate([Request(messages=CONVS[2])], Sampling(max_new_tokens=3))
    merged_weight = backend.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(
        merged_weight, plain.model.model.layers[0].self_attn.q_proj.weight
    )  # adapter applied
