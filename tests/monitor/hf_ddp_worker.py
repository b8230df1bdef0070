"""A Hugging Face Trainer run under ``torchrun --nproc_per_node 2`` (gloo, CPU) with the monitor callback.

Usage: python -m torch.distributed.run --nproc_per_node 2 hf_ddp_worker.py OUT_DIR MODE

MODE ``nan``: rank 1 writes NaN into the classifier's weights before step 3. MODE ``raise``: rank 1
raises at step 3. Rank 0 writes OUT_DIR/report/{report.html,report.json}.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch
import transformers

from dldebug.demo.tiny_hf import tiny_bert_classifier
from dldebug.monitor.huggingface import MonitorCallback


class FaultAt(transformers.TrainerCallback):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def on_step_begin(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == 3 and torch.distributed.get_rank() == 1:
            if self.mode == "raise":
                raise RuntimeError("injected failure on rank 1")
            with torch.no_grad():
                model.classifier.weight[0, 0] = math.nan


def main(out: str, mode: str) -> None:
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_info()
    spec = importlib.util.spec_from_file_location("real_runs", Path(__file__).with_name("real_runs.py"))
    assert spec is not None and spec.loader is not None
    real_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_runs)
    args = real_runs.hf_args(Path(out), steps=8, lr=1e-3, ddp_backend="gloo", logging_steps=100)
    callback = MonitorCallback(every=1, report_dir=f"{out}/report", gather_timeout=30)
    real_runs.hf_train(tiny_bert_classifier(num_labels=2), real_runs.TokenData(), args, [FaultAt(mode), callback])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
