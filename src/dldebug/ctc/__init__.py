"""CTC set-up checks, a blank-index converter and the reasons behind infinite CTC losses (lesson 8).

``check_ctc`` validates the arguments of ``nn.CTCLoss`` before training;
``dldebug.nn.CheckedCTCLoss`` runs the same checks inside the loss;
``blank_last_to_first`` / ``blank_first_to_last`` port CTC tensors between
TF1/Keras 2 (blank = last class) and PyTorch/TF2/Keras 3 (blank = 0).
"""

from __future__ import annotations

from dldebug.ctc.checks import check_ctc
from dldebug.ctc.convert import blank_first_to_last, blank_last_to_first

__all__ = ["blank_first_to_last", "blank_last_to_first", "check_ctc"]
