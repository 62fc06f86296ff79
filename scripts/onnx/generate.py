#!/usr/bin/env python3
"""Generates the ONNX test data kiln's Rust tests read (committed under onnx/tests/data/).

- node/<case>/: ONNX's own backend node test cases (onnx.backend.test.case.node) whose graphs
  use only the ops kiln imports and whose tensors are float32-based (f32, plus i64/bool where an
  op needs them: shapes, axes, conditions, comparison results). Written exactly as onnx's
  `backend-test-tools generate-data` writes them: model.onnx and test_data_set_N/{input,output}_K.pb.
- node/<case>_opset<N>/: older-opset variants of some cases (onnx's version converter).
- mlp.onnx: a small two-layer MLP (Gemm, Relu, Gemm, Softmax) with initializers, made with
  onnx.helper, for the import → train → export round trip.

Run it with a Python that has `onnx` and `numpy`:

    python3 -m venv ~/.cache/kiln-onnx && ~/.cache/kiln-onnx/bin/pip install onnx numpy
    ~/.cache/kiln-onnx/bin/python scripts/onnx/generate.py

The output is deterministic for one onnx version (the one used is written to VERSION).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx.backend.test.case import node as node_cases
from onnx.reference import ReferenceEvaluator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "onnx", "tests", "data")

# The ops kiln imports (onnx/src/import/ops.rs). A case is kept when every node of its graph
# uses one of these and at least one of them is in CASE_OPS (the ops the issue lists).
SUPPORTED = {
    "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Tanh",
    "Sigmoid", "Relu", "Erf", "Sin", "Cos", "Sign", "MatMul", "Transpose", "Reshape", "Expand",
    "Slice", "Concat", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "Where", "Cast",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "Max", "Min", "Sum",
    "Mean", "Gemm", "Softmax", "LogSoftmax", "LayerNormalization", "Gelu", "Clip", "Squeeze",
    "Unsqueeze", "Identity", "Dropout", "Constant", "Flatten", "LeakyRelu", "CastLike", "Shape",
    "Size", "ConstantOfShape", "And", "Or",
}
CASE_OPS = SUPPORTED - {"Not", "Sum", "Mean", "Flatten", "LeakyRelu", "Reciprocal", "Erf", "Sin",
                        "Cos", "Sign", "LessOrEqual", "GreaterOrEqual", "ReduceMin", "CastLike", "Shape",
                        "Size", "ConstantOfShape", "And", "Or"}
# Target opsets of the older-version variants, and the ops whose semantics differ there.
OLD_OPSETS = {
    7: {"Softmax", "LogSoftmax", "Dropout"},
    11: {"Softmax", "LogSoftmax", "Dropout", "Clip"},
    13: {"ReduceMean", "ReduceMax", "Squeeze", "Unsqueeze", "Slice", "Clip"},
}
# Element types kiln has: FLOAT, INT64, BOOL, DOUBLE.
KILN_TYPES = {TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL, TensorProto.DOUBLE}


def value_types(model: onnx.ModelProto) -> list[int]:
    g = model.graph
    types = []
    for v in list(g.input) + list(g.output):
        if not v.type.HasField("tensor_type"):
            return [-1]
        types.append(v.type.tensor_type.elem_type)
    return types


def keep(case) -> tuple[bool, str]:
    g = case.model.graph
    ops = {n.op_type for n in g.node}
    if not ops & CASE_OPS:
        return False, "not a listed op"
    if any(n.domain not in ("", "ai.onnx") for n in g.node):
        return False, "non-default domain"
    if not ops <= SUPPORTED:
        return False, "uses " + ",".join(sorted(ops - SUPPORTED))
    types = value_types(case.model)
    if TensorProto.FLOAT not in types or not set(types) <= KILN_TYPES:
        return False, "not float32-based"
    return True, ""


def write_case(case, name=None, model=None, data_sets=None) -> None:
    model = model or case.model
    d = os.path.join(OUT, "node", name or case.name)
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    g = model.graph
    for i, (inputs, outputs) in enumerate(data_sets or case.data_sets):
        ds = os.path.join(d, f"test_data_set_{i}")
        os.makedirs(ds)
        for j, x in enumerate(inputs):
            t = x if isinstance(x, TensorProto) else numpy_helper.from_array(np.asarray(x), g.input[j].name)
            with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                f.write(t.SerializeToString())
        for j, y in enumerate(outputs):
            t = y if isinstance(y, TensorProto) else numpy_helper.from_array(np.asarray(y), g.output[j].name)
            with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                f.write(t.SerializeToString())


def coerced_softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Softmax before opset 13: over the 2-D view [prod(d[:axis]), prod(d[axis:])]."""
    axis = axis + x.ndim if axis < 0 else axis
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return (np.log(y) if log else y).reshape(x.shape).astype(x.dtype)


