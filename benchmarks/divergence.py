"""Time exact divergence against Hutchinson at 2 and 64 dimensions (ratios, same process).

    python benchmarks/divergence.py

Prints, per dimension, the milliseconds per call of ``velocity_and_divergence`` for the exact
trace and for one Hutchinson probe, and their ratio. The exact trace costs one forward pass and d
vector-Jacobian products vectorized by vmap, so its ratio to Hutchinson grows sublinearly in d.
"""

from __future__ import annotations

import time

import torch

from fmexp.flow.likelihood import velocity_and_divergence
from fmexp.networks.models import build_model


def per_call_ms(fn, repeats: int = 20) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    batch = 2000
    for dim in (2, 64):
        model = build_model("mlp", dim=dim, width=256, depth=3).eval()
        x, t = torch.randn(batch, dim), torch.rand(batch)
        z = torch.randint(0, 2, (1, *x.shape)).float() * 2 - 1  # one Hutchinson probe
        exact = per_call_ms(lambda: velocity_and_divergence(model, x, t))
        hutch = per_call_ms(lambda: velocity_and_divergence(model, x, t, z))
        with torch.no_grad():
            fwd = per_call_ms(lambda: model(x, t))
        print(
            f"dim={dim:3d} batch={batch}: forward {fwd:7.2f} ms  exact {exact:7.2f} ms  hutchinson {hutch:7.2f} "
            f"ms  exact/forward {exact / fwd:5.1f}  exact/hutchinson {exact / hutch:5.1f}"
        )


if __name__ == "__main__":
    main()
