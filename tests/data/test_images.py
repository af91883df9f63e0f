"""Image data: digits offline, an image folder the test writes, dequantization and bits/dim."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmexp.data.datasets import load_dataset
from fmexp.data.images import cifar10, data_scale, dequantize, digits, imagefolder, quantize
from fmexp.flow.metrics import bits_per_dim


def test_digits_load_offline_with_a_fixed_split() -> None:
    a, b = digits(), digits()
    assert a.train.shape == (1438, 1, 8, 8) and a.test.shape == (359, 1, 8, 8) and a.levels == 17
    assert torch.equal(a.test, b.test)
    assert float(a.train.min()) == 0 and float(a.train.max()) == 16
    assert torch.equal(a.train, a.train.round())  # integer levels


def test_dequantize_maps_levels_into_their_cells() -> None:
    x = torch.tensor([[0.0, 16.0, 7.0]]).expand(1000, 3)
    y = dequantize(x, 17, torch.Generator().manual_seed(0))
    assert float(y.min()) >= -1.0 and float(y.max()) < 1.0
    assert torch.equal(quantize(y, 17), x)  # every draw stays inside its level's cell
    # each cell has width 2/17 and the draw is uniform inside it: mean at the cell centre
    centre = (x[0] + 0.5) * 2 / 17 - 1
    torch.testing.assert_close(y.mean(0), centre, atol=0.01, rtol=0)


def test_bits_per_dim_offset_on_a_closed_form() -> None:
    """A model uniform on [-1, 1)^d gives density 2^-d to y. Dequantized digits are then uniform over
    17 levels, whose entropy is log2(17) bits per dimension: the offset must recover exactly that."""
    d = 64
    nll_y = d * math.log(2.0)
    assert bits_per_dim(nll_y, d, scale=data_scale(17)) == pytest.approx(math.log2(17))


def test_image_folder_loads_resizes_and_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(20, 12), (12, 12), (9, 30), (16, 16)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / f"im{i}.{'png' if i % 2 else 'jpg'}"
        )
    (tmp_path / "notes.txt").write_text("not an image")
    data = imagefolder(root=tmp_path, size=8, channels=3)
    assert data.levels == 256 and data.train.shape[1:] == (3, 8, 8)
    assert len(data.train) + len(data.test) == 4
    assert float(data.train.max()) <= 255 and float(data.train.min()) >= 0
    gray = imagefolder(root=tmp_path, size=6, channels=1)
    assert gray.train.shape[1:] == (1, 6, 6)
    assert data.train_labels is None and data.test_labels is None  # files at the top: no classes


def test_an_image_folder_of_class_subfolders_is_labelled_by_folder(tmp_path: Path) -> None:
    """Each subfolder is a class, numbered in sorted order; each image keeps its folder's label through
    the shuffled split (every image of a class is one flat grey level, so the pixels say the class)."""
    grey = {"b_dog": 200, "a_cat": 10, "c_owl": 90}
    for name, level in grey.items():
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8), level, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = imagefolder(root=tmp_path, size=8, channels=1)
    assert data.train_labels is not None and data.test_labels is not None
    levels = torch.tensor([10.0, 200.0, 90.0])  # the classes in sorted order: a_cat, b_dog, c_owl
    for x, y in ((data.train, data.train_labels), (data.test, data.test_labels)):
        assert y.dtype == torch.int64
        assert torch.equal(x[:, 0, 0, 0], levels[y])
    assert len(data.train_labels) + len(data.test_labels) == 12
    assert load_dataset("imagefolder", root=tmp_path, size=8, channels=1).num_classes == 3


def test_digits_carry_their_labels_into_the_dataset() -> None:
    data = load_dataset("digits")
    assert data.num_classes == 10
    assert data.train_labels is not None and data.test_labels is not None
    assert (len(data.train_labels), len(data.test_labels)) == (len(data.train), len(data.test))
    assert load_dataset("checkerboard", n_train=10, n_test=10).num_classes == 0


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="at least 2 PNG or JPEG"):
        imagefolder(root=tmp_path / "none", size=8)
    with pytest.raises((FileNotFoundError, RuntimeError), match="cifar10"):
        cifar10(root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")
