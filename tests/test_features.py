"""FID backends: the digits classifier is accurate and deterministic; FID sees a real difference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmexp.features import features, fid, train_digits_classifier
from fmexp.images import dequantize, load_images


@pytest.fixture(scope="module")
def classifier():
    return train_digits_classifier(seed=0)


def test_classifier_reaches_95_percent(classifier) -> None:
    assert classifier[1] >= 0.95


def test_classifier_training_is_deterministic() -> None:
    (a, acc_a), (b, acc_b) = train_digits_classifier(seed=3, epochs=1), train_digits_classifier(seed=3, epochs=1)
    assert acc_a == acc_b
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_fid_is_small_between_splits_and_large_against_noise(classifier) -> None:
    model, _ = classifier
    data = load_images("digits")
    gen = torch.Generator().manual_seed(0)
    train, test = dequantize(data.train, 17, gen), dequantize(data.test, 17, gen)
    same = fid("digits-classifier", train[:359], test, classifier=model)
    noise = fid("digits-classifier", torch.rand(359, 1, 8, 8, generator=gen) * 2 - 1, test, classifier=model)
    assert features("digits-classifier", test, classifier=model).shape == (359, 128)
    assert 0 <= same < noise / 10


def test_inception_needs_a_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        features("inception", torch.zeros(2, 3, 32, 32), inception_weights=tmp_path / "pt_inception.pth")
    with pytest.raises(ValueError, match="unknown feature backend"):
        features("clip", torch.zeros(2, 3, 32, 32))
