"""The demo's scenarios, in report order: (title, "module:function").

Each function takes a :class:`~dldebug.demo.context.DemoContext` and returns a
``Report`` (one section of the demo report). Keep each under ~15 s on 2 cores:
the whole demo must finish in under 2 minutes.
"""

from __future__ import annotations

SCENARIOS: tuple[tuple[str, str], ...] = (
    ("training", "dldebug.demo.training:scenario"),
    ("training_signals", "dldebug.demo.training_signals:scenario"),  # lessons 2, 3, 6, 11
    ("model_checks", "dldebug.demo.model_checks:scenario"),  # lessons 1, 3, 4
    ("locally_connected", "dldebug.demo.locally_connected:scenario"),  # lesson 5
    ("compression", "dldebug.demo.compression:scenario"),  # lesson 7
    ("ctc", "dldebug.demo.ctc:scenario"),  # lesson 8
    ("labels", "dldebug.demo.labels:scenario"),  # lesson 9
    ("keras_port", "dldebug.demo.keras_port:scenario"),  # lesson 10
    ("lr_scaling", "dldebug.demo.lr_scaling:scenario"),  # lesson 11
    ("preflight", "dldebug.demo.preflight:scenario"),  # lessons 3, 11
)
