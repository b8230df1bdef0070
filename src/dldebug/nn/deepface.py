"""DeepFace (Taigman et al., 2014): the face network of lesson 5, built with locally connected layers.

The layer table, for a 152x152 RGB face crop (sizes as in the paper):

====  ==============================  ==========
name  layer                            output
====  ==============================  ==========
C1    Conv 32@11x11x3, ReLU             32x142x142
M2    max-pool 3x3, stride 2            32x71x71
C3    Conv 16@9x9, ReLU                 16x63x63
L4    LocalConv 16@9x9, ReLU            16x55x55
L5    LocalConv 16@7x7, stride 2, ReLU  16x25x25
L6    LocalConv 16@5x5, ReLU            16x21x21
F7    FC 4096, ReLU, dropout            4096
F8    FC 4030 (softmax in the loss)     4030
====  ==============================  ==========

About 120 million parameters, most in L4 (63 M, unshared) and F7 (29 M).
"""

from __future__ import annotations

from torch import Tensor, nn

from dldebug.errors import ConfigError, InputError
from dldebug.nn.locally_connected import LocallyConnected2d

__all__ = ["DeepFace"]

INPUT_SIZE = 152


class DeepFace(nn.Module):
    """The DeepFace network of lesson 5: shared convolutions, then three locally connected layers.

    Args:
        num_classes: identities of the final softmax layer (4030 in the paper's SFC data set).
        dropout: dropout probability before F8 (the paper applies dropout to F7 only).

    Returns (forward):
        Logits of shape ``(B, num_classes)`` for an input of shape ``(B, 3, 152, 152)``.

    Example:
        >>> model = DeepFace(num_classes=10)
        >>> [name for name, _ in model.named_children()]
        ['c1', 'm2', 'c3', 'l4', 'l5', 'l6', 'f7', 'f8']
    """

    def __init__(self, num_classes: int = 4030, dropout: float = 0.5) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int; got {num_classes!r}.")
        self.c1 = nn.Sequential(nn.Conv2d(3, 32, 11), nn.ReLU())
        # ceil_mode gives the paper's 71x71 map from 142x142.
        self.m2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.c3 = nn.Sequential(nn.Conv2d(32, 16, 9), nn.ReLU())
        self.l4 = nn.Sequential(LocallyConnected2d(16, 16, input_size=63, kernel_size=9), nn.ReLU())
        self.l5 = nn.Sequential(LocallyConnected2d(16, 16, input_size=55, kernel_size=7, stride=2), nn.ReLU())
        self.l6 = nn.Sequential(LocallyConnected2d(16, 16, input_size=25, kernel_size=5), nn.ReLU())
        self.f7 = nn.Sequential(nn.Flatten(), nn.Linear(16 * 21 * 21, 4096), nn.ReLU(), nn.Dropout(dropout))
        self.f8 = nn.Linear(4096, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The F7 representation (4096 values per face), the paper's face descriptor."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise InputError(f"DeepFace expects faces of shape (N, 3, {INPUT_SIZE}, {INPUT_SIZE}); got "
                             f"{tuple(x.shape)}. Align and crop faces to {INPUT_SIZE}x{INPUT_SIZE} RGB first.")
        for block in (self.c1, self.m2, self.c3, self.l4, self.l5, self.l6, self.f7):
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for faces ``(B, 3, 152, 152)``."""
        return self.f8(self.features(x))

