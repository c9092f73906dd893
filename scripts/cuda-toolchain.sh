#!/usr/bin/env bash
# CUDA 13.0 build toolchain for machines with no GPU and no system CUDA (our build and CI machines).
# It installs nvcc and the CUDA 13.0 libraries from PyPI wheels into a cache folder once, adds the
# unversioned .so links the linker wants, and builds a stub libcuda.so (SONAME libcuda.so.1) so that
# `cargo build --features cuda` links. The stub is for linking only: on a GPU machine the real driver's
# libcuda.so.1 is found at run time.
#
# Use (from the repository root):
#       source scripts/cuda-toolchain.sh      # exports CUDA_HOME, CUDA_ROOT, PATH, CUDA_COMPUTE_CAP
#  or:  eval "$(scripts/cuda-toolchain.sh)"
# Then: cargo build --release --features cuda
#
# Pinned to 13.0.x on purpose: the GPU machines run driver 580 (CUDA 13.0), which cannot JIT PTX made by a
# newer nvcc, and cudarc 0.19 refuses nvcc above 13.4. CUDA_COMPUTE_CAP=90 targets H100/H200 (sm_90a).
# Run `cargo fetch` in the project first: the libcuda stub lists the driver symbols that cudarc declares.

_occ_cuda() {
  local prefix="${OCC_CUDA_PREFIX:-$HOME/.cache/occ-cuda13}"
  local root="$prefix/nvidia/cu13"
  if [ ! -x "$root/bin/nvcc" ]; then
    echo "cuda-toolchain: installing CUDA 13.0 wheels into $prefix (about 680 MB, once)" >&2
    python3 -m pip install -q --no-deps --target "$prefix" \
      nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
      nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88 >&2 || return 1
  fi
  (
    cd "$root/lib" || exit 1
    for l in cublas cublasLt cudart nvrtc; do [ -e "lib$l.so" ] || ln -sf "lib$l.so.13" "lib$l.so"; done
    [ -e libcurand.so ] || ln -sf libcurand.so.10 libcurand.so
    if [ ! -e stubs/libcuda.so ]; then
      local src
      src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src/driver/sys 2>/dev/null)
      if [ -z "$src" ]; then
        echo "cuda-toolchain: no cudarc source in the cargo registry; run 'cargo fetch' in the project, then again" >&2
        exit 1
      fi
      mkdir -p stubs
      grep -ohE '^\s+(pub )?fn (cu[A-Za-z0-9_]+)\(' $(find $src -name '*.rs') \
        | sed -E 's/^\s+(pub )?fn (cu[A-Za-z0-9_]+)\(/\2/' | sort -u \
        | awk '{print "int " $1 "(void){return 999;}"}' > stubs/libcuda_stub.c
      gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so stubs/libcuda_stub.c || exit 1
      echo "cuda-toolchain: stub libcuda.so with $(wc -l < stubs/libcuda_stub.c) symbols" >&2
    fi
  ) || return 1
  OCC_CUDA_EXPORTS="export CUDA_HOME='$root' CUDA_ROOT='$root' PATH='$root/bin':\"\$PATH\" CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _occ_cuda && eval "$OCC_CUDA_EXPORTS" && echo "cuda-toolchain: nvcc $(nvcc --version | grep -o 'release [0-9.]*')" >&2
else
  _occ_cuda && echo "$OCC_CUDA_EXPORTS"
fi
