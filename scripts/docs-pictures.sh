#!/usr/bin/env bash
# Regenerates the pictures in docs/ (shown in the README) from the seeds' graphs in cli/tests/data,
# with the `kiln` CLI and Graphviz's `dot` (Debian/Ubuntu: apt-get install graphviz).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot >/dev/null || { echo "needs Graphviz's dot: apt-get install graphviz" >&2; exit 1; }
kiln() { cargo run --quiet -p kiln-cli -- "$@"; }

# SEEDS 1.6: z = w*x + b and its reverse graph (gradients w.r.t. w and b).
kiln grad cli/tests/data/z_wx_b.txt --wrt w,b --format svg > docs/z_wx_b_grad.svg
# A two-layer MLP training step (forward + reverse) after fusion: one dashed box per kernel.
kiln dump cli/tests/data/mlp.txt --wrt w0,b0,w1,b1 --after fusion --format svg > docs/mlp_step_fused.svg
echo "wrote docs/z_wx_b_grad.svg docs/mlp_step_fused.svg"
