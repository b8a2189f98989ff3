"""Step many environments in parallel worker processes, with a per-step timeout.

``EnvPool(env_id, env_kwargs, num_envs)`` runs one ``gymnasium.make(env_id, **env_kwargs)`` per slot, each in its
own process, driven over a pipe. ``reset``/``step`` take ``{slot: request}`` and return ``{slot: result}``: the
Gymnasium tuple, or an :class:`EnvError` when that slot's env raised, died, or did not answer within
``step_timeout`` seconds (its worker is then killed and restarted, so a hung engine costs one episode, never the
run). Other slots are unaffected. ``processes=False`` runs the envs in this process (tests, debugging; no
timeout). Workers start from a fork server, so they do not inherit the caller's threads or model weights (and a
script creating a pool needs the usual ``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

RESET_TIMEOUT_MIN = 120.0  # loading a large ALFWorld room takes seconds; a reset gets at least this long


class EnvStartError(RuntimeError):
    """An env worker could not make its env; ``reason`` is the env's own message (one line, no traceback)."""

    def __init__(self, env_id: str, reason: str) -> None:
        super().__init__(f"env worker for {env_id} failed to start: {reason}")
        self.env_id, self.reason = env_id, reason


def _reason(err: Exception) -> str:
    """An exception as one line: bad-input errors by their message alone, others with their type."""
    text = str(err) if isinstance(err, ValueError | OSError | ImportError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


@dataclass
class EnvError:
    """A slot whose env failed: what happened, and whether it was a timeout (worker restarted)."""

    slot: int
    message: str
    timed_out: bool


def _make_env(env_id: str, env_kwargs: dict):
    import gymnasium as gym

    import agentrl.envs  # noqa: F401  (registers the envs)

    return gym.make(env_id, **env_kwargs)


def _call(env: Any, command: str, payload: Any) -> Any:
    if command == "reset":
        return env.reset(**payload)
    if command == "step":
        return env.step(payload)
    if command == "task_ids":
        return list(env.unwrapped.task_ids)
    raise ValueError(f"unknown worker command {command!r}")


def _worker(conn, env_id: str, env_kwargs: dict, import_path: list[str]) -> None:
    """Worker process loop: make the env, then answer ``(command, payload)`` messages until "close"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes the pool
    sys.path[:] = import_path  # same imports as the parent (e.g. "my_module:MyEnv-v0" ids)
    try:
        env = _make_env(env_id, env_kwargs)
    except Exception as err:  # reported on the first request
        env, startup_error = None, _reason(err)
    else:
        startup_error = ""
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if command == "close":
            break
        if env is None:
            conn.send(("error", startup_error))
            continue
        try:
            conn.send(("ok", _call(env, command, payload)))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"))
    if env is not None:
        env.close()
    conn.close()


class _Slot:
    """One worker process and its pipe."""

    def __init__(self, ctx, env_id: str, env_kwargs: dict) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, env_id, env_kwargs, list(sys.path)), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class EnvPool:
    """``num_envs`` environments stepped in parallel; see the module docstring."""

    def __init__(self, env_id: str, env_kwargs: dict, num_envs: int, *, step_timeout: float = 60.0,
                 processes: bool = True) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if step_timeout <= 0:
            raise ValueError(f"step_timeout must be > 0, got {step_timeout}")
        self.env_id, self.env_kwargs, self.num_envs = env_id, dict(env_kwargs), num_envs
        self.step_timeout = step_timeout
        self.processes = processes
        self._closed = False
        if not processes:
            try:
                self._envs = [_make_env(env_id, self.env_kwargs) for _ in range(num_envs)]
            except Exception as err:  # the same error a worker process reports
                raise EnvStartError(env_id, _reason(err)) from None
            self.task_ids: list[str] = list(self._envs[0].unwrapped.task_ids)
            return
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["agentrl.envs", "gymnasium"])
        self._slots = [_Slot(self._ctx, env_id, self.env_kwargs) for _ in range(num_envs)]
        first = self._exchange({0: ("task_ids", None)}, RESET_TIMEOUT_MIN)[0]
        if isinstance(first, EnvError):
            self.close()
            raise EnvStartError(env_id, first.message)
        self.task_ids = first

    def _restart(self, slot: int) -> None:
        self._slots[slot].kill()
        self._slots[slot] = _Slot(self._ctx, self.env_id, self.env_kwargs)

    def _exchange(self, requests: dict[int, tuple[str, Any]], timeout: float) -> dict[int, Any]:
        """Sends every request, then collects each answer before its deadline (all slots run in parallel)."""
        results: dict[int, Any] = {}
        sent = []
        for slot, message in requests.items():
            try:
                self._slots[slot].conn.send(message)
                sent.append(slot)
            except (BrokenPipeError, OSError):
                results[slot] = EnvError(slot, "env worker had died; restarted it", False)
                self._restart(slot)
        deadline = time.monotonic() + timeout
        for slot in sent:
            conn = self._slots[slot].conn
            try:
                ready = conn.poll(max(0.0, deadline - time.monotonic()))
                if not ready:
                    results[slot] = EnvError(slot, f"no answer within {timeout:.1f} s; worker killed and restarted",
                                             True)
                    self._restart(slot)
                    continue
                status, value = conn.recv()
            except (EOFError, OSError):
                results[slot] = EnvError(slot, "env worker died; restarted it", False)
                self._restart(slot)
                continue
            results[slot] = value if status == "ok" else EnvError(slot, str(value), False)
        return results

    def _check(self, slots) -> None:
        if self._closed:
            raise RuntimeError("EnvPool is closed")
        bad = [s for s in slots if not (isinstance(s, int) and 0 <= s < self.num_envs)]
        if bad:
            raise ValueError(f"unknown slots {bad}; valid slots are 0..{self.num_envs - 1}")

    def _local(self, command: str, requests: dict[int, Any]) -> dict[int, Any]:
        results: dict[int, Any] = {}
        for slot, payload in requests.items():
            try:
                results[slot] = _call(self._envs[slot], command, payload)
            except Exception as err:
                results[slot] = EnvError(slot, f"{type(err).__name__}: {err}", False)
        return results

    def reset(self, requests: dict[int, dict]) -> dict[int, tuple[str, dict] | EnvError]:
        """Resets the given slots; each value holds ``reset`` keyword arguments (``seed``, ``options``)."""
        self._check(requests)
        if not self.processes:
            return self._local("reset", {s: dict(kw or {}) for s, kw in requests.items()})
        timeout = max(self.step_timeout, RESET_TIMEOUT_MIN)
        return self._exchange({s: ("reset", dict(kw or {})) for s, kw in requests.items()}, timeout)

    def step(self, actions: dict[int, str]) -> dict[int, tuple[str, float, bool, bool, dict] | EnvError]:
        """Steps the given slots with their actions, in parallel; a slow slot becomes a timed-out ``EnvError``."""
        self._check(actions)
        if not self.processes:
            return self._local("step", actions)
        return self._exchange({s: ("step", a) for s, a in actions.items()}, self.step_timeout)

    def close(self) -> None:
        """Stops the workers (or closes the in-process envs). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if not self.processes:
            for env in self._envs:
                env.close()
            return
        for slot in self._slots:
            try:
                slot.conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for slot in self._slots:
            slot.process.join(timeout=5)
            slot.kill()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
