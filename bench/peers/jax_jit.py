"""JAX peer: every workload under jax.jit (see common.py for the protocol). W2 jits one SGD step
and loops over the 500 steps in Python (per-step jit, as in BASELINES.md); results are awaited
with block_until_ready. Threads: the harness sets XLA_FLAGS for 2 threads."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import W2_LR, W2_STEPS, W3_LR, W4_EPS, Unsupported, run_peer  # noqa: E402

jax = jnp = None


def import_jax():
    global jax, jnp
    import jax as j  # raises ImportError when missing
    import jax.numpy as jn

    jax, jnp = j, jn
    jax.config.update("jax_platforms", "cpu")
    return f"jax {jax.__version__}"


def ready(tree):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)


def build(workload, inp):
    import numpy as np

    A = jnp.asarray

    def f1(x):
        return x**2 * jnp.exp(x)

    if workload == "W1-fwd":
        x = A(inp["x"])
        f = jax.jit(f1)
        return (lambda: ready({"y": f(x)})), np.asarray

    if workload == "W1":
        x = A(inp["x"])

        @jax.jit
        def fb(x):
            y, pull = jax.vjp(f1, x)
            (gx,) = pull(jnp.ones_like(y))
            return y, gx

        def call():
            y, gx = fb(x)
            return ready({"y": y, "x_grad": gx})

        return call, np.asarray

    if workload == "W2":
        xs = [A(a) for a in inp["xs"]]
        ys = [A(a) for a in inp["ys"]]
        assert len(xs) == W2_STEPS

        def loss(w, b, x, y):
            err = x @ w + b - y
            return 0.5 * jnp.sum(err * err)

        @jax.jit
        def step(w, b, x, y):
            gw, gb = jax.grad(loss, argnums=(0, 1))(w, b, x, y)
            return w - W2_LR * gw, b - W2_LR * gb

        def call():
            w, b = A(inp["w0"]), A(inp["b0"])
            for x, y in zip(xs, ys):
                w, b = step(w, b, x, y)
            return ready({"w": w, "b": b})

        return call, np.asarray

    if workload == "W3":
        X, labels = A(inp["X"]), A(inp["labels"])
        names = ["w1", "b1", "w2", "b2", "w3", "b3"]
        state = {"p": [A(inp[n]) for n in names]}

        def loss_fn(p, X, labels):
            w1, b1, w2, b2, w3, b3 = p
            h = jax.nn.relu(X @ w1.T + b1)
            h = jax.nn.relu(h @ w2.T + b2)
            logits = h @ w3.T + b3
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

        @jax.jit
        def step(p, X, labels):
            loss, grads = jax.value_and_grad(loss_fn)(p, X, labels)
            return loss, grads, [q - W3_LR * g for q, g in zip(p, grads)]

        def call():
            loss, grads, state["p"] = step(state["p"], X, labels)
            out = {"loss": loss}
            out.update({n + "_grad": g for n, g in zip(names, grads)})
            return ready(out)

        return call, np.asarray

    if workload == "W4":
        x, g, b, w = A(inp["x"]), A(inp["g"]), A(inp["b"]), A(inp["w"])

        def f(x, g, b, w):
            mu = jnp.mean(x, axis=-1, keepdims=True)
            var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
            ln = (x - mu) / jnp.sqrt(var + W4_EPS)
            return jnp.sum(jax.nn.gelu(ln * g + b, approximate=False) * w)

        vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

        def call():
            s, (gx, gg, gb) = vg(x, g, b, w)
            return ready({"s": s, "x_grad": gx, "g_grad": gg, "b_grad": gb})

        return call, np.asarray

    if workload == "W5":
        x = A(inp["x"])
        cube = lambda x: x**3  # noqa: E731
        gh = jax.jit(lambda x: (jax.grad(cube)(x), jax.grad(jax.grad(cube))(x)))

        def call():
            g, h = gh(x)
            float(h)  # read h
            return ready({"g": g, "h": h})

        return call, np.asarray

    if workload == "trace":
        raise Unsupported("the trace micro-benchmark is measured against PyTorch eager only")
    raise Unsupported(f"unknown workload {workload}")


if __name__ == "__main__":
    run_peer(import_jax, build)
