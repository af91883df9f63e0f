"""Feature backends for FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to features.

- ``digits-classifier``: a small CNN trained here, deterministically, on the digits training split;
  its penultimate layer gives the features. It makes FID meaningful offline on 8x8 digits, where
  InceptionV3 features would be meaningless.
- ``inception``: InceptionV3 pool features through torch-fidelity (``pip install '.[fid]'``, which
  needs torchvision), from a weights file at a configured local path; never a download.

Every backend takes images in model space, ``[-1, 1]``, shape ``(n, C, H, W)``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from fmexp.metrics import frechet_distance, gaussian_stats
from fmexp.registry import check_name

__all__ = ["FEATURE_BACKENDS", "DigitsClassifier", "train_digits_classifier", "fid_against", "fid"]

FEATURE_BACKENDS = ("digits-classifier", "inception")


class DigitsClassifier(nn.Module):
    """conv32-conv64-pool-fc128-fc10 on 8x8 digits; ``features`` is the 128-d penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, y: Tensor) -> Tensor:
        return self.body(y.clamp(-1, 1))

    def forward(self, y: Tensor) -> Tensor:
        return self.head(self.features(y))


def _centres(x: Tensor, levels: int) -> Tensor:
    return (x + 0.5) * (2.0 / levels) - 1.0


def train_digits_classifier(seed: int = 0, epochs: int = 40, batch_size: int = 64) -> tuple[DigitsClassifier, float]:
    """Train on the digits training split (dequantized afresh each batch); return the model and its test accuracy."""
    from fmexp.images import dequantize, load_digits

    splits = load_digits()
    y_train, y_test = splits.train_labels, splits.test_labels
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
        accuracy = float((model(_centres(splits.test, splits.levels)).argmax(1) == y_test).float().mean())
    return model, accuracy


@functools.cache
def _inception(weights: str) -> nn.Module:
    """InceptionV3 from a local weights file, built once per process."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise RuntimeError("inception FID needs torch-fidelity: pip install -e '.[fid]' (with a torchvision matching torch)") from None
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights).eval()


def _inception_features(images: Tensor, weights: str | Path | None) -> Tensor:
    if weights is None or not Path(weights).is_file():
        raise FileNotFoundError(f"inception FID needs InceptionV3 weights at a local path (score.inception_weights); {weights!r} is not a file."
                                " fmexp never downloads them.")
    net = _inception(str(weights))
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    as_bytes = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    with torch.no_grad():
        return torch.cat([net(chunk)[0] for chunk in as_bytes.split(200)])


def features(backend: str, images: Tensor, *, classifier: DigitsClassifier | None = None, inception_weights: str | Path | None = None) -> Tensor:
    """Feature vectors ``(n, k)`` of images in ``[-1, 1]`` from the named backend."""
    check_name("feature backend", backend, FEATURE_BACKENDS)
    if backend == "digits-classifier":
        if classifier is None:
            raise ValueError("the digits-classifier backend needs the classifier trained by the prepare stage")
        with torch.no_grad():
            return classifier.features(images.float())
    if backend == "inception":
        return _inception_features(images, inception_weights)
    raise AssertionError(f"FEATURE_BACKENDS lists {backend!r} without features")


def fid_against(backend: str, reference: Tensor, **kwargs: object) -> Callable[[Tensor], float]:
    """FID against ``reference`` images under one feature backend, as a function of the samples;
    the reference's features and Gaussian are computed once, for every sample set scored."""
    mu_ref, sigma_ref = gaussian_stats(features(backend, reference, **kwargs))

    def score(samples: Tensor) -> float:
        mu, sigma = gaussian_stats(features(backend, samples, **kwargs))
        return frechet_distance(mu, sigma, mu_ref, sigma_ref)

    return score


def fid(backend: str, samples: Tensor, reference: Tensor, **kwargs: object) -> float:
    """FID between samples and reference images (both in ``[-1, 1]``) under one feature backend."""
    return fid_against(backend, reference, **kwargs)(samples)
