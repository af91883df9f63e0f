"""A dataset's two fixed splits, and ``load_dataset``: any registered dataset by name.

A 2-D toy dataset (``fmexp.data.toy``) draws its train and test splits from two independent streams
of one seed, so the test split is fixed whatever the train size; an image dataset
(``fmexp.data.images``) has its own fixed split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fmexp.errors import ConfigError
from fmexp.registry import Spec, build, check_name, names, resolve

__all__ = ["Dataset", "load_dataset", "load_pair", "max_pairwise_distance"]


@dataclass(frozen=True)
class Dataset:
    """A dataset's two fixed splits, as float32 tensors of shape ``(n, ...)``.

    ``levels`` is None for continuous data. For images it is the number of intensity levels: the
    splits then hold integer levels, and ``model_space`` dequantizes them to [-1, 1) (``fmexp.data.images``).
    ``source``: a pair's source data (``load_pair``), which its flows start from; None: ``N(0, I)``.
    ``train_labels`` and ``test_labels``: each image's class in ``0 .. num_classes - 1`` (int64), where
    the dataset has classes (digits, CIFAR-10, MNIST, an image folder of class subfolders); else None.
    """

    name: str
    train: Tensor
    test: Tensor
    levels: int | None = None
    source: Dataset | None = None
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def dim(self) -> int:
        return self.train[0].numel()

    @property
    def num_classes(self) -> int:
        """The number of classes: 0 for a dataset without labels."""
        if self.train_labels is None:
            return 0
        return int(max(self.train_labels.max(), -1 if self.test_labels is None else self.test_labels.max())) + 1

    def model_space(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """What the model sees: ``x`` itself, or for images a fresh uniform dequantization of it."""
        if self.levels is None:
            return x
        from fmexp.data.images import dequantize

        return dequantize(x, self.levels, generator)

    def stored(self, y: Tensor) -> Tensor:
        """Samples ``y`` in model space as the sample stage keeps them: as they are, or for images their
        integer levels in one byte each (a quarter of float32's size)."""
        if self.levels is None:
            return y
        from fmexp.data.images import to_uint8

        return to_uint8(y, self.levels)

    def unstored(self, x: Tensor) -> Tensor:
        """Stored samples back in model space: as they are, or for images the centres of their levels."""
        if self.levels is None:
            return x
        from fmexp.data.images import level_centres

        return level_centres(x, self.levels)


def load_dataset(
    name: str,
    n_train: int = 50_000,
    n_test: int = 5_000,
    seed: int = 0,
    spec: Spec | None = None,
    **image_args: object,
) -> Dataset:
    """The dataset ``name``: a registered ``toy_dataset`` or, with ``spec``, a generator of the user's
    (``{_target_: ...}``: a callable ``(n, numpy Generator) -> (n, d)`` array), split from independent
    streams of ``seed`` with sizes ``n_train`` and ``n_test``; or an ``image_dataset`` (its own fixed
    split; ``image_args`` are ``root``, ``size``, ``channels``, ``download``)."""
    if spec is None and name in names("image_dataset"):
        splits = resolve("image_dataset", name)(seed=seed, **image_args)
        return Dataset(
            name=name,
            train=splits.train,
            test=splits.test,
            levels=splits.levels,
            train_labels=splits.train_labels,
            test_labels=splits.test_labels,
        )
    if spec is None:
        check_name(("toy_dataset", "image_dataset"), name)
    make = build("toy_dataset", name if spec is None else spec, f"datasets.{name}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train, test = (_draw(make, n, rng, name) for n, rng in ((n_train, train_rng), (n_test, test_rng)))
    return Dataset(name=name, train=train, test=test)


def load_pair(
    name: str, source: str, target: str, n_train: int, n_test: int, seed: int = 0, specs: dict[str, Spec] | None = None
) -> Dataset:
    """The pair ``name``: ``target``'s splits with ``source``'s as its ``source``, each a flat dataset (fmexp's,
    or the user's in ``specs``) drawn as ``load_dataset`` draws it, from streams of ``seed`` spawned apart
    for the two sides. ``ConfigError`` naming ``pairs.<name>`` if their dimensions differ."""
    specs = specs or {}
    side_seeds = np.random.SeedSequence(seed).spawn(2)
    source_data, target_data = (
        load_dataset(d, n_train, n_test, int(s.generate_state(1)[0]), specs.get(d))
        for d, s in ((source, side_seeds[0]), (target, side_seeds[1]))
    )
    if source_data.levels is not None or target_data.levels is not None:
        raise ConfigError(f"pairs.{name}: a pair joins flat datasets; {source} -> {target} has images")
    if source_data.dim != target_data.dim:
        raise ConfigError(
            f"pairs.{name}: the source {source} has dimension {source_data.dim}, the target {target}"
            f" {target_data.dim}; a flow maps between spaces of one dimension"
        )
    return Dataset(name=name, train=target_data.train, test=target_data.test, source=source_data)


def _draw(make: Callable[..., Any], n: int, rng: np.random.Generator, name: str) -> Tensor:
    """``n`` points from a flat generator, checked: ``(n, d)``, finite."""
    x = np.asarray(make(n, rng), dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n or not np.isfinite(x).all():
        raise ConfigError(
            f"datasets.{name}: the generator must return a finite (n, d) array for n={n}; got shape {x.shape}"
            + ("" if x.ndim != 2 or x.shape[0] != n else " with non-finite values")
        )
    return torch.from_numpy(x)


def max_pairwise_distance(x: Tensor, max_points: int = 4096) -> float:
    """The largest distance between two points (of the first ``max_points``): the VE path's ``sigma_max`` rule."""
    x = x[:max_points].flatten(1).double()
    return float(torch.cdist(x, x).max())
