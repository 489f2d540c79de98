"""Convert an ONNX model into the artifact a target runs: optimized .onnx, or fixed-shape .ort.

- `.onnx` targets get ORT's *offline* optimization at the profile's offline level. We stop at
  "extended" by default: level "all" adds layout transforms (NCHWc) tuned to the build
  machine's vector width, which the runtime should redo on the serving CPU instead.
- `.ort` targets get fixed input shapes, then ORT's converter with `--target_platform`, which
  matters: an `.ort` converted for amd64 contains x86-only ops and fails on ARM. The converter
  also writes the required-operators config used to build a reduced ORT for the app.
- With `compact` (default) both first go through the compact stage (compact.py): short tensor
  names, no value_info, shared zero points; ORT computes bit-identical outputs, and the
  short->original name map ships beside the artifact as names.json.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolchain.config.stages import ConvertConfig


def fix_batch(proto, batch: int):
    """Return a copy of `proto` whose symbolic batch dimension is `batch` everywhere. Other symbolic
    dimensions (a sequence length) stay symbolic: the data decides them, not the profile."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    named = set()
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            continue
        if dims[0].dim_param:
            named.add(dims[0].dim_param)  # fixed wherever it appears, outputs and value_info too
        else:
            dims[0].dim_value = batch  # an unnamed dimension belongs to this input alone
    for param in sorted(named):
        make_dim_param_fixed(proto.graph, param, batch)
    fix_output_shapes(proto)
    return proto


def optimize_offline(src: Path, dest: Path, level: str, disabled: list[str] = ()) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    from toolchain.runtime.ort_runtime import disable_optimizers, graph_level

    opts.graph_optimization_level = graph_level(level)
    disable_optimizers(opts, list(disabled))
    opts.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def to_ort(src: Path, out_dir: Path, platform: str, disabled: list[str] = ()) -> tuple[Path, Path]:
    """Convert in a child process with address-space randomization off, so the .ort bytes are
    reproducible (see _ort_convert.py); without `setarch` it converts in-process (not reproducible).
    `disabled`: ORT optimizers the conversion skips (the profile's [runtime] disabled_optimizers)."""
    import os
    import platform as host
    import shutil as sh
    import subprocess

    setarch = sh.which("setarch")
    if setarch is None:
        from toolchain.stages._ort_convert import convert as convert_here

        with contextlib.redirect_stdout(sys.stderr):
            return convert_here(src, out_dir, platform, list(disabled))
    # Same relative paths, cwd layout and environment every time: nothing run-specific may
    # reach the converter's allocation pattern.
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C", "PYTHONHASHSEED": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [setarch, host.machine(), "-R", sys.executable, "-m", "toolchain.stages._ort_convert",
           src.name, out_dir.name, platform, ",".join(disabled)]
    proc = subprocess.run(cmd, cwd=src.parent, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f".ort conversion failed: {proc.stderr.strip().splitlines()[-1:]}")
    return out_dir / (src.stem + ".ort"), out_dir / (src.stem + ".required_operators.config")


def convert(src: Path, cfg: ConvertConfig, out_dir: Path, stamp: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the target artifact for `src` into `out_dir`; returns the produced file names.

    `stamp` (metadata_props) is re-applied to .onnx outputs: ORT's offline optimizer does not
    promise to keep metadata, and the packaged bytes must equal the benchmarked bytes. An .ort
    carries the metadata of the ONNX it is converted from, so that ONNX is stamped first.
    """
    import onnx

    from toolchain.package.metadata import stamp_onnx_metadata
    from toolchain.stages.compact import CompactConfig, compact

    proto = onnx.load(str(src))
    if cfg.shapes == "fixed":
        proto = fix_batch(proto, cfg.fixed_batch)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        onnx.save(proto, str(staged))
        facts: dict[str, Any] = {"extra_files": {}}

        def compacted(path: Path) -> Path:
            if not cfg.compact:
                return path
            dest = Path(tmp) / "compacted.onnx"  # beside ort/: to_ort runs with the model's dir as cwd
            facts["compact"] = compact(path, CompactConfig(disabled_optimizers=cfg.disabled_optimizers), dest, names=out_dir / "names.json")
            if facts["compact"]["names_file"]:
                facts["extra_files"]["names.json"] = "names.json"
            return dest

        if cfg.format == "onnx":
            optimized = Path(tmp) / "optimized.onnx"
            optimize_offline(staged, optimized, cfg.offline_optimization_level, cfg.disabled_optimizers)
            # Compact after the optimizer (it would write long names and value_info back), before
            # the stamp (the stamp must be the last word on metadata).
            stamp_onnx_metadata(compacted(optimized), out_dir / "model.onnx", stamp or {})
            return {"artifact": "model.onnx", **facts}
        ort_dir = Path(tmp) / "ort"
        ort_dir.mkdir()
        # The converter re-optimizes but keeps our short names: measured on shapes-mobilenet's
        # int8 .ort, 956,704 -> 900,720 bytes.
        ready = compacted(staged)
        if stamp:  # the .ort keeps the ONNX metadata_props; a source not stamped upstream gets it here
            # Same file name and folder as unstamped: the converter's bytes follow its input's path.
            os.replace(stamp_onnx_metadata(ready, Path(tmp) / "stamped.onnx", stamp), ready)
        ort_file, config = to_ort(ready, ort_dir, cfg.platform, cfg.disabled_optimizers)
        shutil.copyfile(ort_file, out_dir / "model.ort")
        # The converter's config starts with comments naming temp paths; keep only the operator
        # lines so the file is reproducible and says nothing about the build machine.
        ops = [line for line in config.read_text().splitlines() if line and not line.startswith("#")]
        (out_dir / "required_operators.config").write_text("\n".join(ops) + "\n")
        facts["extra_files"]["required_operators.config"] = "required_operators.config"
        return {"artifact": "model.ort", **facts}
