"""One rank of the 2-process DDP tests (gloo, CPU).

Usage: python ddp_worker.py RANK WORLD_SIZE PORT OUT_DIR MODE

MODE ``nan``: rank 1 sees a NaN batch at step 6. MODE ``raise``: rank 1 raises at step 6, before its
forward pass; rank 0 then fails inside DDP's all-reduce. Both ranks run inside ``with monitor:``,
which records the failure and sends it to rank 0; rank 0 writes OUT_DIR/report/report.json.
"""

from __future__ import annotations

import logging
import sys

import torch
import torch.distributed as dist
from torch import nn

from dldebug import TrainingMonitor


def main(rank: int, world_size: int, port: int, out: str, mode: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(name)s: %(message)s")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(rank)
    with TrainingMonitor(model, every=4, report_dir=f"{out}/report", gather_timeout=30) as monitor:
        for step in range(12):
            x = torch.randn(16, 4, generator=gen)
            if rank == 1 and step == 6:
                if mode == "raise":
                    raise RuntimeError("injected failure on rank 1")
                x[0, 0] = float("nan")
            y = (x[:, 0] > 0).long()
            logits = ddp(x)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            monitor.observe(loss, logits=logits.detach(), targets=y, batch_size=16, lr=0.1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