def mlp() -> onnx.ModelProto:
    """x[4,3] → Gemm(W1[3,8], b1) → Relu → Gemm(W2[8,2], b2) → Softmax: a few KB."""
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((3, 8)) * 0.5).astype(np.float32)
    b1 = np.zeros(8, np.float32)
    w2 = (rng.standard_normal((8, 2)) * 0.5).astype(np.float32)
    b2 = np.zeros(2, np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="act"),
        helper.make_node("Gemm", ["a", "W2", "b2"], ["logits"], name="fc2"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [4, 2])],
        initializer=[numpy_helper.from_array(a, n) for a, n in [(w1, "W1"), (b1, "b1"), (w2, "W2"), (b2, "b2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-scripts")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> int:
    warnings.simplefilter("ignore")
    node_dir = os.path.join(OUT, "node")
    if os.path.exists(node_dir):
        shutil.rmtree(node_dir)
    os.makedirs(node_dir)
    kept, dropped = [], {}
    all_cases = sorted((c for c in node_cases.collect_testcases(None) if c.kind == "node"), key=lambda c: c.name)
    first_op = {c.name: c.model.graph.node[0].op_type for c in all_cases if c.model.graph.node}
    for case in all_cases:
        ok, why = keep(case)
        if ok:
            write_case(case)
            kept.append(case.name)
        elif why != "not a listed op":
            dropped[case.name] = why
    # Older-opset variants, made by onnx's version converter from the kept cases, with the same
    # data: they exercise the importer's per-version semantics (Softmax's 2-D coercion before
    # opset 13, attribute axes of Reduce* before 18, Dropout's attributes before 12).
    variants = {}
    for case in [c for c in all_cases if c.name in kept]:
        for version in OLD_OPSETS:
            if "_expanded" in case.name or not {n.op_type for n in case.model.graph.node} & OLD_OPSETS[version]:
                continue
            try:
                old = version_converter.convert_version(case.model, version)
                onnx.checker.check_model(old)
            except Exception:  # the converter cannot express every case in every version
                continue
            if not {n.op_type for n in old.graph.node} <= SUPPORTED:
                continue
            # The converter keeps attribute values, not always meaning (Softmax's axis before
            # 13 is a 2-D coercion point): the expected outputs of a variant are recomputed by
            # onnx's reference evaluator at the variant's opset.
            inputs = case.data_sets[0][0]
            feeds = {v.name: np.asarray(x) for v, x in zip(old.graph.input, inputs)}
            outputs = ReferenceEvaluator(old).run(None, feeds)
            node0 = old.graph.node[0]
            if node0.op_type in ("Softmax", "LogSoftmax") and version < 13:
                # onnx's reference evaluator implements only the opset-13 meaning of the axis.
                axis = next((a.i for a in node0.attribute if a.name == "axis"), 1)
                outputs = [coerced_softmax(feeds[node0.input[0]], axis, node0.op_type == "LogSoftmax")]
            name = f"{case.name}_opset{version}"
            write_case(case, name, old, [(inputs, outputs)])
            variants[name] = f"{first_op[case.name]} (opset {version})"
    # The op each case tests; an `_expanded` case (the op's function body inlined) tests the op
    # of the case it expands.
    with open(os.path.join(OUT, "node", "OPS.txt"), "w") as f:
        for name in kept:
            base = name.split("_expanded")[0]
            op = first_op.get(base, first_op[name])
            f.write(f"{name} {op}{' (expanded)' if base != name else ''}\n")
        for name, op in sorted(variants.items()):
            f.write(f"{name} {op}\n")
    with open(os.path.join(OUT, "mlp.onnx"), "wb") as f:
        f.write(mlp().SerializeToString())
    with open(os.path.join(OUT, "VERSION"), "w") as f:
        f.write(f"onnx {onnx.__version__}\n")
    with open(os.path.join(OUT, "node", "DROPPED.txt"), "w") as f:
        f.write("# Cases of the listed ops that generate.py does not copy, and why.\n")
        for name, why in sorted(dropped.items()):
            f.write(f"{name}: {why}\n")
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"kept {len(kept)} cases and {len(variants)} older-opset variants, dropped {len(dropped)}; "
          f"{size / 1024:.0f} KiB in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
