"""Image-folder data sets as common loaders number them, and a model's predictions over them.

One sub-folder per class; images read with Pillow. Preprocessing policy
(also the CLI's): each image is converted to grayscale (``"L"``) or RGB,
resized to ``size`` (height, width) with bilinear filtering when given (all
images must otherwise share one size), scaled to [0, 1], then normalised per
channel as ``(x - mean) / std``. Tensors are float32, (N, C, H, W).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dldebug.arguments import flag, integer, received
from dldebug.errors import FileFormatError, InputError
from dldebug.model_io import OutputSpec, call_model, parameters_device, select_output

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "folder_classes", "load_images", "predict_logits", "scan_image_folder"]

_TOOL = "predict_logits"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def folder_classes(root: str | Path) -> list[str]:
    """The class names of an image-folder data set, numbered the way common loaders number them.

    Like torchvision's ``ImageFolder`` (and ``sorted(os.listdir(root))``), every
    sub-folder is a class and label ``i`` is the ``i``-th name in *sorted* order
    (code-point order: ``"B"`` before ``"a"``; hidden folders such as
    ``.ipynb_checkpoints`` count too).

    Warning:
        Sorted order is rarely the order a pretrained model was trained with
        (lesson 9: a Kinetics-400 model scored terribly because its 400 class
        folders were numbered alphabetically). Check with
        :func:`dldebug.check_label_alignment` before trusting an accuracy.

    Args:
        root: the data-set folder, one sub-folder per class.

    Returns:
        The class names; ``result[label]`` is the folder of that label.

    Raises:
        InputError: ``root`` is not a path (a str or ``os.PathLike``) or is empty.
        FileFormatError: ``root`` is missing, not a folder, unreadable, or has no sub-folders.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("zero", "one", "two"):
        ...     (root / name).mkdir()
        >>> folder_classes(root)
        ['one', 'two', 'zero']
    """
    path = _folder_path(root)
    if not path.is_dir():
        raise FileFormatError("data-set folder not found (expected one sub-folder per class).", path=path)
    try:
        classes = sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except OSError as exc:
        raise FileFormatError(f"cannot list the data-set folder ({exc.strerror or type(exc).__name__}).",
                              path=path) from None
    if not classes:
        raise FileFormatError("no class sub-folders found; an image-folder data set has one folder per class "
                              "(root/cat/1.png, root/dog/2.png, ...).", path=path)
    return classes


def _folder_path(root: Any) -> Path:
    """``root`` as a Path; a non-path (or "", which would mean the working folder) is one InputError."""
    text = os.fspath(root) if isinstance(root, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise InputError(f"root must be the data-set folder, a str or pathlib.Path; got {received(root)}.")
    if not text.strip():
        raise InputError("root is an empty path; give the data-set folder (one sub-folder per class).")
    return Path(text)


@dataclass(frozen=True)
class ImageFolder:
    """The files and labels of an image-folder data set (labels index :attr:`classes`)."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray


