"""Demo scenario (lesson 8): a CRNN reads digit sequences with CTC; first with no blank class, then fixed.

The buggy model has 10 outputs for 10 digits, so the blank has no class:
``check_ctc`` names it before a single step is taken, and ``CheckedCTCLoss``
refuses the batch instead of returning a silent garbage or NaN loss. The fixed
model (11 outputs) trains for real with the checked loss and is scored by
greedy decoding on held-out sequences built from the digits' test split.
"""

from __future__ import annotations

import torch

from dldebug.ctc import check_ctc
from dldebug.demo.context import DemoContext
from dldebug.demo.ctc_digits import (
    CRNN,
    CTCTrainHistory,
    DigitSequences,
    digit_sequence_split,
    greedy_decode,
    train_crnn,
)
from dldebug.errors import TrainingCheckError
from dldebug.findings import Figure, Report, Series, Table
from dldebug.nn.ctc_loss import CheckedCTCLoss

__all__ = ["scenario"]

NUM_LABELS = 10
_BATCH = 64


def scenario(ctx: DemoContext) -> Report:
    epochs = 3 if ctx.quick else 5
    train, test = digit_sequence_split(ctx.data, seed=ctx.seed)
    first = slice(0, _BATCH)
    batch_args = (train.targets[first], train.input_lengths[first], train.target_lengths[first])

    torch.manual_seed(ctx.seed)
    buggy = CRNN(num_classes=NUM_LABELS)  # lesson 8: the +1 for the blank is forgotten
    with torch.no_grad():
        buggy_log_probs = buggy(train.images[first])
    bug_report = check_ctc(buggy_log_probs, *batch_args, num_labels=NUM_LABELS)
    try:
        CheckedCTCLoss(num_labels=NUM_LABELS)(buggy_log_probs, *batch_args)
        refusal = "(no error)"
    except TrainingCheckError as error:
        refusal = str(error).splitlines()[0]

    torch.manual_seed(ctx.seed)
    model = CRNN(num_classes=NUM_LABELS + 1)
    loss_fn = CheckedCTCLoss(num_labels=NUM_LABELS)
    history = train_crnn(model, train, test, epochs=epochs, seed=ctx.seed, loss_fn=loss_fn)
    fixed_report = loss_fn.last_report
    fixed_problems = [] if fixed_report is None else [f.check for f in fixed_report.filter(min_severity="warning")]
    setups = Table(
        "ctc.setups", ("set-up", "output classes", "check_ctc findings (warning+)", "CheckedCTCLoss"),
        (("buggy: C = 10 labels, no blank", NUM_LABELS,
          ", ".join(f.check for f in bug_report.filter(min_severity="warning")), refusal),
         ("fixed: C = 10 labels + blank", NUM_LABELS + 1, ", ".join(fixed_problems) or "none",
          f"trained {epochs} epochs in {history.seconds:.1f} s")),
        caption="Both set-ups are checked on the same first batch of 64 sequences, before any training step.",
    )
    return Report(
        bug_report.own_findings, title="CTC: the missing blank class (lesson 8)",
        tables=(setups, _accuracy_table(history, len(test)), _examples_table(model, test)),
        figures=(_curve(history, epochs),),
        meta={"final_sequence_accuracy": history.test_accuracy[-1], "epochs": epochs,
              "train_seconds": round(history.seconds, 2), "train_sequences": len(train),
              "test_sequences": len(test)},
    )


def _curve(history: CTCTrainHistory, epochs: int) -> Figure:
    return Figure(
        "ctc.training_curve", title="Fixed CRNN: CTC loss per step",
        series=(Series("CTC loss (CheckedCTCLoss, mean)", history.steps, history.losses),),
        markers=tuple((step, f"epoch {i + 1}") for i, step in enumerate(history.epoch_steps)),
        xlabel="step", ylabel="CTC loss", logy=True,
        caption=(f"{epochs} epochs of Adam (lr 5e-3, batch 64) on sequences of 2-5 digits. The early flat "
                 "stretch is CTC emitting only blanks before it finds the labels (lesson 2's plateau)."
                 + (" Quick mode: a shorter run than the default 5 epochs." if epochs < 5 else "")),
    )


def _accuracy_table(history: CTCTrainHistory, count: int) -> Table:
    rows = tuple((i + 1, step, round(acc, 4))
                 for i, (step, acc) in enumerate(zip(history.epoch_steps, history.test_accuracy, strict=True)))
    return Table("ctc.sequence_accuracy", ("epoch", "last step", "held-out sequence accuracy"), rows,
                 caption=f"Greedy (best-path) decoding, exact match of the whole sequence, on {count} held-out "
                         "sequences built only from test-split digits.")


def _examples_table(model: CRNN, test: DigitSequences, count: int = 8) -> Table:
    model.eval()
    with torch.no_grad():
        decoded = greedy_decode(model(test.images[:count]), test.input_lengths[:count])
    rows = tuple((i, "".join(map(str, test.digits(i))), "".join(str(label - 1) for label in labels),
                  test.digits(i) == [label - 1 for label in labels])
                 for i, labels in enumerate(decoded))
    return Table("ctc.decoded_examples", ("sequence", "digits", "greedy decoding", "correct"), rows)
