"""`agentrl learn --precision bf16` warns on a CPU that emulates bf16 (120x slower than fp32 there)."""

from __future__ import annotations

from pathlib import Path

from agentrl.learner_setup import cpu_bf16_is_native


def test_bf16_counts_as_native_only_with_the_cpu_flags_or_when_nothing_is_known(tmp_path: Path) -> None:
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("processor : 0\nflags : avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not cpu_bf16_is_native(avx2)
    assert cpu_bf16_is_native(sapphire)
    assert cpu_bf16_is_native(tmp_path / "missing")
