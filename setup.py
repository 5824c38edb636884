"""Packaging hook for the optional prebuilt kernels; all metadata lives in pyproject.toml.

A plain `pip install .` or `pip install -e .` compiles nothing and needs no compiler: the kernels are built on first
use by colbert/kernels/native.py (ninja JIT, cached), or the PyTorch reference is used. To prebuild `colbert._C`:

    COLBERT_BUILD_EXT=1 pip install --no-build-isolation .   # torch must already be installed (no isolation)
    python setup.py build_ext --inplace                       # in a checkout: writes colbert/_C*.so

CUDA sources (csrc/cuda/*.cu) are added when torch has CUDA and nvcc is found; COLBERT_BUILD_CUDA=0 skips them.
An in-place build shadows the JIT build: after editing csrc/, rebuild it or delete colbert/_C*.so.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithSources(build_py):
    """Ship csrc/ inside the wheel as colbert/csrc, so that an installed package can JIT-build its kernels.
    (An editable install finds csrc/ in the checkout instead.)"""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            shutil.copytree(ROOT / "csrc", Path(self.build_lib) / "colbert" / "csrc", dirs_exist_ok=True)


def wants_extension() -> bool:
    """Build colbert._C only when asked: COLBERT_BUILD_EXT=1, or an explicit `setup.py build_ext`."""
    return os.environ.get("COLBERT_BUILD_EXT", "0") == "1" or "build_ext" in sys.argv[1:]


def extension_setup() -> dict:
    """ext_modules and cmdclass for colbert._C; imports torch, so only called when building it."""
    import torch
    from torch.utils import cpp_extension

    cpp = ["csrc/ops.cpp", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc" / "cpu").glob("*.cpp"))]
    cuda = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    with_cuda = (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and os.environ.get("COLBERT_BUILD_CUDA", "1") != "0"
    )
    defines = ["-DCOLBERT_WITH_CUDA"] if with_cuda else []
    # without -fopenmp (the default) the kernels run their loops on torch's inter-op pool; COLBERT_KERNELS_OPENMP=1
    # builds them on OpenMP instead (csrc/cpu/parallel.h, colbert/kernels/native.py openmp_flags)
    openmp = ["-fopenmp"] if (os.environ.get("COLBERT_KERNELS_OPENMP", "0") == "1" and sys.platform.startswith("linux")
                              and "parallel backend: OpenMP" in torch.__config__.parallel_info()) else []
    make = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    extension = make(
        "colbert._C",
        cpp + (cuda if with_cuda else []),
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args={"cxx": ["-O3", *defines, *openmp], "nvcc": ["-O3", *defines]},
        extra_link_args=openmp,
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": cpp_extension.BuildExtension}}


options = extension_setup() if wants_extension() else {"cmdclass": {}}
options["cmdclass"]["build_py"] = BuildPyWithSources
setup(**options)
