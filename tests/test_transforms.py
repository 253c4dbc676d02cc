from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from seqclf import image_rows_as_sequence


def test_shapes() -> None:
    assert image_rows_as_sequence(torch.rand(5, 7)).shape == (5, 7)
    assert image_rows_as_sequence(torch.rand(3, 5, 7)).shape == (5, 21)
    assert image_rows_as_sequence(torch.rand(2, 3, 5, 7)).shape == (2, 5, 21)


def test_channels_of_a_row_lie_side_by_side() -> None:
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (C, H, W)
    rows = image_rows_as_sequence(image)
    torch.testing.assert_close(rows[1], torch.cat([image[0, 1], image[1, 1]]))
    batch = image_rows_as_sequence(image[None].repeat(2, 1, 1, 1))
    torch.testing.assert_close(batch[1], rows)


def test_uint8_is_scaled_like_to_tensor() -> None:
    pixels = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    rows = image_rows_as_sequence(pixels)
    assert rows.dtype == torch.float32
    assert 0.0 <= rows.min() and rows.max() <= 1.0
    pil = Image.fromarray(pixels[0].numpy())
    torch.testing.assert_close(rows, transforms.ToTensor()(pil)[0])


def test_float_is_kept() -> None:
    image = torch.randn(4, 4, dtype=torch.float64) * 10
    out = image_rows_as_sequence(image)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, image)


def test_pil_and_numpy_inputs() -> None:
    array = np.random.default_rng(0).integers(0, 256, (6, 5), dtype=np.uint8)
    from_pil = image_rows_as_sequence(Image.fromarray(array))
    torch.testing.assert_close(from_pil, torch.from_numpy(array).float() / 255)
    rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert image_rows_as_sequence(Image.fromarray(rgb)).shape == (6, 15)
    assert image_rows_as_sequence(rgb).shape == (6, 15)  # (H, W, C) read as ToTensor does


def test_in_compose_and_pickle_round_trip() -> None:
    pipeline = transforms.Compose([transforms.ToTensor(), image_rows_as_sequence])
    image = Image.fromarray(np.zeros((28, 28), dtype=np.uint8))
    assert pipeline(image).shape == (28, 28)
    restored = pickle.loads(pickle.dumps(pipeline))
    assert restored(image).shape == (28, 28)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        ("not an image", TypeError, "image must be a torch.Tensor, numpy.ndarray or PIL.Image.Image; got str"),
        (torch.zeros(5), ValueError, r"image must have shape \(H, W\), \(C, H, W\) or \(N, C, H, W\); got \(5,\)"),
        (torch.zeros(1, 1, 1, 1, 1), ValueError, r"got \(1, 1, 1, 1, 1\)"),
        (torch.zeros(2, 2, dtype=torch.int32), TypeError, "image must be uint8 or floating point; got dtype torch.int32"),
    ],
)
def test_bad_input(image: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        image_rows_as_sequence(image)
