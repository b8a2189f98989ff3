"""A minimal OpenAI-compatible chat server over the transformers backend (stdlib ``http.server``).

``POST /v1/chat/completions`` (``model``, ``messages``, ``temperature``, ``top_p``, ``max_tokens``, ``n``,
``stop``, ``seed``, ``logprobs``; no streaming) and ``GET /v1/models``, whose entry carries the model's agent
format (``agent_config``: thoughts on/off, prompt variant, ...; see :mod:`agentrl.agent_format`) so that an agentrl
client prompts the served model the way it was trained. A constrained action space arrives in vLLM's extra fields: ``structured_outputs: {"choice": [...]}`` (the reply is exactly one of the choices; ``n > 1``: the
``n`` best distinct ones, best first, ranked by the extension field ``choice_score``: ``mean`` or ``sum``
log-prob) and ``continue_final_message: true`` (the reply continues the final assistant message, e.g. after a
thought and ``"Action: "``). Requests that arrive together are batched into one
``generate`` call (a short collection window), so several rollout envs talking to one server share a forward
pass. The server binds to 127.0.0.1 only: it is for local use (tests, a GPU box reached through a tunnel).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentrl.backends.base import CHOICE_SCORES, Completion, Request, Sampling

HOST = "127.0.0.1"


class BadRequest(ValueError):
    """The request body is not a valid chat completion request; the message says which field."""


@dataclass
class _Job:
    request: Request
    sampling: Sampling
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Completion] | None = None
    prompt_tokens: int = 0
    error: str | None = None
    token_texts: list[list[str]] | None = None  # per completion, its scored tokens as text (logprobs)


def parse_chat_request(body: dict[str, Any], max_new_tokens: int) -> tuple[Request, Sampling]:
    """Validates an OpenAI chat completion body into a :class:`Request` and :class:`Sampling`."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list")
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise BadRequest(f"`messages[{i}]` must have string `role` and `content`")
    if body.get("stream"):
        raise BadRequest("`stream` is not supported by this server")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("`stop` must be a string or a list of strings")
    try:
        temperature = float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0)
        top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or max_new_tokens)
        n = int(body.get("n") or 1)
        seed = None if body.get("seed") is None else int(body["seed"])
    except (TypeError, ValueError) as err:
        raise BadRequest(f"bad sampling parameter: {err}") from None
    if temperature < 0 or not 0 < top_p <= 1 or max_tokens < 1 or not 1 <= n <= 64:
        raise BadRequest("need temperature >= 0, 0 < top_p <= 1, max_tokens >= 1, 1 <= n <= 64")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    choices, choice_score = _constraint(body, messages)
    sampling = Sampling(
        temperature=temperature, top_p=top_p, max_new_tokens=max_tokens, n=n, stop=stop, seed=seed,
        choice_score=choice_score,
    )
    return Request(messages=messages, choices=choices), sampling


def _constraint(body: dict[str, Any], messages: list[dict[str, str]]) -> tuple[list[str] | None, str]:
    """The extra fields: ``structured_outputs.choice``, ``continue_final_message``, ``choice_score``."""
    continued = body.get("continue_final_message", False)
    if not isinstance(continued, bool) or not isinstance(body.get("logprobs", False), bool):
        raise BadRequest("`continue_final_message` and `logprobs` must be true or false")
    if continued and body.get("add_generation_prompt") is True:
        raise BadRequest("`continue_final_message` cannot be used with `add_generation_prompt: true`")
    if continued != (messages[-1]["role"] == "assistant"):
        raise BadRequest(
            "`continue_final_message: true` needs a final assistant message to continue, and a chat that ends "
            "with an assistant message needs `continue_final_message: true` (this server continues it)"
        )
    structured = body.get("structured_outputs")
    choices = None
    if structured is not None:
        if not isinstance(structured, dict) or set(structured) != {"choice"}:
            raise BadRequest("`structured_outputs` supports `choice` (a list of strings) only")
        choices = structured["choice"]
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise BadRequest("`structured_outputs.choice` must be a non-empty list of strings")
    choice_score = body.get("choice_score", "mean")
    if choice_score not in CHOICE_SCORES:
        raise BadRequest(f"`choice_score` must be one of {', '.join(CHOICE_SCORES)}, got {choice_score!r}")
    return choices, choice_score