def scan_image_folder(root: str | Path) -> ImageFolder:
    """List the images of each class folder in torchvision's order (sorted walk, sorted names).

    Raises:
        FileFormatError: no class folders, or a class folder without images.
    """
    path = _folder_path(root)
    classes = folder_classes(path)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found: list[Path] = []
        for folder, _dirs, names in sorted(os.walk(path / name, followlinks=True)):
            found.extend(Path(folder) / f for f in sorted(names) if f.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise FileFormatError(f"class folder {name!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); remove "
                                  "it or add images (loaders would still count it as a class).", path=path)
        files.extend(found)
        labels.extend([label] * len(found))
    return ImageFolder(path, tuple(classes), tuple(files), np.array(labels, dtype=np.int64))


def _channel_stats(values: Sequence[float] | float | None, channels: int, what: str, default: float) -> np.ndarray:
    if values is None:
        return np.full(channels, default, dtype=np.float32)
    try:
        stats = np.atleast_1d(np.asarray(values, dtype=np.float32))
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number or one number per channel; got {received(values)}.") from None
    if stats.ndim != 1 or not np.isfinite(stats).all():
        raise InputError(f"{what} must be finite numbers, one per channel (or one for all); got {received(values)}.")
    if stats.size == 1:
        stats = np.repeat(stats, channels)
    if stats.size != channels:
        raise InputError(f"{what} needs 1 or {channels} values (one per channel); got {stats.size}.")
    if what == "std" and (stats <= 0).any():
        raise InputError(f"std values must be positive; got {stats.tolist()}.")
    return stats


def load_images(files: Sequence[Path], *, size: tuple[int, int] | None = None, grayscale: bool = False,
                mean: Sequence[float] | float | None = None,
                std: Sequence[float] | float | None = None) -> torch.Tensor:
    """Read images into one normalised float32 (N, C, H, W) tensor (policy: see the module docstring).

    Raises:
        InputError: a ``size`` that is not two positive integers, ``mean``/``std`` that are not finite numbers
            (one, or one per channel; std > 0), a ``grayscale`` that is not a bool.
        FileFormatError: an unreadable image, or images of different sizes without ``size``.
    """
    from PIL import Image, UnidentifiedImageError

    if not files:
        raise InputError("no image files given; pass the images to read, e.g. scan_image_folder(root).files.")
    channels = 1 if flag(grayscale, "grayscale") else 3
    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise InputError(f"size must be (height, width); got {received(size)}.")
        size = (integer(size[0], "size must be positive (height, width) integers"),
                integer(size[1], "size must be positive (height, width) integers"))
    mean_c = _channel_stats(mean, channels, "mean", 0.0)
    std_c = _channel_stats(std, channels, "std", 1.0)
    arrays: list[np.ndarray] = []
    for file in files:
        try:
            with Image.open(file) as image:
                converted = image.convert("L" if grayscale else "RGB")
                if size is not None:
                    converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(converted, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise FileFormatError(f"cannot read the image ({type(exc).__name__}); is it corrupt?", path=file) from None
        if arrays and pixels.shape != arrays[0].shape:
            raise FileFormatError(f"image size {pixels.shape[:2]} differs from {arrays[0].shape[:2]} of the first "
                                  "image; resize all images with size=(H, W) (CLI: --size HxW).", path=file)
        arrays.append(pixels)
    batch = np.stack(arrays).reshape(len(arrays), *arrays[0].shape[:2], channels).transpose(0, 3, 1, 2)
    batch = (batch - mean_c[None, :, None, None]) / std_c[None, :, None, None]
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


def _runner(model: Any, output: OutputSpec) -> Callable[[torch.Tensor], np.ndarray]:
    """A function from an image batch to (batch, classes) logits, for torch or ONNX models.

    The tensor read from the model's output is the one :func:`dldebug.model_io.select_output` picks:
    ``logits`` (a Hugging Face ``ImageClassifierOutput``), else the first tensor, or ``output``.
    """
    from dldebug.io import OnnxModel

    if isinstance(model, OnnxModel):
        names = model.input_names
        if len(names) != 1:
            raise InputError(f"the ONNX model has {len(names)} inputs {names}; the label check feeds one image "
                             "batch.")
        session = model.session()
        output_names = [o.name for o in session.get_outputs()]

        def run_onnx(batch: torch.Tensor) -> np.ndarray:
            values = session.run(None, {names[0]: batch.numpy()})
            named = {name: torch.from_numpy(np.asarray(v)) for name, v in zip(output_names, values, strict=True)}
            return select_output(named, output, tool=_TOOL).float().numpy()
        return run_onnx

    device = parameters_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu")

    def run_torch(batch: torch.Tensor) -> np.ndarray:
        try:
            with torch.no_grad():
                result = call_model(model, batch.to(device))
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{_TOOL}: the model failed on a batch of images of shape {tuple(batch.shape)}: "
                             f"{type(exc).__name__}: {detail}. Match the preprocessing to the model: image size "
                             "(size=(H, W), CLI --size), channels (grayscale / RGB), mean and std.") from None
        return select_output(result, output, tool=_TOOL).detach().float().cpu().numpy()

    return run_torch


def _checked(output: np.ndarray, batch_size: int) -> np.ndarray:
    if output.ndim != 2 or output.shape[0] != batch_size:
        raise InputError(f"the model returned shape {tuple(output.shape)} for a batch of {batch_size} images; "
                         "expected (batch, classes) logits. If the model returns several tensors, name the "
                         "logits with output= (CLI: --output NAME).")
    return output


def predict_logits(model: Any, files: Sequence[Path], *, batch_size: int = 64,
                   progress: Callable[[int, int], None] | None = None, output: OutputSpec = None,
                   **preprocess: Any) -> np.ndarray:
    """Run ``model`` (an ``nn.Module`` or a :class:`dldebug.io.OnnxModel`) over image files, in batches.

    Args:
        model: called on a (batch, C, H, W) float32 tensor; returns (batch, classes) logits, or a
            structured output holding them (a Hugging Face ``ImageClassifierOutput``, a tuple, a dict).
        files: the images, e.g. ``scan_image_folder(root).files``.
        batch_size: images per forward pass.
        progress: called with (images done, total) after each batch.
        output: which tensor of a structured output holds the logits: a key/attribute name, an index,
            or a callable (default: ``logits``, else the first tensor; for ONNX, output names).
        preprocess: ``size``, ``grayscale``, ``mean``, ``std`` for :func:`load_images`.

    Returns:
        (N, classes) float32 logits.

    Raises:
        InputError: a bad batch size, no images, an output without a (batch, classes) tensor.
        FileFormatError: an unreadable image.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}.")
    run = _runner(model, output)
    outputs = []
    for start in range(0, len(files), batch_size):
        batch = load_images(files[start:start + batch_size], **preprocess)
        outputs.append(_checked(run(batch), batch.shape[0]))
        if progress is not None:
            progress(min(start + batch_size, len(files)), len(files))
    if not outputs:
        raise InputError("no images to predict; the data-set folder is empty.")
    return np.concatenate(outputs).astype(np.float32, copy=False)
