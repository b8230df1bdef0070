"""Label alignment of pretrained models (lesson 9): permuted, shifted or renamed class indices.

``check_label_alignment`` recovers how a model's indices map onto a data set's
labels from its predictions; ``folder_classes`` numbers an image-folder data
set the way common loaders do (sorted); the name-level helpers compare class
name lists; the folder helpers feed a model an image-folder data set.
"""

from __future__ import annotations

from dldebug.labels.alignment import LabelAlignment, check_label_alignment
from dldebug.labels.folders import ImageFolder, folder_classes, load_images, predict_logits, scan_image_folder
from dldebug.labels.names import (
    NameComparison,
    compare_class_names,
    model_class_names,
    normalise_class_name,
    read_class_names,
)

__all__ = [
    "ImageFolder",
    "LabelAlignment",
    "NameComparison",
    "check_label_alignment",
    "compare_class_names",
    "folder_classes",
    "load_images",
    "model_class_names",
    "normalise_class_name",
    "predict_logits",
    "read_class_names",
    "scan_image_folder",
]