def chat_response(job: _Job, model_name: str, logprobs: bool = False) -> dict[str, Any]:
    """The ``chat.completion`` body of a finished job; with ``logprobs``, each scored token's log-prob (OpenAI's
    ``choices[i].logprobs.content``) where the backend reported them (constrained choices)."""
    completions = job.result or []
    generated = sum(c.num_tokens for c in completions)
    texts = job.token_texts or [[] for _ in completions]
    choices = []
    for i, (c, tokens) in enumerate(zip(completions, texts, strict=True)):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
        }
        if logprobs:
            pairs = zip(tokens, c.token_logprobs or [], strict=True)
            content = [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []} for t, (_, lp) in pairs]
            choice["logprobs"] = {"content": content} if c.token_logprobs is not None else None
        choices.append(choice)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": job.prompt_tokens + generated,
        },
    }


class ChatServer:
    """Owns the HTTP server and the batching thread.

    Args:
        backend: a ``TransformersBackend`` (anything with ``generate`` and ``encode``).
        model_name: the name reported by ``/v1/models`` and in responses.
        port: TCP port on 127.0.0.1 (0 picks a free one; see :attr:`port`).
        batch_window: seconds to wait for more requests before running a batch.
        max_new_tokens: default ``max_tokens``.
        agent_config: the model's agent format (``AgentFormat.to_dict()``), listed in ``/v1/models``.
    """

    def __init__(
        self,
        backend: Any,
        model_name: str,
        port: int = 0,
        batch_window: float = 0.01,
        max_new_tokens: int = 256,
        agent_config: dict[str, Any] | None = None,
    ):
        self.backend = backend
        self.agent_config = agent_config
        self.model_name = model_name
        self.batch_window = batch_window
        self.max_new_tokens = max_new_tokens
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._stopping = threading.Event()
        self.httpd = ThreadingHTTPServer((HOST, port), self._handler())
        self.httpd.daemon_threads = True
        self._worker = threading.Thread(target=self._batch_loop, name="agentrl-serve-batcher", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def serve_forever(self) -> None:
        self._worker.start()
        try:
            self.httpd.serve_forever(poll_interval=0.1)
        finally:
            self._stopping.set()

    def start(self) -> ChatServer:
        """Serves in a background thread (for tests and notebooks)."""
        threading.Thread(target=self.serve_forever, name="agentrl-serve", daemon=True).start()
        return self

    def shutdown(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def submit(self, request: Request, sampling: Sampling, timeout: float | None = None) -> _Job:
        job = _Job(request, sampling)
        self._jobs.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError("generation did not finish in time")
        if job.error is not None:
            raise RuntimeError(job.error)
        return job

    def _batch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            jobs = [first]
            deadline = time.monotonic() + self.batch_window
            while (left := deadline - time.monotonic()) > 0:
                try:
                    jobs.append(self._jobs.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[str, list[_Job]] = {}
            for job in jobs:  # only requests with the same sampling share a batch
                groups.setdefault(repr(job.sampling), []).append(job)
            for group in groups.values():
                try:
                    outputs = self.backend.generate([j.request for j in group], group[0].sampling)
                    for job, out in zip(group, outputs, strict=True):
                        job.result = out
                        # Tokenizers are not thread-safe: count prompt tokens here, in the one worker thread.
                        job.prompt_tokens = len(self.backend.encode(job.request.messages))
                        job.token_texts = [
                            [self.backend.tokenizer.decode([t]) for t, _ in c.token_logprobs or []] for c in out
                        ]
                except Exception as err:  # reported to each waiting client as HTTP 500
                    for job in group:
                        job.error = f"{type(err).__name__}: {err}"
                for job in group:
                    job.done.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(
                    status, {"error": {"message": message, "type": "invalid_request_error", "code": status}}
                )

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.rstrip("/") == "/v1/models":
                    entry: dict[str, Any] = {"id": server.model_name, "object": "model"}
                    if server.agent_config is not None:
                        entry["agent_config"] = server.agent_config
                    self._send(200, {"object": "list", "data": [entry]})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._error(404, f"no route {self.path}")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"null")
                    request, sampling = parse_chat_request(body, server.max_new_tokens)
                except (BadRequest, json.JSONDecodeError, ValueError) as err:
                    self._error(400, str(err))
                    return
                try:
                    job = server.submit(request, sampling)
                except (RuntimeError, TimeoutError) as err:
                    self._error(500, str(err))
                    return
                self._send(200, chat_response(job, server.model_name, logprobs=bool(body.get("logprobs"))))

        return Handler
