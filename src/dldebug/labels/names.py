"""Compare a data set's class names with a model's own label list (lesson 9).

Names are compared after normalisation (case, spaces/underscores/hyphens,
punctuation), so ``"Ice_Cream"`` and ``"ice-cream"`` match.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dldebug.errors import FileFormatError
from dldebug.findings import Finding, Severity

__all__ = ["NameComparison", "compare_class_names", "model_class_names", "normalise_class_name",
           "read_class_names"]

_SEPARATORS = re.compile(r"[\s_\-]+")
_PUNCTUATION = re.compile(r"[^\w ]")
_SHOWN = 20  # names listed in a message or evidence list


def normalise_class_name(name: str) -> str:
    """Case-folded, separators as single spaces, punctuation removed.

    Example:
        >>> normalise_class_name("  Ice_Cream-cone (Cone)! ")
        'ice cream cone cone'
    """
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    text = _PUNCTUATION.sub("", _SEPARATORS.sub(" ", text))
    return " ".join(text.split())


@dataclass(frozen=True)
class NameComparison:
    """How a data set's class names line up with a model's.

    Attributes:
        index_list: model index for each data-set label, ``None`` where the name is missing.
        only_in_dataset: data-set names the model does not know.
        only_in_model: model names the data set does not use.
        closest: each unmatched data-set name -> its closest model names (difflib).
    """

    index_list: tuple[int | None, ...]
    only_in_dataset: tuple[str, ...]
    only_in_model: tuple[str, ...]
    closest: dict[str, tuple[str, ...]]

    @property
    def complete(self) -> bool:
        """Every data-set name was found in the model's list."""
        return all(i is not None for i in self.index_list)

    @property
    def in_order(self) -> bool:
        """Every found name sits at the same index on both sides."""
        return all(i is None or i == label for label, i in enumerate(self.index_list))


def compare_class_names(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> NameComparison:
    """Match names across the two lists; duplicates match in order of appearance.

    Example:
        >>> c = compare_class_names(["cat", "Dog"], ["dog", "cat", "bird"])
        >>> c.index_list, c.only_in_model
        ((1, 0), ('bird',))
    """
    positions: dict[str, deque[int]] = defaultdict(deque)
    for index, name in enumerate(model_classes):
        positions[normalise_class_name(name)].append(index)
    index_list: list[int | None] = []
    for name in dataset_classes:
        queue = positions.get(normalise_class_name(name))
        index_list.append(queue.popleft() if queue else None)
    used = {i for i in index_list if i is not None}
    only_dataset = tuple(str(n) for n, i in zip(dataset_classes, index_list, strict=True) if i is None)
    only_model = tuple(str(n) for i, n in enumerate(model_classes) if i not in used)
    by_normal = {normalise_class_name(n): n for n in only_model}
    closest = {}
    for name in only_dataset[:_SHOWN]:
        near = difflib.get_close_matches(normalise_class_name(name), list(by_normal), n=3, cutoff=0.6)
        closest[name] = tuple(by_normal[m] for m in near)
    return NameComparison(tuple(index_list), only_dataset, only_model, closest)


def name_findings(comparison: NameComparison, dataset_classes: Sequence[str],
                  model_classes: Sequence[str]) -> list[Finding]:
    """``labels.order_mismatch`` and ``labels.name_mismatch`` findings (none when the lists agree)."""
    findings = []
    if not comparison.in_order:
        moved = [label for label, i in enumerate(comparison.index_list) if i is not None and i != label]
        examples = [f"{dataset_classes[label]!s}: {label} -> {comparison.index_list[label]}"
                    for label in moved[:5]]
        corrected = [-1 if i is None else i for i in comparison.index_list]
        findings.append(Finding(
            "labels.order_mismatch", Severity.ERROR,
            f"The data set and the model name the same classes in a different order: {len(moved)} of "
            f"{len(dataset_classes)} classes sit at another model index (e.g. {'; '.join(examples)}).",
            {"moved_classes": len(moved), "num_classes": len(dataset_classes),
             "corrected_index_list": corrected, "examples": examples},
            fix="Translate data-set label i to model index corrected_index_list[i] before comparing with "
                "the model's predictions (-1: the model has no such class); sorted folder names are not "
                "the model's training order.",
            lesson=9,
        ))
    if comparison.only_in_dataset or comparison.only_in_model:
        near = [f"{name} ~ {' / '.join(c) if c else '(no close name)'}"
                for name, c in comparison.closest.items()]
        findings.append(Finding(
            "labels.name_mismatch", Severity.WARNING,
            f"{len(comparison.only_in_dataset)} data-set class name(s) are missing from the model's "
            f"{len(model_classes)} names and {len(comparison.only_in_model)} model name(s) are unused"
            + (f"; closest: {'; '.join(near[:5])}." if near else "."),
            {"only_in_dataset": list(comparison.only_in_dataset[:_SHOWN]),
             "only_in_model": list(comparison.only_in_model[:_SHOWN]),
             "closest_matches": near,
             "missing_count": len(comparison.only_in_dataset),
             "unused_count": len(comparison.only_in_model)},
            fix="Rename the folders (or the label file) so each data-set class carries the model's name; "
                "an unused model class such as 'background' means indices are shifted.",
            lesson=9,
        ))
    return findings


_DEFAULT_LABEL = re.compile(r"LABEL_(\d+)")  # the names a Hugging Face config makes up when it has none


def model_class_names(model: Any) -> list[str] | None:
    """The model's own class names in output order, from a Hugging Face ``config.id2label``; else None.

    None too when the config holds only the names transformers makes up (``LABEL_0``, ``LABEL_1``, ...)
    or ids that are not exactly ``0 .. n-1``: such a list says nothing about what each index means.

    Example:
        >>> from types import SimpleNamespace
        >>> model_class_names(SimpleNamespace(config=SimpleNamespace(id2label={1: "dog", 0: "cat"})))
        ['cat', 'dog']
        >>> model_class_names(SimpleNamespace(config=SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1"}))) is None
        True
    """
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if not isinstance(id2label, Mapping) or not id2label:
        return None
    names = _in_index_order(id2label)  # JSON configs store the ids as strings
    if names is None or not all(isinstance(n, str) for n in names):
        return None
    if all((m := _DEFAULT_LABEL.fullmatch(n)) is not None and int(m.group(1)) == i for i, n in enumerate(names)):
        return None
    return names


def _in_index_order(by_index: Mapping[Any, Any]) -> list[Any] | None:
    """The values of a ``{index: name}`` mapping in index order; None unless its keys are exactly ``0 .. n-1``
    (ints or strings of them, no gaps, no index twice)."""
    try:
        keys = sorted(by_index, key=int)
    except (TypeError, ValueError):
        return None
    if [int(k) for k in keys] != list(range(len(by_index))):
        return None
    return [by_index[k] for k in keys]


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a file: one per line, a JSON list, or a JSON ``{"index": name}`` object.

    Raises:
        FileFormatError: missing file, bad JSON, or no names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError("class-name file not found.", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FileFormatError("not a UTF-8 text file; expected one class name per line.", path=path) from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"invalid JSON ({exc.msg} at line {exc.lineno}).", path=path) from None
        if isinstance(data, dict):
            ordered = _in_index_order(data)
            if ordered is None:
                raise FileFormatError("a JSON object must map every class index '0', '1', ... (no gaps) "
                                      "to a name.", path=path)
            data = ordered
        names = [str(n) for n in data]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise FileFormatError("no class names found; write one name per line.", path=path)
    return names
