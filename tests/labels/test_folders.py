"""Image-folder data sets: class numbering, image reading and batched prediction."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dldebug import FileFormatError, InputError, folder_classes
from dldebug.labels import load_images, predict_logits, scan_image_folder


def _image(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)
    return path


def test_folder_classes_sorts_like_common_loaders(tmp_path: Path) -> None:
    for name in ("zero", "one", "Two", ".ipynb_checkpoints", "ten_10"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a class")
    # code-point order, hidden folders included, files ignored: what torchvision's ImageFolder does
    assert folder_classes(tmp_path) == [".ipynb_checkpoints", "Two", "one", "ten_10", "zero"]
    assert "lesson 9" in (folder_classes.__doc__ or "")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match=re.escape(f"{tmp_path / 'nope'}: data-set folder not found")):
        folder_classes(tmp_path / "nope")
    with pytest.raises(FileFormatError, match="no class sub-folders found"):
        folder_classes(tmp_path)
    (tmp_path / "cat").mkdir()
    _image(tmp_path / "dog" / "1.png", np.zeros((4, 4)))
    with pytest.raises(FileFormatError, match=re.escape("class folder 'cat' holds no images")):
        scan_image_folder(tmp_path)


def test_scan_walks_class_folders_in_sorted_order(tmp_path: Path) -> None:
    for relative in ("b/2.png", "b/10.png", "a/x/1.jpg", "a/0.PNG"):
        _image(tmp_path / relative, np.zeros((2, 2)))
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    folder = scan_image_folder(tmp_path)
    assert folder.classes == ("a", "b")
    assert [str(f.relative_to(tmp_path)) for f in folder.files] == ["a/0.PNG", "a/x/1.jpg", "b/10.png", "b/2.png"]
    assert folder.labels.tolist() == [0, 0, 1, 1]


def test_load_images_scales_normalises_and_resizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 4, 6, 3))
    files = [_image(tmp_path / f"{i}.png", p, "RGB") for i, p in enumerate(pixels)]
    batch = load_images(files, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    expected = (pixels.transpose(0, 3, 1, 2) / 255.0 - np.array([0.5, 0.4, 0.3])[:, None, None]) \
        / np.array([0.2, 0.25, 0.5])[:, None, None]
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(batch.numpy(), expected, atol=1e-6)
    gray = load_images(files, grayscale=True, size=(2, 3))
    oracle = np.asarray(Image.open(files[0]).convert("L").resize((3, 2), Image.Resampling.BILINEAR)) / 255.0
    assert gray.shape == (2, 1, 2, 3)
    np.testing.assert_allclose(gray[0, 0].numpy(), oracle, atol=1e-6)


def test_load_images_errors(tmp_path: Path) -> None:
    a = _image(tmp_path / "a.png", np.zeros((4, 4)))
    b = _image(tmp_path / "b.png", np.zeros((5, 4)))
    with pytest.raises(FileFormatError, match=re.escape("image size (5, 4) differs from (4, 4) of the first image; "
                                                        "resize all images with size=(H, W) (CLI: --size HxW).")):
        load_images([a, b], grayscale=True)
    assert load_images([a, b], grayscale=True, size=(3, 3)).shape == (2, 1, 3, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(FileFormatError, match="cannot read the image"):
        load_images([broken])
    with pytest.raises(InputError, match=re.escape("mean needs 1 or 3 values (one per channel); got 2.")):
        load_images([a], mean=(0.1, 0.2))
    with pytest.raises(InputError, match=re.escape("std values must be positive; got [0.0].")):
        load_images([a], grayscale=True, std=0.0)


def test_predict_logits_batches_like_one_forward_pass(tmp_path: Path) -> None:
    torch.manual_seed(0)
    files = [_image(tmp_path / f"{i}.png", np.full((3, 3), 20 * i)) for i in range(7)]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 4)).eval()
    seen = []
    logits = predict_logits(model, files, batch_size=3, grayscale=True, progress=lambda d, t: seen.append((d, t)))
    with torch.no_grad():
        oracle = model(load_images(files, grayscale=True)).numpy()
    np.testing.assert_allclose(logits, oracle, atol=1e-6)
    assert seen == [(3, 7), (6, 7), (7, 7)]
    flat = torch.nn.Flatten(0).eval()
    with pytest.raises(InputError, match=re.escape("the model returned shape (27,) for a batch of 3 images")):
        predict_logits(flat, files[:3], grayscale=True)
