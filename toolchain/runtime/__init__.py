"""The runtime seam: every place edgeopt runs a shipped artifact (benchmark, evaluation, memory
probe, gate, package verify, drift) goes through one `Runtime`, picked by a target profile's
`[runtime] engine`. docs/runtimes.md says how to add an engine.

Engines are imported only when a profile names them: `runtime_for` maps a name to its module, so
`edgeopt --help` and every command that does not use OpenVINO import none of it.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from toolchain.config.target import ENGINES, RuntimeOptions
from toolchain.runtime.base import Runtime, Session, TensorInfo

# engine name -> "module:class" implementing base.Runtime
_IMPLEMENTATIONS = {
    "onnxruntime": "toolchain.runtime.ort_runtime:OrtRuntime",
    "openvino": "toolchain.runtime.openvino_runtime:OpenVinoRuntime",
}
assert set(_IMPLEMENTATIONS) == set(ENGINES)

__all__ = ["ENGINES", "Runtime", "Session", "TensorInfo", "load_session", "require_engines", "runtime_for"]


def runtime_for(options: RuntimeOptions | None = None) -> Runtime:
    """The Runtime a profile's [runtime] table names (ONNX Runtime when `options` is None)."""
    options = options or RuntimeOptions()
    module, _, cls = _IMPLEMENTATIONS[options.engine].partition(":")
    return getattr(import_module(module), cls)(options)


def load_session(path: str | Path, options: RuntimeOptions | None = None) -> Session:
    """Open `path` with the runtime and session options `options` name; a missing or corrupt file
    (or one the runtime cannot compile) is a ModelLoadError (exit 2)."""
    return runtime_for(options).load(path)


def require_engines(profiles) -> None:
    """Import every engine these target profiles name, before a run writes anything: a missing
    extra is a BadInput (exit 2) naming `pip install 'edgeopt[EXTRA]'`, not a failure mid-run."""
    for profile in profiles:
        if profile.runtime.engine != "onnxruntime":
            runtime_for(profile.runtime).version()
