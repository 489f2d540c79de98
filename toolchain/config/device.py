"""Device figures a target profile may declare ([device]): peak compute and memory bandwidth.

They feed the analytical latency estimate (toolchain/mobile/estimate.py), which is always
labelled "estimated" and never mixed with measured numbers.
"""

from __future__ import annotations

from pydantic import Field

from toolchain.config.base import Strict


class DeviceFigures(Strict):
    """Compute and memory figures of the cores the runtime uses (as configured by [runtime]).

    Intended as `TargetProfile.device` ([device] in a target TOML). Missing figures make the
    latency estimate unavailable rather than guessed.
    """

    int8_gops: float | None = Field(None, gt=0, description="peak int8 ops/s (1 MAC = 2 ops), in 1e9")
    fp32_gflops: float | None = Field(None, gt=0, description="peak fp32 FLOP/s, in 1e9")
    memory_gbps: float | None = Field(None, gt=0, description="DRAM bandwidth, GB/s (1e9 bytes)")
    op_overhead_us: float = Field(0.0, ge=0, description="fixed cost per op: dispatch, not compute")
    source: str = Field("", description="where the figures come from; say if they are derived, not measured")
