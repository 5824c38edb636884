"""Load the compiled kernels in tiers: prebuilt `colbert._C` -> ninja JIT build of csrc/ -> the PyTorch reference.

Nothing happens at import. The first kernel call (or `load()`, or `backend_info()`) reads `COLBERT_KERNELS`, loads
once under a lock, and registers `torch.ops.colbert.*`. Call `load()` in the parent process before starting workers
so that they find the build cached. `has(op, device)` then answers from a dict: is there a native kernel for this op
on this device type? Everything else falls back to `colbert.kernels.reference`.

A first build (~30 s, once per torch version and source change) and every fallback to the reference in `auto` mode
give a `colbert.errors.KernelWarning` (`warnings.warn`, so it reaches stderr by default): the reference kernels are
several times slower, which a user should know and can fix (install ninja and a C++ compiler) or accept
(`COLBERT_KERNELS=reference`, which warns about nothing). Silence them with
`warnings.filterwarnings("ignore", category=KernelWarning)`.

`COLBERT_KERNELS`:

| value | meaning |
|---|---|
| `auto` (default) | native where it loads, else the reference, with a `KernelWarning` saying why |
| `native` | as auto, but raise RuntimeError if no native library loads |
| `reference` | never load or build anything |
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from colbert.errors import KernelWarning

logger = logging.getLogger(__name__)

MODES = ("auto", "native", "reference")
OPS = (
    "compress_residuals",
    "decompress_residuals",
    "segmented_maxsim",
    "centroid_maxsim",
    "gather_segments",
    "decompress_maxsim",
    "decompress_maxsim_rows",
    "mmr",
    "refine_codes",
)
DEVICE_KEYS = {"cpu": "CPU", "cuda": "CUDA"}  # device type -> dispatch key the library may register
EXTENSION_NAME = "colbert_kernels"
SOURCE_SUFFIXES = (".cpp", ".cu", ".h", ".cuh")
FAILED_MARKER = "BUILD_FAILED.txt"  # written into the build directory with the compiler's output
BUILT_MARKER = "BUILT"  # written after a build loaded: later processes load the library without ninja or its lock
CACHE_LAYOUT = "s1"  # build directories hold their own copy of the sources (stable_sources); older ones did not
BUILD_LOCK = "lock"  # torch.utils.cpp_extension's lock file in the build directory, while a process builds there
BUILD_LOCK_WAIT_S = 300.0  # how long to wait for another process's build before using the reference kernels
FALLBACK_ADVICE = ("the pure-PyTorch kernels are used instead (slower). Install ninja and a C++ compiler for the "
                   "native ones, or set COLBERT_KERNELS=reference to choose the PyTorch ones without this warning")


@dataclass
class Backend:
    """What `load()` found: where the kernels came from and, per (op, device type), native or the reason not."""

    mode: str
    source: str
    native: dict[tuple[str, str], bool] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)


_lock = threading.Lock()
_backend: Backend | None = None


def kernels_mode() -> str:
    """`COLBERT_KERNELS`, checked: one of auto, native, reference (default auto)."""
    raw = os.environ.get("COLBERT_KERNELS", "auto")
    mode = raw.strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"COLBERT_KERNELS={raw!r} is not one of {', '.join(MODES)}; unset it or pick one of these.")
    return mode


def csrc_dir() -> Path | None:
    """The C++/CUDA sources: `colbert/csrc` in an installed package that ships them, else `csrc/` of the checkout."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "csrc", here.parents[2] / "csrc"):
        if (candidate / "ops.cpp").is_file():
            return candidate
    return None


def source_files(csrc: Path, with_cuda: bool) -> list[Path]:
    """The translation units to compile: ops.cpp, cpu/*.cpp and, with CUDA, cuda/*.cu."""
    files = [csrc / "ops.cpp", *sorted((csrc / "cpu").glob("*.cpp"))]
    return files + sorted((csrc / "cuda").glob("*.cu")) if with_cuda else files


