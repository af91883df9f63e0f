"""FID backends: the digits classifier is accurate and deterministic; FID sees a real difference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fmexp.data.features import _as_bytes, features, fid, train_digits_classifier
from fmexp.data.images import data_scale, digits, level_centres, to_uint8
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def classifier():
    return train_digits_classifier(seed=0)


@pytest.mark.slow
def test_classifier_reaches_95_percent(classifier) -> None:
    assert classifier[1] >= 0.95


def test_classifier_training_is_deterministic() -> None:
    (a, acc_a), (b, acc_b) = train_digits_classifier(seed=3, epochs=1), train_digits_classifier(seed=3, epochs=1)
    assert acc_a == acc_b
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=False))


def test_fid_is_small_between_splits_and_large_against_noise(classifier) -> None:
    model, _ = classifier
    data = digits()
    gen = torch.Generator().manual_seed(0)
    same = fid("digits-classifier", data.train[:359], data.test, 17, classifier=model)
    noise = fid(
        "digits-classifier",
        torch.randint(0, 17, (359, 1, 8, 8), generator=gen, dtype=torch.uint8),
        data.test,
        17,
        classifier=model,
    )
    assert features("digits-classifier", data.test, 17, classifier=model).shape == (359, 128)
    assert 0 <= same < noise / 10


def test_samples_are_stored_as_the_data_is() -> None:
    """A sample anywhere in a level's cell of [-1, 1] is stored as that level, in one byte, and reads back
    as the cell's centre; the data's integer levels go through the same map."""
    for levels in (17, 256):
        x = torch.arange(levels, dtype=torch.float32)
        cell = data_scale(levels)
        for offset in (
            1e-3,
            0.5,
            0.999,
        ):  # anywhere inside the cell (its edges are left to rounding) [-1 + l * cell, -1 + (l + 1) * cell)
            stored = to_uint8(-1 + (x + offset) * cell, levels)
            assert stored.dtype == torch.uint8 and torch.equal(stored, x.to(torch.uint8))
        assert torch.allclose(level_centres(x, levels), -1 + (x + 0.5) * cell)
        assert torch.equal(to_uint8(level_centres(x, levels), levels), x.to(torch.uint8))
    assert torch.equal(
        to_uint8(torch.tensor([-1.5, 1.0, 7.0]), 256), torch.tensor([0, 255, 255], dtype=torch.uint8)
    )  # clamped


def test_inception_reads_bytes_spanning_0_to_255() -> None:
    assert torch.equal(
        _as_bytes(torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16), 256)[0, 0],
        torch.arange(256).reshape(16, 16).to(torch.uint8),
    )
    grey = _as_bytes(torch.tensor([0.0, 8.0, 16.0]).reshape(1, 1, 1, 3), 17)
    assert (
        grey.shape == (1, 3, 1, 3) and grey[0, :, 0].tolist() == [[0, 128, 255]] * 3
    )  # 8 * 255 / 16 = 127.5, rounded to even


def test_inception_needs_a_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        features("inception", torch.zeros(2, 3, 32, 32), 256, inception_weights=tmp_path / "pt_inception.pth")
    with pytest.raises(ValueError, match="unknown feature backend"):
        features("clip", torch.zeros(2, 3, 32, 32), 256)


INCEPTION_WEIGHTS = Path(
    os.environ.get("FMEXP_INCEPTION_WEIGHTS", ROOT / "data" / "raw" / "pt_inception-2015-12-05-6726825d.pth")
)


def test_our_fid_matches_torch_fidelity_on_the_same_uint8_images() -> None:
    """Our Frechet distance on InceptionV3 features against torch-fidelity's own FID, on the same uint8
    images, within 1e-3. It needs torch-fidelity (the ``fid`` extra) and the weights file, which is
    never downloaded: point FMEXP_INCEPTION_WEIGHTS at it."""
    torch_fidelity = pytest.importorskip(
        "torch_fidelity", reason="torch-fidelity is not installed (pip install -e '.[fid]')"
    )
    if not INCEPTION_WEIGHTS.is_file():
        pytest.skip(
            f"no InceptionV3 weights at {INCEPTION_WEIGHTS} (set FMEXP_INCEPTION_WEIGHTS); fmexp never downloads them"
        )
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (64, 3, 32, 32), generator=gen, dtype=torch.uint8)
    b = (a.float() * 0.7 + 40).round().clamp(0, 255).to(torch.uint8)  # a shifted, lower-contrast copy

    class Images(torch.utils.data.Dataset):
        def __init__(self, x: torch.Tensor) -> None:
            self.x = x

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.x[i]

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(a),
        input2=Images(b),
        fid=True,
        cuda=False,
        cache=False,
        verbose=False,
        feature_extractor_weights_path=str(INCEPTION_WEIGHTS),
    )["frechet_inception_distance"]
    ours = fid("inception", a, b, 256, inception_weights=INCEPTION_WEIGHTS)
    assert ours == pytest.approx(theirs, abs=1e-3)
