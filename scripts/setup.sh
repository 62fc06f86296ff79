#!/usr/bin/env bash
# Installs what kiln's build and tests need beyond the Rust toolchain. Idempotent; safe to run on a
# machine that already has everything. Today that is only the toolchain components.
set -euo pipefail
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