def hash_sources(csrc: Path) -> str:
    """A short digest of every source and header under csrc/, so an edit gets a fresh build directory."""
    digest = hashlib.sha256()
    for path in sorted(p for p in csrc.rglob("*") if p.suffix in SOURCE_SUFFIXES):
        digest.update(path.relative_to(csrc).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir(torch_version: str, cuda_version: str | None, source_hash: str) -> Path:
    """Build directory keyed by torch, CUDA, Python and the sources: $TORCH_EXTENSIONS_DIR/colbert/... if set, else
    ~/.cache/colbert/kernels/... (honouring $XDG_CACHE_HOME)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        root = Path(os.environ["TORCH_EXTENSIONS_DIR"]) / "colbert"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "colbert" / "kernels"
    cuda = f"cu{cuda_version}" if cuda_version else "cpu"
    python = f"py{sys.version_info[0]}{sys.version_info[1]}"
    return root / f"torch{torch_version.replace('+', '_')}-{cuda}-{python}-{source_hash}-{CACHE_LAYOUT}"


def build_with_cuda() -> tuple[bool, str]:
    """Whether to compile cuda/*.cu, and why not when we don't. Reads torch.version.cuda; never touches a GPU."""
    if torch.version.cuda is None:
        return False, "this torch is built without CUDA"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return False, f"torch has CUDA {torch.version.cuda} but no CUDA toolkit (nvcc, CUDA_HOME) was found"
    return True, ""


def jit_build(csrc: Path, directory: Path, with_cuda: bool) -> None:
    """Compile csrc/ with ninja into `directory` (reused when already built) and load it into this process."""
    from torch.utils import cpp_extension

    directory.mkdir(parents=True, exist_ok=True)
    csrc = stable_sources(csrc, directory)
    defines = ["-DCOLBERT_WITH_CUDA"] if with_cuda else []
    openmp = openmp_flags()
    cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(p) for p in source_files(csrc, with_cuda)],
        extra_cflags=["-O3", *defines, *openmp],
        extra_ldflags=openmp,
        extra_cuda_cflags=["-O3", *defines],
        extra_include_paths=[str(csrc)],
        build_directory=str(directory),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=False,
    )


def openmp_flags() -> list[str]:
    """`-fopenmp` when asked (`COLBERT_KERNELS_OPENMP=1`), on Linux, where torch runs its parallel_for on OpenMP.

    Without it (the default) the kernels' parallel loops run on torch's inter-op thread pool (`colbert::parallel_for`
    in csrc/cpu/parallel.h); with it, on OpenMP (`at::parallel_for`), whose per-caller teams spin after each loop.
    Either way on `torch.get_num_threads()` threads. Linked with `-fopenmp` the library needs `libgomp.so.1`, the
    soname torch's wheels bundle and load first, so the process keeps one OpenMP runtime. csrc/README.md has why
    OpenMP is not the default.
    """
    if os.environ.get("COLBERT_KERNELS_OPENMP", "0") != "1":
        return []
    if not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return []
    return ["-fopenmp"]


def stable_sources(csrc: Path, directory: Path) -> Path:
    """A copy of csrc/ inside the build directory, made once. The directory is keyed by the sources' hash, so every
    checkout or venv with the same sources builds from the same paths: ninja then reuses the build instead of
    rebuilding each time another checkout loads (its build file names the source paths)."""
    copy = directory / "src"
    if not copy.is_dir():
        staging = directory / f"src.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(csrc, staging, ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.so"))
        try:
            os.rename(staging, copy)
        except OSError:  # another process made it first (same sources, same hash)
            shutil.rmtree(staging, ignore_errors=True)
    return copy


def wait_for_other_build(directory: Path, limit: float) -> bool:
    """Wait up to `limit` seconds while another process builds in `directory`; False if its lock is still there."""
    lock, deadline = directory / BUILD_LOCK, time.monotonic() + limit
    while lock.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def load_prebuilt() -> bool:
    """Load the `colbert._C` library built by setup.py, if there is one that loads with this torch."""
    spec = importlib.util.find_spec("colbert._C")
    if spec is None or spec.origin is None:
        logger.info("No prebuilt colbert._C; trying a JIT build of csrc/")
        return False
    try:
        torch.ops.load_library(spec.origin)
    except OSError as e:  # built against another torch: an ABI mismatch shows up as an undefined symbol
        _warn(f"Prebuilt {spec.origin} does not load ({e}); rebuild it with `python setup.py build_ext --inplace`. "
              "Trying a JIT build of csrc/ instead.")
        return False
    return True


def load_native(mode: str) -> str:
    """Register torch.ops.colbert.* if we can; return where the kernels came from, for backend_info()."""
    if mode == "reference":
        return "reference (COLBERT_KERNELS=reference)"
    if load_prebuilt():
        return "prebuilt colbert._C"
    csrc = csrc_dir()
    missing = missing_toolchain(csrc)
    if missing is not None:  # expected on many laptops, so INFO rather than WARNING
        if mode == "native":
            raise RuntimeError(f"COLBERT_KERNELS=native but the kernels cannot be built: {missing}.")
        _warn(f"Native kernels unavailable ({missing}): {FALLBACK_ADVICE}.")
        return f"reference ({missing})"
    assert csrc is not None  # missing_toolchain said so otherwise
    return build_tier(mode, csrc)


def missing_toolchain(csrc: Path | None) -> str | None:
    """Why a JIT build cannot even start (no sources, no ninja, no compiler), or None."""
    if csrc is None:
        return "no csrc/ sources beside the package"
    if not _ninja_available():
        return "ninja not found (pip install ninja)"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler found (set CXX or install g++/clang++)"
    return None


def build_tier(mode: str, csrc: Path) -> str:
    """JIT-build csrc/ (or reuse the cached build); on failure log one WARNING with the compiler's output, leave a
    marker so that later processes do not rebuild in vain, and fall back (or raise when COLBERT_KERNELS=native)."""
    with_cuda, why_not = build_with_cuda()
    if not with_cuda:
        logger.info("Building the CPU kernels only: %s", why_not)
    flavour = "-omp" if openmp_flags() else ""  # a build with OpenMP gets its own directory
    directory = cache_dir(torch.__version__, torch.version.cuda if with_cuda else None, hash_sources(csrc) + flavour)
    failed = directory / FAILED_MARKER
    if failed.is_file():
        if mode == "native":
            raise RuntimeError(f"COLBERT_KERNELS=native but csrc/ did not build before; see {failed} (delete it "
                               "to retry)")
        _warn(f"The native kernels failed to build before (see {failed}; delete it to retry): {FALLBACK_ADVICE}.")
        return f"reference (build failed before, see {failed})"
    if load_built(directory):
        return f"JIT build of csrc/ in {directory} (cached)"
    if not wait_for_other_build(directory, BUILD_LOCK_WAIT_S):  # torch itself would wait forever
        lock = directory / BUILD_LOCK
        if mode == "native":
            raise RuntimeError(f"COLBERT_KERNELS=native but {lock} has been held for more than "
                               f"{BUILD_LOCK_WAIT_S:g} s; if no build is running, a killed one left it: delete it")
        _warn(f"{lock} has been held by another build for more than {BUILD_LOCK_WAIT_S:g} s (if no build is "
              f"running, a killed one left it: delete it): {FALLBACK_ADVICE}.")
        return "reference (another process's build lock is held)"
    if not (directory / f"{EXTENSION_NAME}.so").is_file():
        _warn(f"Compiling the native kernels, once (~30 s), into {directory}; later runs reuse them.")
    try:
        jit_build(csrc, directory, with_cuda)
    except Exception as e:  # any build failure: logged with the compiler's output, or raised when forced
        if mode == "native":
            raise RuntimeError(f"COLBERT_KERNELS=native but csrc/ did not build: {e}") from e
        _warn(f"The native kernels failed to build: {FALLBACK_ADVICE}. The compiler said:\n{e}")
        directory.mkdir(parents=True, exist_ok=True)
        failed.write_text(f"{e}\n")
        return f"reference (build failed, see {failed})"
    (directory / BUILT_MARKER).write_text(f"{EXTENSION_NAME}.so\n")
    return f"JIT build of csrc/ in {directory}"


def load_built(directory: Path) -> bool:
    """Load a library an earlier process built and loaded in `directory` (BUILT_MARKER), without running ninja.

    torch's loader takes the directory's lock file even when there is nothing to build, so a process killed in that
    moment (a crash test, a user's kill -9) left a lock that made every later process wait; a finished build needs
    neither. The directory is keyed by the sources' hash, so its library is never rebuilt in place.
    """
    library = directory / f"{EXTENSION_NAME}.so"
    if not ((directory / BUILT_MARKER).is_file() and library.is_file()):
        return False
    try:
        torch.ops.load_library(str(library))
    except OSError as e:  # damaged: build again
        logger.warning("Could not load the cached kernels %s (%s); building them again", library, e)
        (directory / BUILT_MARKER).unlink(missing_ok=True)
        return False
    return True


def _warn(message: str) -> None:
    warnings.warn(message, KernelWarning, stacklevel=2)


def _ninja_available() -> bool:
    from torch.utils import cpp_extension

    return cpp_extension.is_ninja_available()


def _describe(mode: str, source: str) -> Backend:
    """Ask the dispatcher which (op, device type) pairs have a kernel, and say why the others do not."""
    backend = Backend(mode=mode, source=source)
    loaded = not source.startswith("reference")
    for op in OPS:
        for device_type, key in DEVICE_KEYS.items():
            # the dispatcher's own record of registered kernels (what torch.library consults too)
            has = loaded and torch._C._dispatch_has_kernel_for_dispatch_key(f"colbert::{op}", key)
            backend.native[(op, device_type)] = has
    for (op, device_type), has in backend.native.items():
        if has:
            reason = "native"
        elif not loaded:
            reason = source
        elif device_type == "cuda" and torch.version.cuda is None:
            reason = "reference (this torch is built without CUDA)"
        elif any(backend.native[(other, device_type)] for other in OPS):
            reason = f"reference (csrc/ has no {DEVICE_KEYS[device_type]} kernel for this op)"
        else:
            reason = f"reference (the library was built without {DEVICE_KEYS[device_type]} sources, e.g. no nvcc)"
        backend.reasons[(op, device_type)] = reason
    return backend


def load() -> Backend:
    """Load the kernels once (thread-safe) and return what was found. Raises ValueError for a bad COLBERT_KERNELS
    and RuntimeError when COLBERT_KERNELS=native cannot be honoured; both are raised again on the next call."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                mode = kernels_mode()
                _backend = _describe(mode, load_native(mode))
    return _backend


def has(op: str, device: torch.device) -> bool:
    """True when `torch.ops.colbert.<op>` has a native kernel for tensors on `device`."""
    backend = _backend if _backend is not None else load()
    return backend.native.get((op, device.type), False)
