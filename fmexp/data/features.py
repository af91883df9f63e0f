"""Feature backends for FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to features.

- ``digits-classifier``: a small CNN trained here, deterministically, on the digits training split;
  its penultimate layer gives the features. It makes FID meaningful offline on 8x8 digits, where
  InceptionV3 features would be meaningless.
- ``inception``: InceptionV3 pool features through torch-fidelity (``pip install '.[fid]'``, which
  needs torchvision), from a weights file at a configured local path; never a download.

Every backend takes images as integer levels, shape ``(n, C, H, W)``, with their number of levels:
the data as ``prepare`` stores it and the samples as the sample stage stores them (``uint8``). Both
go through the same map, the standard protocol of torch-fidelity and clean-fid, which compare uint8
images: InceptionV3 reads bytes, the digits classifier the centres of the levels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fmexp.flow.metrics import frechet_distance, gaussian_stats
from fmexp.registry import resolve

__all__ = [
    "classifier_features",
    "inception_features",
    "DigitsClassifier",
    "train_digits_classifier",
    "backend_kwargs",
    "features",
    "reference_stats",
    "fid_against",
    "fid",
]


class DigitsClassifier(nn.Module):
    """conv32-conv64-pool-fc128-fc10 on 8x8 digits; ``features`` is the 128-d penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, y: Tensor) -> Tensor:
        return self.body(y.clamp(-1, 1))

    def forward(self, y: Tensor) -> Tensor:
        return self.head(self.features(y))


def train_digits_classifier(seed: int = 0, epochs: int = 40, batch_size: int = 64) -> tuple[DigitsClassifier, float]:
    """Train on the digits training split (dequantized afresh each batch); return the model and its test accuracy."""
    from fmexp.data.images import dequantize, level_centres, load_digits

    splits = load_digits()
    y_train, y_test = splits.train_labels, splits.test_labels
    assert y_train is not None and y_test is not None  # digits has labels
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(splits.train), generator=gen)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            x = dequantize(splits.train[idx], splits.levels, gen)
            loss = nn.functional.cross_entropy(model(x), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(level_centres(splits.test, splits.levels)).argmax(1) == y_test).float().mean())
    return model, accuracy


@functools.cache
def _inception(weights: str) -> nn.Module:
    """InceptionV3 from a local weights file, built once per process."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )
    except ImportError:
        raise RuntimeError(
            "inception FID needs torch-fidelity: pip install -e '.[fid]' (with a torchvision matching torch)"
        ) from None
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights).eval()


def _as_bytes(images: Tensor, levels: int) -> Tensor:
    """Integer levels as bytes 0..255 (the identity for 256 levels), grey repeated to RGB."""
    x = images.to(torch.uint8) if levels == 256 else (images.float() * (255 / (levels - 1))).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _inception_features(images: Tensor, levels: int, weights: str | Path | None) -> Tensor:
    if weights is None or not Path(weights).is_file():
        raise FileNotFoundError(
            f"inception FID needs InceptionV3 weights at a local path (score.inception_weights); {weights!r} is "
            "not a file."
            " fmexp never downloads them."
        )
    net = _inception(str(weights))
    with torch.no_grad():
        return torch.cat([net(chunk)[0] for chunk in _as_bytes(images, levels).split(200)])


def classifier_features(
    images: Tensor, levels: int, *, classifier: DigitsClassifier | None = None, **_: object
) -> Tensor:
    """The ``digits-classifier`` backend: the penultimate layer of the classifier trained by ``prepare``."""
    if classifier is None:
        raise ValueError("the digits-classifier backend needs the classifier trained by the prepare stage")
    from fmexp.data.images import level_centres

    with torch.no_grad():
        return classifier.features(level_centres(images, levels))


def inception_features(
    images: Tensor, levels: int, *, inception_weights: str | Path | None = None, **_: object
) -> Tensor:
    """The ``inception`` backend: InceptionV3's pool features (torch-fidelity), from a local weights file."""
    return _inception_features(images, levels, inception_weights)


def features(
    backend: str,
    images: Tensor,
    levels: int,
    *,
    classifier: DigitsClassifier | None = None,
    inception_weights: str | Path | None = None,
) -> Tensor:
    """Feature vectors ``(n, k)`` of images of integer ``levels`` from the registered ``fid_backend``."""
    extract: Callable[..., Tensor] = resolve("fid_backend", backend)
    return extract(images, levels, classifier=classifier, inception_weights=inception_weights)


def backend_kwargs(backend: str, inception_weights: str | None, prepared: dict[str, Any]) -> dict[str, Any]:
    """What the feature backend needs: the digits classifier (from ``prepared``), or the Inception weights' path."""
    if backend != "digits-classifier":
        return {"inception_weights": inception_weights}
    classifier = DigitsClassifier()
    classifier.load_state_dict(prepared["classifier"])
    return {"classifier": classifier.eval()}


def reference_stats(backend: str, images: Tensor, levels: int, **kwargs: Any) -> dict[str, Any]:
    """The Gaussian of the reference images' features, as ``prepare`` caches it: ``backend``, ``n``,
    ``mu`` and ``sigma`` (float64 tensors)."""
    mu, sigma = gaussian_stats(features(backend, images, levels, **kwargs))
    return {"backend": backend, "n": len(images), "mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}


def fid_against(backend: str, reference: dict[str, Any], levels: int, **kwargs: Any) -> Callable[[Tensor], float]:
    """FID against a reference's cached Gaussian (``reference_stats``) as a function of the images scored."""
    if reference["backend"] != backend:
        raise ValueError(f"the reference statistics are of {reference['backend']} features, not {backend}")
    mu_ref, sigma_ref = np.asarray(reference["mu"]), np.asarray(reference["sigma"])

    def score(images: Tensor) -> float:
        mu, sigma = gaussian_stats(features(backend, images, levels, **kwargs))
        return frechet_distance(mu, sigma, mu_ref, sigma_ref)

    return score


def fid(backend: str, images: Tensor, reference: Tensor, levels: int, **kwargs: Any) -> float:
    """FID between two sets of images of integer ``levels`` under one feature backend."""
    return fid_against(backend, reference_stats(backend, reference, levels, **kwargs), levels, **kwargs)(images)
