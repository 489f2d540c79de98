"""Run ARM artifacts on the official aarch64 onnxruntime under qemu-user, and compare with x86.

Only numpy is imported here; onnx/onnxruntime load inside the functions that need them.
"""

from toolchain.arm.emulator import (
    ArmEnv,
    ArmEnvError,
    ArmEnvSpec,
    ArmToolMissing,
    default_cache_dir,
    ensure_arm_env,
)
from toolchain.arm.parity import (
    ArmParityReport,
    ArmRunError,
    OutputParity,
    check_arm_parity,
    compare_outputs,
    run_on_arm,
    run_on_host,
    tolerance_for,
)

__all__ = [
    "ArmEnv",
    "ArmEnvError",
    "ArmEnvSpec",
    "ArmParityReport",
    "ArmRunError",
    "ArmToolMissing",
    "OutputParity",
    "check_arm_parity",
    "compare_outputs",
    "default_cache_dir",
    "ensure_arm_env",
    "run_on_arm",
    "run_on_host",
    "tolerance_for",
]
