"""Image datasets as integer levels, and the uniform dequantization that makes them continuous.

Images are kept as float tensors of integer levels in ``[0, levels)``, shape ``(n, C, H, W)``.
A model sees ``y = 2 (x + u) / levels - 1`` with ``u ~ U[0, 1)^d`` (uniform dequantization, mapped to
[-1, 1] as the paper does), so ``dy/du = 2 / levels`` is the scale that ``metrics.bits_per_dim``
takes. ``digits`` ships inside scikit-learn (8x8, 17 levels) and needs no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ImageSplits",
    "digits",
    "imagefolder",
    "cifar10",
    "mnist",
    "dequantize",
    "quantize",
    "to_uint8",
    "level_centres",
    "data_scale",
    "load_digits",
    "load_image_folder",
]

SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class ImageSplits:
    train: Tensor
    test: Tensor
    levels: int
    train_labels: Tensor | None = None  # class labels (int64), where the dataset has them
    test_labels: Tensor | None = None


def data_scale(levels: int) -> float:
    """``dy/du`` of the map from dequantized levels ``u`` in ``[0, levels)`` to ``y`` in ``[-1, 1)``."""
    return 2.0 / levels


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """``y = 2 (x + u) / levels - 1`` with ``u ~ U[0, 1)``: integer levels to a continuous density on [-1, 1)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + u) * data_scale(levels) - 1.0


def quantize(y: Tensor, levels: int) -> Tensor:
    """The inverse map for samples: ``[-1, 1]`` back to integer levels, clamped."""
    return torch.floor((y + 1.0) / data_scale(levels)).clamp(0, levels - 1)


def to_uint8(y: Tensor, levels: int) -> Tensor:
    """Samples in ``[-1, 1]`` as their integer levels, one byte per value (``levels <= 256``): how image
    samples are stored, and what FID reads, as it reads the data."""
    return quantize(y, levels).to(torch.uint8)


def level_centres(x: Tensor, levels: int) -> Tensor:
    """Integer levels to the centres of their cells in ``[-1, 1]``: ``2 (x + 1/2) / levels - 1``."""
    return (x.float() + 0.5) * data_scale(levels) - 1.0


def _split(x: np.ndarray, test_fraction: float, seed: int, dtype: type = np.float32) -> tuple[Tensor, Tensor]:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
    return t[order[n_test:]], t[order[:n_test]]


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> ImageSplits:
    """scikit-learn's 1797 handwritten 8x8 digits with 17 grey levels, as ``(n, 1, 8, 8)``; a fixed split."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    train, test = _split(digits.images[:, None], test_fraction, seed)  # values 0..16
    train_labels, test_labels = _split(digits.target, test_fraction, seed, dtype=np.int64)
    return ImageSplits(train, test, levels=17, train_labels=train_labels, test_labels=test_labels)


def load_image_folder(
    root: str | Path, size: int, channels: int = 3, seed: int = 0, test_fraction: float = 0.1
) -> ImageSplits:
    """Every PNG or JPEG under ``root``: shorter side resized to ``size``, centre-cropped, 256 levels.
    Where every file lies in a subfolder of ``root``, each subfolder is a class (``root/<class>/...``,
    classes numbered in sorted order, as torchvision's ``ImageFolder``); else the images have no labels."""
    from PIL import Image

    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES) if root.is_dir() else []
    if len(files) < 2:
        raise FileNotFoundError(f"imagefolder: need at least 2 PNG or JPEG files under {root}, found {len(files)}")
    mode = {1: "L", 3: "RGB"}[channels]
    arrays = []
    for f in files:
        with Image.open(f) as opened:
            im = opened.convert(mode)
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
        arrays.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    train, test = _split(np.stack(arrays), test_fraction, seed)
    folders = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None for f in files]
    if None in folders:
        return ImageSplits(train, test, levels=256)
    classes = {c: i for i, c in enumerate(sorted(set(folders)))}  # type: ignore[type-var]
    train_labels, test_labels = _split(np.array([classes[c] for c in folders]), test_fraction, seed, dtype=np.int64)
    return ImageSplits(train, test, levels=256, train_labels=train_labels, test_labels=test_labels)


def load_torchvision(name: str, root: str | Path, download: bool = False) -> ImageSplits:
    """CIFAR-10 or MNIST through torchvision, from files under ``root``; no download unless asked."""
    try:
        import torchvision
    except ImportError:
        raise RuntimeError(f"{name} needs torchvision: pip install torchvision (a build matching torch)") from None
    cls = {"cifar10": torchvision.datasets.CIFAR10, "mnist": torchvision.datasets.MNIST}[name]
    try:
        train, test = (cls(str(root), train=flag, download=download) for flag in (True, False))
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{name}: no dataset files under {root} ({e}). Put the original {name} files there"
            f" (CIFAR-10: {root}/cifar-10-batches-py/; MNIST: {root}/MNIST/raw/), or set data.download=true"
        ) from None

    def as_levels(ds: Any) -> Tensor:
        x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32)
        return x.permute(0, 3, 1, 2).contiguous() if x.dim() == 4 else x[:, None]

    def labels(ds: Any) -> Tensor:
        return torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    return ImageSplits(
        as_levels(train), as_levels(test), levels=256, train_labels=labels(train), test_labels=labels(test)
    )


def digits(*, seed: int = 0, **_: object) -> ImageSplits:
    """The ``digits`` dataset: ``load_digits`` (``root``, ``size``, ``channels`` and ``download`` do not apply)."""
    return load_digits(seed)


def imagefolder(
    *, root: str | Path = "data/raw", size: int = 32, channels: int = 3, seed: int = 0, **_: object
) -> ImageSplits:
    """The ``imagefolder`` dataset: ``load_image_folder`` on ``root``."""
    return load_image_folder(root, size, channels, seed)


def cifar10(*, root: str | Path = "data/raw", download: bool = False, **_: object) -> ImageSplits:
    """CIFAR-10 with its own train/test split, from ``root`` (``load_torchvision``)."""
    return load_torchvision("cifar10", root, download)


def mnist(*, root: str | Path = "data/raw", download: bool = False, **_: object) -> ImageSplits:
    """MNIST with its own train/test split, from ``root`` (``load_torchvision``)."""
    return load_torchvision("mnist", root, download)
