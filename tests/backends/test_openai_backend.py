"""The OpenAI-compatible backend against a real local server (`agentrl serve` in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("openai")

from agentrl.backends.base import Request, Sampling  # noqa: E402
from agentrl.backends.openai_backend import GenerationError, OpenAIBackend  # noqa: E402
from agentrl.backends.transformers_backend import TransformersBackend  # noqa: E402

MESSAGES = [
    [{"role": "user", "content": "You are in a kitchen. Your task is to: put a mug in fridge."}],
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "Question: 3 + 5?"}],
]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    cmd = [
        sys.executable,
        "-c",
        "from agentrl.cli import main; raise SystemExit(main())",
        "serve",
        "--model",
        str(tiny_model_dir),
        "--port",
        "0",
        "--name",
        "tiny",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            url = line.split("listening on", 1)[1].strip()
            break
    if url is None:
        proc.kill()
        pytest.fail(f"agentrl serve did not start: {proc.stdout.read()}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_server_matches_the_transformers_backend(server, tiny_model):
    model, tokenizer = tiny_model
    remote = OpenAIBackend(server, "tiny", timeout=60, max_retries=0)
    local = TransformersBackend(model, tokenizer, carry_cache=False)
    sampling = Sampling(max_new_tokens=6)
    requests = [Request(messages=m, cache_key=f"k{i}") for i, m in enumerate(MESSAGES)]
    got = remote.generate(requests, sampling)
    want = local.generate(requests, sampling)
    assert [g[0].text for g in got] == [w[0].text for w in want]
    assert [g[0].num_tokens for g in got] == [6, 6, 6]
    assert all(g[0].finish_reason == "length" for g in got)
    several = remote.generate([requests[1]], Sampling(temperature=1.0, max_new_tokens=4, n=3, seed=1))
    assert len(several[0]) == 3 and sum(c.num_tokens for c in several[0]) == 12
    remote.close()


def test_server_rejects_bad_requests_with_400(server):
    def post(body) -> tuple[int, dict]:
        req = urllib.request.Request(
            server + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = post({"model": "tiny", "messages": []})
    assert status == 400 and "messages" in body["error"]["message"]
    status, body = post({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_p": 2})
    assert status == 400 and "top_p" in body["error"]["message"]
    with urllib.request.urlopen(server + "/models", timeout=30) as resp:
        assert json.loads(resp.read())["data"][0]["id"] == "tiny"


def test_unreachable_endpoint_fails_after_retries_naming_it():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "x", timeout=1.0, max_retries=1)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="127.0.0.1:9"):
        backend.generate([Request(messages=MESSAGES[1])], Sampling(max_new_tokens=2))
    assert time.monotonic() - started < 30


def test_rollout_through_the_openai_backend(server, tmp_path):
    from fake_env import FakePool

    from agentrl.rollout import RolloutConfig, rollout

    cfg = RolloutConfig(
        env="math",
        dataset="chain-sum",
        policy="react",
        backend="openai",
        base_url=server,
        model="tiny",
        out=str(tmp_path / "o.jsonl"),
        episodes=2,
        num_envs=2,
        max_steps=2,
        max_new_tokens=3,
        progress=False,
    )
    summary = rollout(cfg, pool=FakePool(num_tasks=2))
    assert summary["written"] == 2 and summary["env_steps"] == 4 and summary["generated_tokens"] > 0


CHOICES = ["go to fridge 1", "open fridge 1", "take mug 1 from countertop 1", "look"]
PARTIAL = [*MESSAGES[0], {"role": "assistant", "content": "Think: the mug may be in the fridge.\nAction: "}]


def test_constrained_choices_through_the_server_match_the_transformers_backend(server, tiny_model):
    """`structured_outputs` + `continue_final_message` end to end: the same ranked choices and log-probs."""
    model, tokenizer = tiny_model
    remote = OpenAIBackend(server, "tiny", timeout=60, max_retries=0)
    local = TransformersBackend(model, tokenizer, carry_cache=False)
    requests = [Request(messages=PARTIAL, choices=CHOICES), Request(messages=MESSAGES[1], choices=CHOICES[:2])]
    for how in ("mean", "sum"):
        got = remote.generate(requests, Sampling(n=3, choice_score=how))
        want = local.generate(requests, Sampling(n=3, choice_score=how))
        assert [[c.text for c in g] for g in got] == [[c.text for c in w] for w in want]
        assert [len(g) for g in got] == [3, 2]  # n capped at the distinct choices
        for g, w in zip(got, want, strict=True):
            assert [c.logprob for c in g] == pytest.approx([c.logprob for c in w], abs=1e-4)
            assert [c.num_tokens for c in g] == [c.num_tokens for c in w]
    remote.close()


def test_admissible_react_policy_through_the_server(server, tiny_model):
    from agentrl.policies.react import ReActPolicy

    model, tokenizer = tiny_model
    info = {"task_id": "t", "task": "put a mug in fridge", "admissible_actions": CHOICES}
    decisions = []
    for generator in (OpenAIBackend(server, "tiny", timeout=60, max_retries=0),
                      TransformersBackend(model, tokenizer, carry_cache=False)):  # fmt: skip
        policy = ReActPolicy(generator, Sampling(max_new_tokens=8), action_space="admissible", example=False)
        ctx = policy.begin(0, "You are in a kitchen.", info, "alfworld")
        decisions.append(policy.act([ctx])[0])
    remote, local = decisions
    assert remote.action in CHOICES and (remote.raw, remote.action) == (local.raw, local.action)
    assert remote.logprob == pytest.approx(local.logprob, abs=1e-4)


class _IgnoresConstraints:
    """A backend behind a real ChatServer that drops the choice constraint (as a server without it would)."""

    def __init__(self, backend):
        self.backend, self.tokenizer = backend, backend.tokenizer

    def generate(self, requests, sampling):
        plain = [Request(messages=r.messages, cache_key=r.cache_key) for r in requests]
        return self.backend.generate(plain, sampling)

    def encode(self, messages):
        return self.backend.encode(messages)


def test_a_server_that_ignores_the_constraint_is_a_clear_error(tiny_model):
    from agentrl.serve import ChatServer

    model, tokenizer = tiny_model
    ignoring = ChatServer(_IgnoresConstraints(TransformersBackend(model, tokenizer, carry_cache=False)), "tiny")
    ignoring.start()
    try:
        remote = OpenAIBackend(ignoring.url, "tiny", timeout=60, max_retries=0)
        with pytest.raises(GenerationError, match="ignored the choice constraint.*structured_outputs"):
            remote.generate([Request(messages=PARTIAL, choices=CHOICES)], Sampling(max_new_tokens=6))
    finally:
        ignoring.shutdown()


def test_server_rejects_bad_constraint_fields_with_400(server):
    def post(extra) -> tuple[int, str]:
        body = {"model": "tiny", "messages": PARTIAL, "continue_final_message": True, **extra}
        req = urllib.request.Request(server + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, ""
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())["error"]["message"]

    assert post({"structured_outputs": {"choice": ["look"]}, "max_tokens": 2})[0] == 200
    assert post({"structured_outputs": {"regex": "a+"}}) == (400, "`structured_outputs` supports `choice` (a list of strings) only")
    assert "non-empty list of strings" in post({"structured_outputs": {"choice": []}})[1]
    assert "`choice_score` must be one of mean, sum" in post({"structured_outputs": {"choice": ["a"]}, "choice_score": "max"})[1]
    status, message = post({"continue_final_message": False})
    assert status == 400 and "needs `continue_final_message: true`" in message


def test_admissible_rollout_through_the_openai_backend(server, tmp_path):
    from fake_env import FakePool

    from agentrl.rollout import RolloutConfig, rollout

    cfg = RolloutConfig(env="alfworld", data=str(tmp_path), policy="react", backend="openai", base_url=server,
                        model="tiny", out=str(tmp_path / "o.jsonl"), episodes=2, num_envs=2, max_steps=2,
                        max_new_tokens=4, action_space="admissible", thoughts="off", progress=False)  # fmt: skip
    rollout(cfg, pool=FakePool(num_tasks=2))
    rows = [json.loads(line) for line in open(cfg.out)]
    admissible = ["open door", *[f"go to room {r}" for r in range(4)], "look"]
    assert len(rows) == 2 and all(s["action"] in admissible and s["valid"] for r in rows for s in r["steps"])
