"""Demo scenario: the tools on real Hugging Face architectures, used as they are (no wrapper).

Tiny BERT and GPT-2 are built from their configs (random weights, nothing downloaded). A BERT
classifier takes dict batches and computes its own loss from ``labels`` (``loss_fn=None``); the
pre-flight doctor passes the correct set-up and names planted out-of-range labels (lessons 3, 9); the
training monitor reads the loss and logits from the ``ModelOutput`` and tells a healthy AdamW run
from one at lr 10 that blows up at once (lessons 2, 11); the transfer cut lands between
transformer blocks (lesson 4); and GPT-2's ``Conv1D`` projections are compressed while its tied
``lm_head`` is kept (lesson 7), with the model's real parameter counts.
"""

from __future__ import annotations

import torch

from dldebug.checks.transfer import transfer_report
from dldebug.compress import compress_linear_layers
from dldebug.demo.context import DemoContext
from dldebug.demo.tiny_hf import tiny_bert_classifier, tiny_gpt2_lm
from dldebug.findings import Figure, Report, Series, Severity, Table
from dldebug.monitor import TrainingMonitor
from dldebug.preflight import preflight

__all__ = ["scenario", "token_task"]

NUM_LABELS = 3
HEALTHY_LR, HIGH_LR = 5e-4, 10.0


def token_task(batch: int, seed: int) -> dict[str, torch.Tensor]:
    """A learnable token task: the class (0..2) is written in the first token of 12; the rest is noise."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_LABELS, 100, (batch, 12), generator=generator)
    labels = torch.randint(0, NUM_LABELS, (batch,), generator=generator)
    ids[:, 0] = labels
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _train(lr: float, steps: int, seed: int) -> tuple[list[float], Report]:
    model = tiny_bert_classifier(num_labels=NUM_LABELS, seed=seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    monitor = TrainingMonitor(model, every=5)
    losses = []
    try:
        for step in range(steps):
            batch = token_task(16, 1000 + step)
            outputs = model(**batch)  # a SequenceClassifierOutput holding loss and logits
            outputs.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            monitor.observe(outputs, targets=batch["labels"], batch_size=16, lr=lr)
            losses.append(float(outputs.loss))
        report = monitor.report()
    finally:
        monitor.close()
    serious = report.filter(min_severity=Severity.WARNING)
    report.title = f"BERT, AdamW lr {lr:g}: " + (", ".join(dict.fromkeys(f.check for f in serious)) if serious
                                                 else f"no problem found in {steps} steps")
    return losses, report


def _preflight_section(ctx: DemoContext) -> Report:
    model = tiny_bert_classifier(num_labels=NUM_LABELS, seed=ctx.seed).train()
    batch = token_task(32, ctx.seed)
    healthy = preflight(model, batch, None, torch.optim.AdamW(model.parameters(), lr=1e-3))
    healthy.title = "Pre-flight, dict batch with labels, loss_fn=None: " + (
        "no findings" if not healthy.findings else f"{len(healthy.findings)} finding(s)")
    planted = dict(batch, labels=batch["labels"].clone())
    planted["labels"][0] = NUM_LABELS  # one label past the 3 classes
    broken = preflight(model, planted, None, torch.optim.AdamW(model.parameters(), lr=1e-3))
    broken.title = f"Pre-flight, planted: a label of {NUM_LABELS} for a {NUM_LABELS}-class head"
    return Report(title="Pre-flight doctor on BertForSequenceClassification", sections=(healthy, broken))


def _training_section(ctx: DemoContext) -> Report:
    steps = 40 if ctx.quick else 80
    healthy_losses, healthy = _train(HEALTHY_LR, steps, ctx.seed)
    high_losses, high = _train(HIGH_LR, steps, ctx.seed)
    figure = Figure("hf.bert_training", title="Tiny BERT on a token task: two learning rates",
                    series=(Series(f"AdamW lr {HEALTHY_LR:g}", range(steps), healthy_losses),
                            Series(f"AdamW lr {HIGH_LR:g}", range(steps), high_losses)),
                    xlabel="step", ylabel="cross-entropy (outputs.loss)", logy=True,
                    caption="TrainingMonitor.observe(outputs) reads the loss and logits from the ModelOutput.")
    return Report(title="Training monitor on a Hugging Face model", figures=(figure,), sections=(healthy, high))


def _structure_section(ctx: DemoContext) -> Report:
    bert = tiny_bert_classifier(num_labels=NUM_LABELS, seed=ctx.seed)
    transfer = transfer_report(bert, num_classes=NUM_LABELS)  # the cut lands between encoder blocks
    transfer.title = "Transfer cut on BertForSequenceClassification"
    gpt2 = tiny_gpt2_lm(seed=ctx.seed)
    result = compress_linear_layers(gpt2, rank=4)
    table = Table("hf.gpt2_compression", ("model parameters", "before", "after"),
                  (("unique (a tied tensor once)", result.model_params_before, result.model_params_after),))
    compression = Report(result.report.findings, title="Truncated SVD of GPT2LMHeadModel (rank 4)",
                         tables=(table, result.table))
    return Report(title="Transfer cut (BERT) and compression (GPT-2)", sections=(transfer, compression))


def scenario(ctx: DemoContext) -> Report:
    sections = []
    for done, build in enumerate((_preflight_section, _training_section, _structure_section), start=1):
        sections.append(build(ctx))
        ctx.advance(done, 3)
    return Report(title="Hugging Face models as they are: BERT and GPT-2 from tiny configs",
                  sections=tuple(sections))
