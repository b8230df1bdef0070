"""A Lightning ``Trainer(strategy="ddp", devices=2, accelerator="cpu")`` run with the monitor callback.

Usage: python lightning_ddp_worker.py OUT_DIR MODE   (Lightning starts rank 1 by running this script again)

MODE ``nan``: rank 1 feeds a NaN input at step 6. MODE ``raise``: rank 1 raises at step 6.
Rank 0 writes OUT_DIR/report/{report.html,report.json}; the summary goes to Lightning's logger.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import torch


def main(out: str, mode: str) -> None:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("real_runs", Path(__file__).with_name("real_runs.py"))
    assert spec is not None and spec.loader is not None
    real_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_runs)
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)
    from dldebug.monitor.lightning import MonitorCallback

    callback = MonitorCallback(every=2, report_dir=f"{out}/report", gather_timeout=30)
    fault = {"nan_at": 6} if mode == "nan" else {"raise_at": 6}
    module = real_runs.lightning_module(lr=0.05, nan_rank=1, **fault)
    real_runs.fit_lightning(module, Path(out), steps=12, callbacks=[callback], strategy="ddp", devices=2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
