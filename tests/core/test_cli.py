"""The CLI's exit statuses and messages: 0 ok, 1 --fail-on matched, 2 bad input, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dldebug import Finding, Report, Severity, __version__
from dldebug.cli.app import build_app, main
from dldebug.cli.registry import CommandSpec

DLDEBUG = str(Path(sys.executable).with_name("dldebug"))


def run(args, capsys, application=None):
    code = main(args, application=application)
    out = capsys.readouterr()
    return code, out.out, out.err


def write_report(path: Path, *severities: Severity) -> Path:
    findings = [Finding(f"demo.{s.value}", s, f"a {s.value} finding") for s in severities]
    Report(findings).save_json(path)
    return path


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert (code, out.strip()) == (0, f"dldebug {__version__}")


@pytest.mark.parametrize(
    ("severities", "fail_on", "expected"),
    [
        ((Severity.ERROR,), None, 0),
        ((Severity.ERROR,), "error", 1),
        ((Severity.WARNING,), "error", 0),
        ((Severity.WARNING,), "warning", 1),
        ((Severity.INFO,), "warning", 0),
        ((), "warning", 0),
    ],
)
def test_fail_on_exit_status(tmp_path, capsys, severities, fail_on, expected):
    path = write_report(tmp_path / "r.json", *severities)
    args = ["show", str(path)] + (["--fail-on", fail_on] if fail_on else [])
    code, out, _ = run(args, capsys)
    assert code == expected
    assert f"{len(severities)} finding(s)" in out


def test_missing_file_is_one_message_exit_2(tmp_path, capsys):
    code, out, err = run(["show", str(tmp_path / "nope.json")], capsys)
    assert code == 2
    assert "nope.json: report file not found." in " ".join(err.split())
    assert "Traceback" not in out + err


def test_corrupt_report_is_one_message_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"findings": [{"check": "a"}')
    code, _, err = run(["show", str(path)], capsys)
    assert code == 2 and "not a dldebug JSON report" in err


def test_usage_error_exit_2(capsys):
    code, _, err = run(["show", "--no-such-option"], capsys)
    assert code == 2 and "No such option" in err


def test_json_output_round_trips(tmp_path, capsys):
    path = write_report(tmp_path / "r.json", Severity.WARNING)
    code, out, _ = run(["show", str(path), "--json", "--html", str(tmp_path / "r.html")], capsys)
    assert code == 0
    assert Report.from_json(out) == Report.from_json(path.read_text())
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_command_with_missing_extra_still_lists_and_says_what_to_install(capsys):
    specs = (CommandSpec("show", "dldebug.cli.show", "Print a report."),
             CommandSpec("port", "dldebug.cli.show", "Compare ports.", requires=("surely_not_installed_mod",),
                         extra="onnx"))
    application = build_app(specs)
    code, out, _ = run(["--help"], capsys, application)
    assert code == 0 and "port" in out and "pip install 'dldebug[onnx]'" in " ".join(out.split())
    code, out, err = run(["port", "model.onnx", "--anything"], capsys, application)
    assert code == 2
    assert ("dldebug port needs the optional package 'surely_not_installed_mod', which is not installed. "
            "Install it with: pip install 'dldebug[onnx]'") in " ".join(err.split())
    code, _, _ = run(["--version"], capsys, application)  # the other commands keep working
    assert code == 0


def test_internal_errors_are_reported_without_traceback(capsys, monkeypatch):
    import dldebug.findings

    def broken(_text):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(dldebug.findings.Report, "from_json", classmethod(lambda cls, t: broken(t)))
    monkeypatch.delenv("DLDEBUG_DEBUG", raising=False)
    path = Path(__file__)  # any readable file
    code, out, err = run(["show", str(path)], capsys)
    assert code == 3
    assert "internal error: ZeroDivisionError: boom" in err and "Traceback" not in out + err


def test_console_script_end_to_end(tmp_path):
    proc = subprocess.run([DLDEBUG, "show", str(tmp_path / "missing.json")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_model_file_is_one_message_exit_2(tmp_path):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(b"PK\x03\x04 this is not a torch.export archive")
    proc = subprocess.run([DLDEBUG, "audit", str(bad), "--input", "1x1x8x8"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "model.pt2: not a torch.export archive" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout


BLOCKER = """
import sys
BLOCKED = {"onnx", "onnxruntime"}
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, _Blocker())
"""


def test_missing_optional_extra_end_to_end(tmp_path):
    """With onnx really unimportable, an .onnx model names the extra to install; other commands still work."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([DLDEBUG, "audit", str(model), "--input", "1x4"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "needs the optional package 'onnx'" in proc.stderr
    assert "pip install 'dldebug[onnx]'" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    ok = subprocess.run([DLDEBUG, "lr", "--base-lr", "0.1", "--base-batch", "256", "--batch", "512"],
                        capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0 and "lr.scaled" in ok.stdout


def test_compare_input_that_looks_like_a_shape_gets_a_hint(tmp_path, capsys, monkeypatch):
    (tmp_path / "nets.py").write_text("import torch\n\ndef a():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["compare", "nets:a", "nets:a", "--input", "1x4"], capsys)
    assert code == 2
    assert "looks like a shape: use --input ones --shape 1x4." in " ".join(err.split())


@pytest.mark.parametrize(("error", "expected"), [
    (PermissionError(13, "Permission denied", "/data/r.json"), 2),
    (OSError(28, "No space left on device", "/data/out.html"), 2),
    (IsADirectoryError(21, "Is a directory", "/data"), 2),
    (OSError(5, "Input/output error"), 3),  # not the user's paths: still reported as a dldebug bug
])
def test_file_system_errors_are_bad_input_not_bugs(capsys, monkeypatch, tmp_path, error, expected):
    import dldebug.findings

    def broken(_text):
        raise error

    monkeypatch.setattr(dldebug.findings.Report, "from_json", classmethod(lambda cls, t: broken(t)))
    monkeypatch.delenv("DLDEBUG_DEBUG", raising=False)
    code, out, err = run(["show", str(write_report(tmp_path / "r.json"))], capsys)
    assert code == expected
    assert "Traceback" not in out + err
    if expected == 2:
        assert f"error: {error.filename}: {error.strerror}. Check the path" in " ".join(err.split())
    else:
        assert "internal error: OSError" in err
