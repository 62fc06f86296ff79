#!/usr/bin/env bash
# Installs what kiln's build and tests need beyond the Rust toolchain. Idempotent and quiet when
# everything is there; safe to run on a machine that already has everything.
# - rustfmt and clippy (the CI gate);
# - clang-19 (Debian's package): the CUDA tests compile every emitted kernel to PTX with its CUDA
#   front end, without the CUDA toolkit (codegen/tests/cuda_ptx.rs), and compile the device math
#   for the host (codegen/tests/cuda_math_host.rs). Under CI=true those tests fail without it.
set -euo pipefail
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! command -v clang-19 >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "setup.sh: clang-19 is missing and this user cannot install packages (not root, no sudo)" >&2
      exit 1
    fi
  fi
  echo "setup.sh: installing clang-19 (CUDA PTX checks)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends clang-19 >/dev/null
  command -v clang-19 >/dev/null 2>&1 || { echo "setup.sh: clang-19 did not install" >&2; exit 1; }
fi
