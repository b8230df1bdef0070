"""``dldebug demo``: train the digits CNN and run every lesson's scenario into one report."""

from __future__ import annotations

from dldebug.demo.context import DemoContext
from dldebug.demo.runner import DemoEvent, run_demo, run_scenario
from dldebug.demo.scenarios import SCENARIOS, Scenario, scenario_names

__all__ = ["SCENARIOS", "DemoContext", "DemoEvent", "Scenario", "run_demo", "run_scenario", "scenario_names"]
