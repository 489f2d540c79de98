"""Child process for `.ort` conversion; run by convert.to_ort as
`setarch <machine> -R python -m toolchain.stages._ort_convert SRC OUT_DIR PLATFORM [DISABLED,...]`.

Measured with onnxruntime 1.32: converting one model three times in three processes gave three
different .ort files (same size; an offset table in the first ~1.4 KB is written in hash-map
order keyed by heap addresses). With address-space randomization off (`setarch -R`), a fixed
working directory and a fixed environment, the bytes are identical run after run, which makes
runs reproducible and resumable byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(src: Path, out_dir: Path, platform: str, disabled: list[str]) -> tuple[Path, Path]:
    """ONNX -> .ort as ORT's convert_onnx_models_to_ort does it (level "all", Fixed style, its
    platform rules), plus `disabled`: the profile's [runtime] disabled_optimizers, which that tool
    cannot take. Returns the .ort and its required-operators config."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    ort_file = out_dir / (src.stem + ".ort")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(ort_file)
    so.add_session_config_entry("session.save_model_format", "ORT")
    # ARM runs int8 QDQ nodes as int8 kernels; x86 keeps them as written (the tool's rule)
    so.add_session_config_entry("session.qdqisint8allowed", "1" if platform == "arm" else "0")
    # NCHWc layouts are x86-only: an .ort for ARM must not bake them in (the tool's rule)
    skipped = [*disabled, *(["NchwcTransformer"] if platform != "amd64" else [])]
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"], disabled_optimizers=skipped or None)
    config = out_dir / (src.stem + ".required_operators.config")
    create_config_from_models([ort_file], config, False)
    return ort_file, config


def main(argv: list[str]) -> int:
    src, out_dir, platform = Path(argv[0]), Path(argv[1]), argv[2]
    convert(src, out_dir, platform, [name for name in argv[3].split(",") if name] if len(argv) > 3 else [])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
