"""Training throughput (images/s) and peak memory of the paper's CIFAR-10 U-Net (Table 3), per option,
against fp32 eager in the same process.

    python benchmarks/unet_throughput.py            # CPU: the Table 3 layout at width 32, batch 16
    python benchmarks/unet_throughput.py --full     # a GPU: width 256, batch 256 (Table 3)

Options: fp32 eager (the baseline), channels_last, bf16 autocast, torch.compile (its compile time is
printed apart, not in the throughput). One training step is the FM-OT loss on 32x32x3 images, backward
and Adam. The options run interleaved in rounds (baseline, each option, baseline, ...), and each
ratio is the median over rounds of option / baseline images/s. Peak memory is the device's
``max_memory_allocated`` on a GPU; on a CPU it is not measured (the process's peak RSS only grows).
Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from fmexp.flow.methods import make_method
from fmexp.networks.models import build_model

TABLE_3 = {
    "in_channels": 3,
    "resolution": 32,
    "channel_mults": [1, 2, 2, 2],
    "num_res_blocks": 2,
    "attention_resolutions": [16],
    "dropout": 0.0,
}
OPTIONS = ("fp32 eager", "channels_last", "bf16 autocast", "torch.compile")


def make_step(option: str, channels: int, batch: int, device: torch.device) -> tuple[Callable[[], None], float]:
    """One training step under ``option``, and the seconds its first call took (compilation included)."""
    torch.manual_seed(0)
    model = build_model("unet", channels=channels, **TABLE_3).to(device)
    method, gen = make_method("fm", "ot"), torch.Generator(device=device).manual_seed(0)
    x_1 = torch.rand(batch, 3, 32, 32, generator=gen, device=device) * 2 - 1
    if option == "channels_last":
        model, x_1 = model.to(memory_format=torch.channels_last), x_1.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if option == "torch.compile" else model
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    dtype = torch.bfloat16 if option == "bf16 autocast" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = method.loss(net, x_1, gen).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    _sync(device)
    return step, time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(step: Callable[[], None], batch: int, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="Table 3's width and batch (a GPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip", nargs="*", default=[], help="options to leave out, e.g. torch.compile")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    channels, batch = (256, 256) if args.full else (32, 16)
    params = sum(p.numel() for p in build_model("unet", channels=channels, **TABLE_3).parameters())
    print(
        f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads); U-Net {channels} channels"
        f" ({params / 1e6:.1f}M parameters), batch {batch}; median over {args.rounds} rounds of {args.steps} steps"
    )
    options = [o for o in OPTIONS if o not in args.skip]
    steps, firsts = {}, {}
    for option in options:
        try:
            steps[option], firsts[option] = make_step(option, channels, batch, device)
        except Exception as e:  # e.g. no compiler toolchain for torch.compile, or bf16 unsupported
            print(f"{option:14s} unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    rates: dict[str, list[float]] = {o: [] for o in steps}
    peaks: dict[str, float] = {}
    for _ in range(args.rounds):
        for option, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rates[option].append(images_per_second(step, batch, args.steps, device))
            if device.type == "cuda":
                peaks[option] = torch.cuda.max_memory_allocated() / 2**30
    base = rates.get("fp32 eager")
    for option, r in rates.items():
        ratio = statistics.median(a / b for a, b in zip(r, base, strict=False)) if base else float("nan")
        memory = f"  peak {peaks[option]:.1f} GiB" if option in peaks else ""
        print(
            f"{option:14s} {statistics.median(r):8.1f} images/s  x{ratio:4.2f} of fp32 eager"
            f"  first step {firsts[option]:.1f} s{memory}"
        )


if __name__ == "__main__":
    main()
