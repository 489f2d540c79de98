"""What a runtime must offer edgeopt. A Session deliberately keeps ONNX Runtime's small calling
convention (`get_inputs()`, `get_outputs()`, `run(names, feeds)`): every measuring helper
(bench/session.py predict, fidelity, golden files) already speaks it, so a new engine adapts
its own API once instead of every caller learning a second one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from toolchain.config.target import RuntimeOptions


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: symbolic dims as a str or None, element type as ONNX Runtime
    spells it ("tensor(float)"), so bench/session.py's numpy_dtype reads every engine's."""

    name: str
    shape: list
    type: str


@runtime_checkable
class Session(Protocol):
    def get_inputs(self) -> list: ...

    def get_outputs(self) -> list: ...

    def run(self, output_names: list[str] | None, feeds: dict) -> list: ...


@runtime_checkable
class Runtime(Protocol):
    name: str
    options: RuntimeOptions

    def version(self) -> str:
        """The engine's version string (recorded in package manifests and benchmark results)."""

    def load(self, model: str | Path | bytes) -> Session:
        """A ready session for `model` (a path or the file's bytes) with this profile's options;
        ModelLoadError (exit 2) when the file is missing, corrupt or cannot be compiled."""

    def settings(self) -> dict:
        """The session or compile settings an app must use to get the measured behaviour."""

    def optimized_op_types(self, model: Path) -> Counter:
        """Op types of the graph the engine actually executes after its own optimizations."""

    def optimized_op_counts(self, model: Path) -> dict[str, int] | None:
        """total / fp32_compute / quantize_dequantize / int8_kernels of that graph (None: unknown)."""

    def memprobe_args(self) -> list[str]:
        """bench/memprobe.py options that load the model the same way in a fresh process."""

    def with_threads(self, threads: int) -> Runtime:
        """The same runtime at another intra-op thread count (thread sweeps)."""
