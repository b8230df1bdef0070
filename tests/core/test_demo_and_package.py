"""The demo writes its report; `import dldebug` needs only the core; public names resolve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dldebug
from dldebug.demo import run_demo
from dldebug.errors import InputError


def test_quick_training_demo_writes_html_and_json(tmp_path):
    report = run_demo(tmp_path / "out", scenarios=["training"], quick=True)
    html = (tmp_path / "out" / "index.html").read_text()
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "Digits CNN: training loss per step" in html and "<svg" in html
    assert data["sections"][0]["figures"][0]["name"] == "digits.training_curve"
    acc = report.table("digits.accuracy").column("test accuracy")
    assert acc[-1] > 0.8  # 4 quick epochs on the digits already learn most classes


def test_unknown_scenario_is_named():
    with pytest.raises(InputError, match=r"Unknown demo scenario\(s\) \['nope'\]; choose from"):
        run_demo("unused", scenarios=["nope"])


def test_import_needs_only_the_core():
    blocked = ["onnx", "onnxruntime", "tensorflow", "tf_keras", "keras", "lightning", "transformers",
               "tensorboard", "sklearn", "matplotlib", "scipy"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import dldebug\n"
        "r = dldebug.Report([dldebug.Finding('a.b', dldebug.Severity.INFO, 'm')])\n"
        "assert dldebug.Report.from_json(r.to_json()) == r\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("name", dldebug.__all__)
def test_every_public_name_resolves(name):
    assert getattr(dldebug, name) is not None


def test_all_is_sorted_and_unique():
    assert list(dldebug.__all__) == sorted(set(dldebug.__all__))
