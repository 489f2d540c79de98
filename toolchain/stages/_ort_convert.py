"""Child process for `.ort` conversion; run by convert.to_ort as
`setarch <machine> -R python -m toolchain.stages._ort_convert SRC OUT_DIR PLATFORM`.

Measured with onnxruntime 1.32: converting one model three times in three processes gave three
different .ort files (same size; an offset table in the first ~1.4 KB is written in hash-map
order keyed by heap addresses). With address-space randomization off (`setarch -R`), a fixed
working directory and a fixed environment, the bytes are identical run after run, which makes
runs reproducible and resumable byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    src, out_dir, platform = Path(argv[0]), Path(argv[1]), argv[2]
    convert_onnx_models_to_ort(src, out_dir, [OptimizationStyle.Fixed], target_platform=platform)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
