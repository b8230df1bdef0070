"""The inputs of a comparison: one tensor, a tuple (positional) or a dict (keyword), dtypes kept.

``ModelInputs`` is the one form every runner is fed. Binding it to a model checks
each input's shape and dtype against what the model declares (ONNX graph inputs,
Keras ``model.inputs``) and moves an image input to the model's own layout when
the shapes make that unambiguous: as given if it fits, else transposed if that
fits, else a clear error. Integer inputs (token ids, masks) are never cast to float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dldebug.compare.layout import convert_layout
from dldebug.compare.records import InputSpec, Layout
from dldebug.errors import ConfigError, InputError

__all__ = ["BoundInputs", "ModelInputs", "bind_inputs", "make_inputs", "source_layouts", "to_numpy"]

Style = Literal["single", "positional", "named"]


_MAX_GENERATED = 2**28  # elements of a generated input (1 GiB of float32)


def to_numpy(value: Any) -> np.ndarray:
    """A tensor/array as numpy with its dtype kept (float64, float16 and bfloat16 become float32).

    Example:
        >>> import torch
        >>> to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype
        dtype('float32')
    """
    return _converted(value)[0]


def _converted(value: Any) -> tuple[np.ndarray, str]:
    """The array, and its original dtype when it was upcast to float32 ("" when it was not)."""
    source = ""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if getattr(value, "is_floating_point", lambda: False)() and value.element_size() < 4:
            source = str(value.dtype).replace("torch.", "")  # numpy has no bfloat16
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == np.float16:
        source = "float16"
    if array.dtype == np.float64 or array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype == np.bool_ or array.dtype.kind not in "fiub":
        raise InputError(f"inputs must be numeric tensors or arrays; got one of dtype {array.dtype}.")
    return array, source


@dataclass
class ModelInputs:
    """Arrays in order, with their names (keyword inputs) or positions, and how the model is called."""

    arrays: list[np.ndarray]
    names: list[str | None]
    style: Style
    converted: list[str] = field(default_factory=list)  # "input #0: bfloat16 -> float32"

    @classmethod
    def from_user(cls, value: Any) -> ModelInputs:
        """A tensor/array, a tuple/list of them (positional) or a mapping name -> tensor (keyword).

        Half-precision floats (float16, bfloat16) are upcast to float32 and listed in ``converted``.

        Raises:
            InputError: an empty tuple/dict, a name that is not a string, a value that is not a tensor.
        """
        if isinstance(value, Mapping):
            if not value:
                raise InputError("inputs is an empty dict; give {'input_ids': ids, 'attention_mask': mask, ...}.")
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise InputError(f"inputs dict keys must be input names (strings); got {bad[0]!r}.")
            items: list[tuple[str | None, Any]] = list(value.items())
            style: Style = "named"
        elif isinstance(value, (tuple, list)):
            if not value:
                raise InputError("inputs is an empty tuple; give one tensor or a tuple of the model's inputs.")
            items, style = [(None, v) for v in value], "positional"
        else:
            items, style = [(None, value)], "single"
        arrays, converted = [], []
        for index, (name, item) in enumerate(items):
            array, source = _converted(item)
            arrays.append(array)
            if source:
                converted.append(f"input {repr(name) if name is not None else f'#{index}'}: {source} -> float32")
        return cls(arrays, [n for n, _ in items], style, converted)

    def check_values(self) -> None:
        """Refuse empty inputs and NaN/Inf values: a comparison of NaNs reports a divergence that is not there.

        Raises:
            InputError: naming the input, its shape and what is wrong.
        """
        for index, array in enumerate(self.arrays):
            if array.size == 0:
                raise InputError(f"input {self.label(index)} has shape {list(array.shape)}: no elements to run the "
                                 "models on. Give at least one sample.")
            if array.dtype.kind == "f":
                bad = int(array.size - np.count_nonzero(np.isfinite(array)))
                if bad:
                    raise InputError(f"input {self.label(index)} holds {bad} NaN/Inf value(s) of {array.size}: "
                                     "both models would output NaN and every layer would look divergent. Give "
                                     "finite inputs.")

    def label(self, index: int) -> str:
        name = self.names[index]
        return repr(name) if name is not None else f"#{index}"

    def describe(self) -> dict[str, Any]:
        return {(n if n is not None else str(i)): {"shape": list(a.shape), "dtype": str(a.dtype)}
                for i, (n, a) in enumerate(zip(self.names, self.arrays, strict=True))}


@dataclass
class BoundInputs:
    """One model's inputs after binding: arrays in the model's order and layout, plus what was done."""

    inputs: ModelInputs
    transposed: list[str] = field(default_factory=list)


def _is_shape(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and bool(value) \
        and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in value)


def make_inputs(inputs: Any, input_kind: Any, specs: list[list[InputSpec] | None], seed: int) -> ModelInputs:
    """The user's inputs, or ones/random inputs of a given shape or of the shapes a model declares.

    Raises:
        ConfigError: an unknown ``input_kind`` or an input given twice.
        InputError: no shape can be found.
    """
    kind_is_tensor = not isinstance(input_kind, str)
    if not kind_is_tensor and input_kind not in ("ones", "random"):
        raise ConfigError(f"input_kind must be 'ones', 'random' or a tensor; got {input_kind!r}.")
    if kind_is_tensor and not (hasattr(input_kind, "shape") and hasattr(input_kind, "dtype")):
        raise ConfigError(f"input_kind must be 'ones', 'random' or a tensor; got {input_kind!r:.100} "
                          f"({type(input_kind).__name__}). A shape or several inputs go in inputs=.")
    if kind_is_tensor and inputs is not None:
        raise ConfigError("give the input tensor once: either inputs=... or input_kind=<tensor>, not both.")
    given = input_kind if kind_is_tensor else inputs
    if given is not None and not _is_shape(given):
        return ModelInputs.from_user(given)
    random = input_kind == "random"
    rng = np.random.default_rng(seed)
    if given is not None:
        return ModelInputs([_generated(_checked_shape(given), "float32", random, rng)], [None], "single")
    declared = next((s for s in specs if s), None)
    if declared is None:
        raise InputError("cannot tell the input shape: neither model declares one (PyTorch modules do not). "
                         "Pass inputs=(1, 3, 32, 32) (a shape) or a tensor, a tuple or a dict of tensors.")
    arrays = []
    for spec in declared:
        if spec.shape is None or any(d is None for d in spec.shape[1:]):
            raise InputError(f"cannot make input {spec.name!r}: its shape {list(spec.shape or [])} has free sizes. "
                             "Pass the inputs (a tensor, or a dict name -> tensor).")
        arrays.append(_generated(_checked_shape(tuple(1 if d is None else int(d) for d in spec.shape)), spec.dtype,
                                 random, rng))
    if len(arrays) == 1:
        return ModelInputs(arrays, [None], "single")
    return ModelInputs(arrays, [s.name for s in declared], "named")


def _checked_shape(shape: Sequence[Any]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d <= 0 for d in dims):
        raise InputError(f"input shape {list(dims)} has a size <= 0; every dimension must be >= 1, "
                         "e.g. (1, 3, 32, 32).")
    if math.prod(dims) > _MAX_GENERATED:
        raise InputError(f"input shape {list(dims)} has {math.prod(dims):,} elements, more than the {_MAX_GENERATED:,} "
                         "dldebug generates; give a smaller shape (one sample is enough to compare layers).")
    return dims


def _generated(shape: tuple[int, ...], dtype: str | None, random: bool, rng: np.random.Generator) -> np.ndarray:
    if dtype is not None and np.dtype(dtype).kind in "iub":
        return np.ones(shape, np.dtype(dtype))  # token ids / masks: 1 is valid for any vocabulary
    if random:
        return rng.standard_normal(shape).astype(np.float32)
    return np.ones(shape, np.float32)


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...] | None) -> bool:
    if expected is None:
        return True
    return len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape, strict=True))


def _other(layout: Layout) -> Layout:
    return "channels_last" if layout == "channels_first" else "channels_first"


def source_layouts(given: ModelInputs, declared: list[list[InputSpec] | None], default: Layout) -> list[Layout]:
    """The layout each given array is in: where a model declares it, the one in which its shape fits as given."""
    out: list[Layout] = []
    for index, array in enumerate(given.arrays):
        layout: Layout = default
        for specs in declared:
            spec = _spec_for(given, index, specs) if specs else None
            if spec is None or spec.shape is None or array.ndim < 3:
                continue
            if _fits(array.shape, spec.shape):
                layout = spec.layout
                break
            if _fits(convert_layout(array, _other(spec.layout), spec.layout).shape, spec.shape):
                layout = _other(spec.layout)
                break
        out.append(layout)
    return out


def _spec_for(given: ModelInputs, index: int, specs: list[InputSpec]) -> InputSpec | None:
    name = given.names[index]
    if given.style == "named":
        return next((s for s in specs if s.name == name), None)
    return specs[index] if index < len(specs) else None


def bind_inputs(given: ModelInputs, specs: list[InputSpec] | None, layout: Layout, sources: list[Layout],
                side: str, framework: str) -> BoundInputs:
    """``given`` as model ``side`` takes it: names/positions resolved, layouts moved, shapes and dtypes checked.

    Args:
        given: the inputs.
        specs: what the model declares (None: a PyTorch module, which declares nothing).
        layout: the model's own image layout, used when it declares no shapes.
        sources: the layout each given array is in (:func:`source_layouts`).
        side: ``"a"`` or ``"b"``, for messages.
        framework: the model's framework, for messages.

    Raises:
        InputError: a missing or unknown input name, a wrong count, shape or dtype.
    """
    if specs is None:
        arrays, transposed = [], []
        for i, array in enumerate(given.arrays):
            moved = convert_layout(array, sources[i], layout) if array.ndim >= 4 else array
            if moved is not array:
                transposed.append(f"input {given.label(i)} {list(array.shape)} -> {list(moved.shape)} ({layout})")
            arrays.append(np.require(moved, requirements="C"))  # keeps 0-d inputs 0-d
        return BoundInputs(ModelInputs(arrays, list(given.names), given.style), transposed)
    order = _order(given, specs, side, framework)
    arrays, transposed = [], []
    for spec, index in zip(specs, order, strict=True):
        array = given.arrays[index]
        moved = _placed(array, spec, sources[index], side, framework)
        if moved is not array:
            transposed.append(f"input {spec.name!r} {list(array.shape)} -> {list(moved.shape)} ({spec.layout})")
        arrays.append(np.require(_typed(moved, spec, side, framework), requirements="C"))
    return BoundInputs(ModelInputs(arrays, [s.name for s in specs], "named"), transposed)


def _order(given: ModelInputs, specs: list[InputSpec], side: str, framework: str) -> list[int]:
    names = [s.name for s in specs]
    if given.style == "named":
        unknown = [n for n in given.names if n not in names and n not in ("labels", "label")]
        missing = [n for n in names if n not in given.names]
        if unknown or missing:
            raise InputError(f"model {side} ({framework}) takes inputs {names}; the inputs "
                             + (f"lack {missing}" if missing else "") + (" and " if missing and unknown else "")
                             + (f"name {unknown}, which it does not have" if unknown else "")
                             + ". Give a dict with exactly these names.")
        return [given.names.index(n) for n in names]
    if len(given.arrays) != len(specs):
        raise InputError(f"model {side} ({framework}) takes {len(specs)} input(s) {names}; got "
                         f"{len(given.arrays)}. Give a dict {{name: tensor}} with these names.")
    return list(range(len(specs)))


def _placed(array: np.ndarray, spec: InputSpec, source: Layout, side: str, framework: str) -> np.ndarray:
    candidates = [array]
    if array.ndim >= 3:
        moved = convert_layout(array, source, spec.layout)
        candidates = [moved, array] if moved is not array else [array]
        if array.ndim == 3:  # a sequence moves only when it must
            candidates.reverse()
    for candidate in candidates:
        if _fits(candidate.shape, spec.shape):
            return candidate
    if array.ndim >= 4:
        flipped = convert_layout(array, _other(spec.layout), spec.layout)
        if _fits(flipped.shape, spec.shape):
            return flipped
    raise InputError(f"input {spec.name!r} has shape {list(array.shape)}; model {side} ({framework}) expects "
                     f"{list(spec.shape or [])} ({spec.layout}, None = any size), and no layout transpose fits. "
                     "Give inputs with the size the models expect.")


def _typed(array: np.ndarray, spec: InputSpec, side: str, framework: str) -> np.ndarray:
    if spec.dtype is None or array.dtype == np.dtype(spec.dtype):
        return array
    want = np.dtype(spec.dtype)
    if want.kind in "iub" and array.dtype.kind == "f":
        raise InputError(f"input {spec.name!r} of model {side} ({framework}) is {want} (token ids, masks); got "
                         f"{array.dtype}. Give integer arrays, e.g. ids.astype(np.int64).")
    return array.astype(want)
