"""What a payload job computes, and what a step of it costs.

Workloads:

- ``matmul``: ``x <- tanh(A @ x + 0.1)`` for ``steps`` steps, ``A`` and ``x0``
  drawn from ``seed``; params ``n`` (matrix size), ``steps``, ``seed``.
- ``mlp``: inference of a seeded multilayer perceptron over ``steps`` seeded
  input batches, accumulating the logits; params ``batch``, ``width``,
  ``layers``, ``steps``, ``seed``.

Both compute in float32, as inference does on the boards' accelerators (and
at a third of float64's cost on the host that runs emulated boards).

The result digest is SHA-256 over the final working state, so the same
workload and params give the same digest on the same machine and NumPy,
whether or not the job was suspended, checkpointed and resumed in between, and
a flipped bit (SEU) in its working memory changes it. (Across machines it can
differ in the last bits, as float64 could: BLAS kernels and SIMD paths differ
by CPU, so a known answer is computed on the kind of board that checks it.)

**The cost model.** A step costs :func:`step_flops` floating-point operations,
so a job's physical size is ``steps * step_flops`` FLOP; at a board kind's rated
throughput (``firmware_bridge.ratings``) that is :func:`nominal_rate_usteps`
steps per second at throttle 1.
"""

from __future__ import annotations

from . import checkpoint

WORKLOADS = ("matmul", "mlp")
SIZE_PARAMS = ("n", "width", "batch")  # what an emulator's max_dim caps

_LIMITS = {
    "matmul": {"n": (2, 1024, 64), "steps": (1, 10_000_000, 200), "seed": (0, 2**63 - 1, 0)},
    "mlp": {
        "batch": (1, 4096, 32),
        "width": (2, 2048, 64),
        "layers": (1, 16, 3),
        "steps": (1, 10_000_000, 100),
        "seed": (0, 2**63 - 1, 0),
    },
}


def validate(workload: str, params: dict) -> dict:
    """Checked, completed params; raises ValueError naming the bad field."""
    if workload not in _LIMITS:
        raise ValueError(f"unknown workload {workload!r}; expected one of {', '.join(WORKLOADS)}")
    if not isinstance(params, dict):
        raise ValueError("params must be an object")
    limits = _LIMITS[workload]
    extra = set(params) - set(limits)
    if extra:
        raise ValueError(f"{workload}: unknown param(s) {sorted(extra)}; expected {sorted(limits)}")
    out = {}
    for key, (lo, hi, default) in limits.items():
        v = params.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{workload}: param {key!r} must be an integer in {lo}..{hi}, got {v!r}")
        out[key] = v
    return out


def step_flops(workload: str, p: dict) -> int:
    """Floating-point operations of one step of a job (the nominal cost model)."""
    if workload == "matmul":
        n = p["n"]
        return 2 * n**3 + 3 * n * n
    b, w, nl = p["batch"], p["width"], p["layers"]
    return b * (2 * w * w * nl + 2 * w * 10 + w)


def nominal_rate_usteps(workload: str, p: dict, flops_s: int) -> int:
    """Steps per second at throttle 1 at ``flops_s`` FLOP/s, in micro-steps (an exact integer)."""
    return max(1, int(flops_s) * 1_000_000 // step_flops(workload, p))


class Work:
    """Working state of one job; ``arrays`` is its working memory. ``np`` is NumPy,
    passed in: only a worker process imports it."""

    def __init__(self, workload: str, p: dict, np) -> None:
        self.np = np
        self.workload = workload
        self.p = p
        self.step = 0
        self.next_slot = 0  # the checkpoint slot the next save writes (checkpoint.slots)
        f32 = np.float32  # inference precision: every array and every step in float32
        self.c01, self.zero = f32(0.1), f32(0.0)
        rng = np.random.default_rng(p["seed"])
        if workload == "matmul":
            n = p["n"]
            self.arrays = {
                "a": rng.standard_normal((n, n), dtype=f32) / f32(np.sqrt(n)),
                "x": rng.standard_normal((n, n), dtype=f32),
            }
        else:
            w = p["width"]
            dims = [w] * (p["layers"] + 1) + [10]
            self.arrays = {f"w{i}": rng.standard_normal((dims[i], dims[i + 1]), dtype=f32) / f32(np.sqrt(dims[i]))
                           for i in range(len(dims) - 1)}
            self.arrays["acc"] = np.zeros(10, dtype=f32)

    def run_step(self) -> None:
        np = self.np
        a = self.arrays
        if self.workload == "matmul":
            a["x"] = np.tanh(a["a"] @ a["x"] + self.c01)
        else:
            rng = np.random.default_rng([self.p["seed"], self.step])
            h = rng.standard_normal((self.p["batch"], self.p["width"]), dtype=np.float32)
            nl = self.p["layers"]
            for i in range(nl):
                h = np.maximum(h @ a[f"w{i}"], self.zero)
            a["acc"] = a["acc"] + (h @ a[f"w{nl}"]).sum(axis=0)
        self.step += 1

    def digest(self) -> str:
        import hashlib  # at the first digest: OpenSSL's load is seconds of a slow board's boot

        h = hashlib.sha256()
        for k in sorted(self.arrays):
            h.update(k.encode())
            h.update(self.arrays[k].tobytes())
        return h.hexdigest()[:32]

    def flip_bit(self, index: int | None, bit: int | None, rng) -> dict:
        names = sorted(self.arrays)
        sizes = [self.arrays[k].nbytes for k in names]
        total = sum(sizes)
        index = int(rng.integers(total)) if index is None else int(index) % total
        bit = int(rng.integers(8)) if bit is None else int(bit) % 8
        off = index
        for k, s in zip(names, sizes, strict=True):
            if off < s:
                view = self.arrays[k].reshape(-1).view(self.np.uint8)
                view[off] ^= 1 << bit
                return {"array": k, "byte": off, "bit": bit, "index": index}
            off -= s
        raise AssertionError("unreachable")

    def save(self, path: str, job: dict | None = None, durable: bool = False) -> None:
        """The working state to the next of ``path``'s two checkpoint slots
        (:func:`checkpoint.save`); ``job``: what the agent needs to list the job
        after a power cycle; ``durable``: on the disk before this returns."""
        checkpoint.save(path, self.next_slot, self.step, self.arrays, job, self.np, durable)
        self.next_slot ^= 1

    def load(self, path: str) -> None:
        """Working state from the newest whole checkpoint in ``path``'s slots;
        ValueError naming the files if none is whole."""
        slot, self.step, self.arrays = checkpoint.load(path, self.np)
        self.next_slot = slot ^ 1  # the next save leaves this one alone
