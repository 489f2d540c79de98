"""Build and cache an aarch64 CPython + official onnxruntime wheel, run under qemu-user.

Layout of one environment (everything inside `<cache>/env-<key>/`):

    root/                      minimal Debian arm64 tree (debootstrap --foreign, never chrooted)
    root/proc/cpuinfo          a *file*: fake aarch64 cpuinfo, see _CPUINFO
    root/opt/edgeopt-site/     onnxruntime + numpy aarch64 wheels, unpacked
    env.json                   written last; an env without it is never trusted

We run `qemu-aarch64-static -L root root/usr/bin/python3.X ...` rather than chroot: qemu's
`-L` prefix makes every absolute path the guest opens resolve inside `root` first (then the
host), so no root rights, binfmt_misc or bind mounts are needed to *run*, and the guest can
read model and input files at their host paths. Only the build (debootstrap) needs root.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from toolchain.config.base import Strict
from toolchain.errors import BadInput, EdgeoptError
from toolchain.fsio import atomic_dir, canonical_json, sha256_json, write_json_atomic

# Bump when the on-disk layout or build recipe changes: old environments then get a new key
# and are rebuilt instead of being trusted with a layout this code no longer expects.
ENV_FORMAT = 1
RECORD = "env.json"
SITE = "opt/edgeopt-site"
INSTALL_HINT = "install them with: apt-get update && apt-get install -y qemu-user-static debootstrap"

# bookworm: glibc 2.36 satisfies the manylinux_2_28 tag of current aarch64 onnxruntime wheels,
# and its python3.11 matches the minor version edgeopt itself is developed on.
DEFAULT_SUITE = "bookworm"
# Cortex-A76 is the big core of most 2019-2023 Android phones (Snapdragon 855..8 Gen 1 era mid
# range). qemu's default `max` CPU advertises SVE/SME that no phone core of that era has, which
# would steer MLAS onto kernels a phone never runs.
DEFAULT_CPU = "cortex-a76"

# Only what the guest needs beyond debootstrap's "required" set: CPython with its stdlib, and
# the C++ runtime onnxruntime links against.
_GUEST_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")

# (midr part number, qemu cpu names). The onnxruntime aarch64 wheel initialises pytorch/cpuinfo
# at import, which parses /proc/cpuinfo; under qemu-user that is the *host's* x86 file and the
# import segfaults. A real file at root/proc/cpuinfo wins through `-L`. The part number must
# match the emulated core so cpuinfo's microarchitecture guess (kernel choice) matches HWCAPs.
_CPU_PARTS = {"cortex-a53": "0xd03", "cortex-a72": "0xd08", "cortex-a76": "0xd0b", "neoverse-n1": "0xd0c"}
_V80_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82_FEATURES = _V80_FEATURES + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
_CPU_FEATURES = {
    "cortex-a53": _V80_FEATURES,
    "cortex-a72": _V80_FEATURES,
    "cortex-a76": _V82_FEATURES,
    "neoverse-n1": _V82_FEATURES,
}


class ArmToolMissing(BadInput):
    """qemu-user-static / debootstrap is not installed, or the build lacks root rights."""


class ArmEnvError(EdgeoptError):
    """Building or starting the emulated environment failed (network, mirror, broken cache)."""


class ArmEnvSpec(Strict):
    """Everything that decides the content of an environment; its hash names the cache entry."""

    format: int = ENV_FORMAT
    suite: str = DEFAULT_SUITE
    cpu: Literal["cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1"] = DEFAULT_CPU
    onnxruntime: str
    numpy: str

    def key(self) -> str:
        return sha256_json(self.model_dump())[:16]


@dataclass(frozen=True)
class ArmEnv:
    spec: ArmEnvSpec
    dir: Path
    qemu: Path
    python_rel: str  # guest python, relative to root, e.g. "usr/bin/python3.11"
    build_seconds: float | None  # None on a cache hit

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def command(self, *args: str) -> list[str]:
        """argv that runs the guest python with `args` under qemu-user."""
        return [
            str(self.qemu),
            "-L",
            str(self.root),
            "-cpu",
            self.spec.cpu,
            str(self.root / self.python_rel),
            "-s",
            "-B",
            *args,
        ]

    def environ(self) -> dict[str, str]:
        # A clean environment: the host's PYTHONPATH/LD_LIBRARY_PATH point at x86 files that
        # the guest would try (and fail) to load. qemu passes the host env to the guest as-is.
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(self.root / SITE),
            "OMP_NUM_THREADS": "1",
        }


def default_cache_dir() -> Path:
    """$EDGEOPT_CACHE_DIR/arm if set (it is edgeopt's cache root), else ~/.cache/edgeopt/arm."""
    base = os.environ.get("EDGEOPT_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "edgeopt") / "arm"


def host_versions() -> tuple[str, str]:
    """The guest gets the same onnxruntime and numpy as the host, so a difference is the CPU's."""
    try:
        return metadata.version("onnxruntime"), metadata.version("numpy")
    except metadata.PackageNotFoundError as err:
        raise BadInput(f"{err.name} is not installed on the host", f"pip install {err.name}") from None


def find_qemu() -> Path:
    found = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if not found:
        raise ArmToolMissing("qemu-aarch64-static not found on PATH", INSTALL_HINT)
    return Path(found)


def ensure_arm_env(
    cache_dir: Path | None = None,
    *,
    spec: ArmEnvSpec | None = None,
    rebuild: bool = False,
) -> ArmEnv:
    """Return a ready environment, building it (about a minute, once) if it is not cached."""
    if spec is None:
        ort_version, np_version = host_versions()
        spec = ArmEnvSpec(onnxruntime=ort_version, numpy=np_version)
    qemu = find_qemu()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = cache / f"env-{spec.key()}"
    if not rebuild and (env := _load(dest, spec, qemu)) is not None:
        return env
    cache.mkdir(parents=True, exist_ok=True)
    # One builder at a time per cache: a second process waits, then finds the finished env.
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rebuild and (env := _load(dest, spec, qemu)) is not None:
            return env
        _check_build_tools()
        _remove_stale_builds(cache)
        start = time.perf_counter()
        with atomic_dir(dest) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it 0700; a cache built by root serves other users
            python_rel = _build(tmp, spec, qemu)
            seconds = round(time.perf_counter() - start, 1)
            record = {"spec": spec.model_dump(), "python": python_rel, "build_seconds": seconds}
            write_json_atomic(tmp / RECORD, record)  # last: its presence means "complete"
    return ArmEnv(spec=spec, dir=dest, qemu=qemu, python_rel=python_rel, build_seconds=seconds)


def _remove_stale_builds(cache: Path) -> None:
    # Called with the build lock held, so any temp dir left is from a builder that was killed:
    # it was never renamed into place (never trusted), it only wastes ~300 MB.
    for stale in cache.glob(".env-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _load(dest: Path, spec: ArmEnvSpec, qemu: Path) -> ArmEnv | None:
    try:
        record = json.loads((dest / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if canonical_json(record.get("spec")) != canonical_json(spec.model_dump()):
        return None
    python_rel = record.get("python", "")
    if not (dest / "root" / python_rel).is_file():
        return None
    return ArmEnv(spec=spec, dir=dest, qemu=qemu, python_rel=python_rel, build_seconds=None)


def _check_build_tools() -> None:
    if not shutil.which("debootstrap"):
        raise ArmToolMissing("debootstrap not found on PATH", INSTALL_HINT)
    if not shutil.which("dpkg-deb"):
        raise ArmToolMissing("dpkg-deb not found on PATH (needs a Debian-based host)", INSTALL_HINT)
    if os.geteuid() != 0:
        raise ArmToolMissing(
            "building the arm64 root needs root rights (debootstrap)",
            "run the first build as root, or use a cache built by root via EDGEOPT_CACHE_DIR",
        )


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ArmEnvError(
            f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}",
            "check network access to the Debian mirror and PyPI, then retry",
        )
    return proc


def _build(tmp: Path, spec: ArmEnvSpec, qemu: Path) -> str:
    root = tmp / "root"
    _debootstrap(root, spec.suite)
    python_rel = _guest_python(root)
    _install_wheels(tmp, root, spec, python_rel)
    _write_cpuinfo(root, spec.cpu)
    _prune(root)
    env = ArmEnv(spec=spec, dir=tmp, qemu=qemu, python_rel=python_rel, build_seconds=None)
    # Smoke test before the env is trusted: the import is exactly what segfaults when the
    # cpuinfo trap is not handled.
    _run(
        env.command("-c", "import onnxruntime, numpy; assert onnxruntime.__version__"),
        "importing onnxruntime under qemu",
        env=env.environ(),
        timeout=600,
    )
    return python_rel


def _debootstrap(root: Path, suite: str) -> None:
    # --foreign only downloads and unpacks the "required" set (no guest code runs, so no
    # chroot/binfmt). Packages named by --include are downloaded but not unpacked: we unpack
    # them ourselves below. The mirror is debootstrap's default; DEBOOTSTRAP_MIRROR overrides.
    argv = [
        "debootstrap",
        "--foreign",
        "--arch=arm64",
        "--variant=minbase",
        f"--include={','.join(_GUEST_PACKAGES)}",
        suite,
        str(root),
    ]
    if mirror := os.environ.get("DEBOOTSTRAP_MIRROR"):
        argv.append(mirror)
    _run(argv, "debootstrap", timeout=1800)
    debpaths = dict(
        line.split(" ", 1) for line in (root / "debootstrap/debpaths").read_text().splitlines() if line
    )
    for pkg in (root / "debootstrap/base").read_text().split():
        _extract_deb(root / debpaths[pkg].strip().lstrip("/"), root)
    # debootstrap --foreign makes root/proc a symlink to the host's /proc; qemu's -L lookup
    # would follow it back to the x86 cpuinfo. It must be a real directory.
    proc = root / "proc"
    if proc.is_symlink() or proc.is_file():
        proc.unlink()
    proc.mkdir(exist_ok=True)


def _extract_deb(deb: Path, root: Path) -> None:
    # `dpkg-deb -x` replaces the merged-/usr symlinks (lib -> usr/lib) with real directories,
    # which hides the dynamic loader; tar's --keep-directory-symlink keeps them.
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(
        ["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
        check=False,
        stdin=fsys.stdout,
        capture_output=True,
        text=True,
    )
    fsys.stdout.close()
    if fsys.wait() != 0 or tar.returncode != 0:
        raise ArmEnvError(
            f"unpacking {deb.name} failed: {tar.stderr.strip()[-200:]}",
            "delete the cache directory and retry",
        )


def _guest_python(root: Path) -> str:
    found = sorted(
        p.name for p in (root / "usr/bin").glob("python3.*") if re.fullmatch(r"python3\.\d+", p.name)
    )
    if not found:
        raise ArmEnvError("no python3.X in the arm64 root", "check _GUEST_PACKAGES for the chosen suite")
    return f"usr/bin/{found[-1]}"


def _install_wheels(tmp: Path, root: Path, spec: ArmEnvSpec, python_rel: str) -> None:
    py = python_rel.rsplit("python", 1)[1]  # "3.11"
    wheels = tmp / "wheels"
    # manylinux_2_28 also admits older manylinux2014 wheels; --no-deps: the guest only imports
    # onnxruntime's inference API, which needs numpy and nothing else.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_aarch64",
            "--implementation",
            "cp",
            "--python-version",
            py,
            "-d",
            str(wheels),
            f"onnxruntime=={spec.onnxruntime}",
            f"numpy=={spec.numpy}",
        ],
        "pip download of the aarch64 wheels",
        timeout=1800,
    )
    site = root / SITE
    site.mkdir(parents=True)
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
    shutil.rmtree(wheels)


def _write_cpuinfo(root: Path, cpu: str) -> None:
    part = _CPU_PARTS[cpu]
    features = _CPU_FEATURES[cpu]
    block = (
        f"processor\t: {{n}}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {part}\nCPU revision\t: 0\n\n"
    )
    # Two cores: the guest sees the host's /sys CPU count (2 here); a mismatch confuses cpuinfo.
    n = max(1, os.cpu_count() or 1)
    (root / "proc" / "cpuinfo").write_text("".join(block.format(n=i) for i in range(n)))


def _prune(root: Path) -> None:
    # Downloaded .debs, docs and locales are dead weight in a cache that only runs python.
    # gconv is glibc's iconv modules (CPython has its own codecs).
    for rel in (
        "var/cache",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "usr/share/info",
        "usr/lib/aarch64-linux-gnu/gconv",
        "debootstrap",
    ):
        shutil.rmtree(root / rel, ignore_errors=True)
