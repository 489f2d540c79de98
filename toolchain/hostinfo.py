"""What machine a measurement was taken on: reported beside every number, and part of the
benchmark cache key (a latency measured on another CPU is not this CPU's latency)."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# The vector extensions int8 kernels depend on: x86 `flags`, aarch64 `Features` (asimddp = SDOT,
# i8mm = SMMLA).
INT8_ISA = frozenset({"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
# x86 int8 dot products that accumulate u8 x s8 in 32 bits. Without one, ORT's U8S8 GEMM uses
# VPMADDUBSW, whose pairwise s16 sums saturate unless weights are 7-bit (reduce_range).
VNNI_ISA = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# bf16 compute: OpenVINO's CPU plugin runs bf16 only with one of these (else it falls back to f32).
BF16_ISA = frozenset({"avx512_bf16", "amx_bf16"})


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU's name and feature flags from /proc/cpuinfo text. x86 names them `model name` and
    `flags`; aarch64 kernels write `Features` and often no model name (then `CPU part`)."""
    model, flags, part = "unknown", set(), None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key in ("model name", "Model name", "Hardware") and model == "unknown" and value:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "CPU part" and part is None:
            part = value
    if model == "unknown" and part is not None:
        model = f"ARM CPU part {part}"
    return model, flags


@lru_cache(maxsize=1)
def host_info() -> dict[str, object]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model, flags = parse_cpuinfo(f.read())
    except OSError:
        model, flags = "unknown", set()
    return {
        "cpu": model,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "isa": sorted(flags & (INT8_ISA | BF16_ISA)),
        "system": platform.system(),
    }


def has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX)."""
    return bool(BF16_ISA & set(host_info()["isa"]))


def u8s8_saturates(host: dict[str, object]) -> bool:
    """Whether `host` (a host_info() record) is an x86 CPU whose int8 GEMM can saturate on full-range
    U8S8 weights: measured on an AVX2-only EPYC, a cpu-server QDQ model was 1.8 off fp32 where its
    QDQ math was 0.1 off, and a dynamic-int8 encoder's logits fell to -4.8 dB SQNR."""
    return host.get("machine") in ("x86_64", "AMD64") and not VNNI_ISA & set(host.get("isa") or ())
