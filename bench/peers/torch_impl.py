"""The workloads in PyTorch, eager or under torch.compile (shared by torch_eager.py and
torch_compile.py). Written as a PyTorch user would; see ../../../shared/bench/WORKLOADS.md."""

import os

from common import W2_LR, W3_LR, W4_EPS, Unsupported

torch = None


def import_torch():
    global torch
    import torch as t  # raises ImportError when missing

    torch = t
    torch.set_num_threads(2)
    return f"torch {torch.__version__}"


def build(workload, inp, compiled):
    F = torch.nn.functional
    wrap = (lambda f: torch.compile(f)) if compiled else (lambda f: f)
    T = torch.from_numpy

    if workload in ("W1-fwd", "W1"):
        f = wrap(lambda x: x**2 * torch.exp(x))
        if workload == "W1-fwd":
            x = T(inp["x"])

            def call():
                with torch.no_grad():
                    return {"y": f(x)}

            return call, lambda v: v.numpy()

        x = T(inp["x"]).requires_grad_()

        def call():
            x.grad = None  # overwritten each call, not accumulated
            y = f(x)
            y.backward(torch.ones_like(y))
            return {"y": y.detach(), "x_grad": x.grad}

        return call, lambda v: v.numpy()

    if workload == "W2":
        xs = [T(a) for a in inp["xs"]]
        ys = [T(a) for a in inp["ys"]]
        loss_fn = wrap(lambda x, y, w, b: 0.5 * ((x @ w + b - y) ** 2).sum())

        def call():
            w = T(inp["w0"]).clone().requires_grad_()
            b = T(inp["b0"]).clone().requires_grad_()
            for x, y in zip(xs, ys):
                loss = loss_fn(x, y, w, b)
                loss.backward()
                with torch.no_grad():
                    w -= W2_LR * w.grad
                    b -= W2_LR * b.grad
                w.grad.zero_()
                b.grad.zero_()
            return {"w": w.detach(), "b": b.detach()}

        return call, lambda v: v.numpy()

    if workload == "W3":
        X = T(inp["X"])
        labels = T(inp["labels"])
        names = ["w1", "b1", "w2", "b2", "w3", "b3"]
        params = [T(inp[n]).clone().requires_grad_() for n in names]

        def fwd(X, labels, w1, b1, w2, b2, w3, b3):
            h = F.relu(F.linear(X, w1, b1))
            h = F.relu(F.linear(h, w2, b2))
            return F.cross_entropy(F.linear(h, w3, b3), labels)

        fwd = wrap(fwd)

        def call():
            loss = fwd(X, labels, *params)
            loss.backward()
            grads = [p.grad for p in params]
            with torch.no_grad():
                for p in params:
                    p -= W3_LR * p.grad
            for p in params:
                p.grad = None
            out = {"loss": loss.detach()}
            out.update({n + "_grad": g for n, g in zip(names, grads)})
            return out

        return call, lambda v: v.numpy()

    if workload == "W4":
        x = T(inp["x"]).requires_grad_()
        g = T(inp["g"]).requires_grad_()
        b = T(inp["b"]).requires_grad_()
        w = T(inp["w"])
        n = x.shape[-1]
        f = wrap(lambda x, g, b, w: (F.gelu(F.layer_norm(x, (n,), eps=W4_EPS) * g + b) * w).sum())

        def call():
            for t in (x, g, b):
                t.grad = None
            s = f(x, g, b, w)
            s.backward()
            return {"s": s.detach(), "x_grad": x.grad, "g_grad": g.grad, "b_grad": b.grad}

        return call, lambda v: v.numpy()

    if workload == "W5":
        x = T(inp["x"]).clone().requires_grad_()

        def second(x):
            (g,) = torch.autograd.grad(x**3, x, create_graph=True)
            (h,) = torch.autograd.grad(g, x)
            return g, h

        f = wrap(second)

        def call():
            try:
                g, h = f(x)
            except Exception as e:
                if compiled:
                    raise Unsupported(f"torch.compile of autograd.grad(create_graph=True): "
                                      f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
                raise
            h.item()  # read h
            return {"g": g.detach(), "h": h}

        return call, lambda v: v.numpy()

    raise Unsupported(f"unknown workload {workload}")


def trace_overhead(n_ops=100_000, every=1000):
    """ns per recorded op (100 000 chained scalar multiplies, realized every 1000), with and
    without grad: PyTorch eager's figure beside kiln's `--workload trace`."""
    import time

    out = {}
    for rg in (False, True):
        best = None
        for _ in range(3):
            x = torch.tensor(1.0, requires_grad=rg)
            y = x
            t0 = time.perf_counter()
            for i in range(n_ops):
                y = y * 1.0000001
                if (i + 1) % every == 0:
                    y.item()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
            del y
        out["ns_per_op_grad" if rg else "ns_per_op_no_grad"] = best / n_ops * 1e9
    return out


def main(compiled):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import emit, parse_args, run_peer

    if "--workload" in sys.argv and sys.argv[sys.argv.index("--workload") + 1] == "trace":
        parse_args()
        try:
            version = import_torch()
        except ImportError as e:
            emit({"status": "missing", "reason": f"{type(e).__name__}: {e}"})
            return
        if compiled:
            emit({"status": "unsupported", "reason": "the trace micro-benchmark is eager-only", "version": version})
            return
        emit({"status": "ok", "version": version, **trace_overhead()})
        return
    run_peer(import_torch, lambda w, inp: build(w, inp, compiled))
