"""The demo's scenarios, in report order: (title, "module:function").

Each function takes a :class:`~dldebug.demo.context.DemoContext` and returns a
``Report`` (one section of the demo report). Keep each under ~15 s on 2 cores:
the whole demo must finish in under 2 minutes.
"""

from __future__ import annotations

SCENARIOS: tuple[tuple[str, str], ...] = (
    ("training", "dldebug.demo.training:scenario"),
)
