"""Serve a model on an OpenAI-compatible endpoint at 127.0.0.1: `agentrl serve`."""

from __future__ import annotations

from dataclasses import dataclass

from agentrl.config import option, require


@dataclass
class Config:
    """Options of `agentrl serve`."""

    model: str = option("default", help="model: local folder, hub name, LoRA adapter folder, or `default`")
    port: int = option(8000, help="TCP port on 127.0.0.1 (0: any free port)")
    device: str = option("cpu", help="torch device (cpu, cuda)")
    dtype: str = option("float32", help="float32, bfloat16 or float16")
    name: str | None = option(None, help="model name reported to clients (default: --model)")
    max_new_tokens: int = option(256, help="default max_tokens of a request")
    batch_window: float = option(0.01, help="seconds to collect concurrent requests into one batch")
    prefix_cache: int = option(
        64, help="keep the KV caches of this many recent requests for prefix reuse (0: off)"
    )

    def __post_init__(self) -> None:
        require(0 <= self.port < 65536, f"`port` must be in [0, 65535], got {self.port}")
        require(
            self.dtype in ("float32", "bfloat16", "float16"),
            f"`dtype` must be float32/bfloat16/float16, got {self.dtype!r}",
        )
        require(self.max_new_tokens >= 1, f"`max_new_tokens` must be >= 1, got {self.max_new_tokens}")
        require(self.batch_window >= 0, f"`batch_window` must be >= 0, got {self.batch_window}")
        require(self.prefix_cache >= 0, f"`prefix_cache` must be >= 0, got {self.prefix_cache}")


def run(cfg: Config) -> int:
    from agentrl import agent_format
    from agentrl.backends.transformers_backend import TransformersBackend
    from agentrl.serve import ChatServer

    # the model folder's agent format, listed in /v1/models (a bad file fails here, before the model loads)
    fmt = agent_format.load(cfg.model)
    backend = TransformersBackend.from_pretrained(cfg.model, device=cfg.device, dtype=cfg.dtype,
                                                  carry_cache=cfg.prefix_cache > 0, keyless_cache=cfg.prefix_cache)
    server = ChatServer(
        backend,
        cfg.name or cfg.model,
        port=cfg.port,
        batch_window=cfg.batch_window,
        max_new_tokens=cfg.max_new_tokens,
        agent_config=None if fmt is None else fmt.to_dict(),
    )
    print(f"agentrl serve: listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0
