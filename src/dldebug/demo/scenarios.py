"""The demo's scenarios, in report order, each with the lessons it exercises.

Each scenario is a function taking a :class:`~dldebug.demo.context.DemoContext` and
returning a ``Report`` (one section of the demo report). Keep each under ~15 s on 2 busy
cores: the whole demo must finish in under 2 minutes (``--quick``: 45 s). A scenario that
needs an optional extra names it in ``extra``; without it the scenario is skipped, not failed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIOS", "Scenario", "scenario_names"]


@dataclass(frozen=True)
class Scenario:
    """One demo scenario.

    Args:
        name: the ``--scenario`` name.
        target: ``"module:function"`` building its section.
        lessons: the lesson numbers (docs/lessons.md) its findings and evidence exercise.
        extra: the optional dependency extra it needs (``"keras"``, ``"transformers"``), if any.
    """

    name: str
    target: str
    lessons: tuple[int, ...]
    extra: str | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("training", "dldebug.demo.training:scenario", ()),
    Scenario("training_signals", "dldebug.demo.training_signals:scenario", (2, 3, 6)),
    Scenario("model_checks", "dldebug.demo.model_checks:scenario", (1, 3)),
    Scenario("transfer", "dldebug.demo.transfer:scenario", (4,)),
    Scenario("locally_connected", "dldebug.demo.locally_connected:scenario", (5,)),
    Scenario("compression", "dldebug.demo.compression:scenario", (7,)),
    Scenario("ctc", "dldebug.demo.ctc:scenario", (8,)),
    Scenario("labels", "dldebug.demo.labels:scenario", (9,)),
    Scenario("keras_port", "dldebug.demo.keras_port:scenario", (10,), extra="keras"),
    Scenario("lr_scaling", "dldebug.demo.lr_scaling:scenario", (11,)),
    Scenario("preflight", "dldebug.demo.preflight:scenario", (3, 11)),
    # Tiny BERT and GPT-2 from their configs (nothing downloaded): the same tools, no wrapper.
    Scenario("hugging_face", "dldebug.demo.hugging_face:scenario", (2, 3, 4, 7, 9, 11), extra="transformers"),
)


def scenario_names() -> list[str]:
    """The names ``dldebug demo --scenario`` accepts, in report order."""
    return [s.name for s in SCENARIOS]
