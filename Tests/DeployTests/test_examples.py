"""The bundled example: `make demo` (examples/demo.py) end to end, and `anduin test` on the example's
tests, with the built binary (.build/debug/anduin, or $ANDUIN_BIN), so neither can rot.

The demo needs osmem-server in .venv-test (`make test-deps`); it runs on 127.0.0.1 only.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def anduin_binary():
    path = os.environ.get("ANDUIN_BIN") or str(ROOT / ".build" / "debug" / "anduin")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built (swift build); set ANDUIN_BIN to use another binary")
    return path


def json_objects(text):
    """The pretty-printed JSON objects in the demo's output, in order."""
    out, depth, start = [], 0, None
    for i, line in enumerate(text.splitlines()):
        if line == "{":
            depth, start = 1, i
        elif line == "}" and start is not None:
            out.append(json.loads("\n".join(text.splitlines()[start:i + 1])))
            start = None
    return out


def test_demo_runs_the_main_job_end_to_end(tmp_path):
    p = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), anduin_binary(), "--dir", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = p.stdout
    assert p.returncode == 0, f"demo exited {p.returncode}\n{out}\n{p.stderr}"
    assert re.search(r"^12 documents in logs-\*: ", out, re.M), out
    assert "kubernetes.namespace_name: payments AND level: error → 2 hits" in out, out
    hits = json_objects(out)
    assert [h["msg"] for h in hits] == ["card declined", "refund failed"], out
    for h in hits:
        assert h["level"] == "error"
        assert h["kubernetes"]["namespace_name"] == "payments"
        assert h["kubernetes"]["pod_name"] == "api-7d9f8b6c5-x2k4q"
        assert h["kubernetes"]["container_name"] == "server"
        assert h["log"]["file"]["path"].endswith(".log")
    assert "the Java stack trace, 6 lines joined into one document:" in out, out
    assert "  \tat java.base/sun.nio.ch.Net.connect0(Native Method)" in out, out
    # `anduin status`: every line read and checkpointed, the trace's lines joined (not dropped), every
    # record delivered to both outputs.
    assert re.search(r"^OK: caught up, every output delivering$", out, re.M), out
    # 17 lines read, the 6 of the Java trace joined by the tail's multiline: into one record.
    assert re.search(r"^containers +tail +2 +0 +0 B +- +12 +0$", out, re.M), out  # files, files behind, behind, catch up
    assert re.search(r"^search +elasticsearch +12 +0 +12 +0 +0 +0 +0 +0 ", out, re.M), out
    assert re.search(r"^archive +file +12 +0 +12 ", out, re.M), out
    assert "pending (queued, buffered, in flight, retrying) (holds); filters dropped 0 record(s)" in out, out
    assert "stopped anduin with SIGTERM (exit 0); 12 records in" in out, out
    assert "stopped osmem-server" in out and "demo ok in" in out, out


def run_anduin_test(tests):
    return subprocess.run([anduin_binary(), "test", "--config", str(EXAMPLES / "anduin.yaml"), "--tests", str(tests)],
                          capture_output=True, text=True, timeout=60)


def test_anduin_test_passes_on_the_example_tests():
    p = run_anduin_test(EXAMPLES / "anduin.tests.yaml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "4 tests: 4 passed, 0 failed", p.stdout


def test_anduin_test_passes_on_the_parsing_examples():
    p = subprocess.run([anduin_binary(), "test", "--config", str(EXAMPLES / "parsing.yaml"),
                        "--tests", str(EXAMPLES / "parsing.tests.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "4 tests: 4 passed, 0 failed", p.stdout


def test_anduin_test_fails_with_a_readable_diff(tmp_path):
    broken = tmp_path / "anduin.tests.yaml"
    text = (EXAMPLES / "anduin.tests.yaml").read_text()
    text = text.replace("            level: error\n            msg: card declined",
                        "            level: warn\n            msg: card declined", 1)
    assert "level: warn\n            msg: card declined" in text
    broken.write_text(text)
    p = run_anduin_test(broken)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "4 tests: 3 passed, 1 failed", p.stdout
    fail = next(i for i, l in enumerate(lines) if l.startswith("FAIL  a CRI JSON line is lifted"))
    assert re.match(rf"FAIL  .*\({re.escape(str(broken))}:\d+:\d+\)$", lines[fail]), p.stdout
    assert re.match(r'^    level: expected "warn", got "error"  \(.*anduin\.tests\.yaml:\d+:\d+\)$', lines[fail + 2]), p.stdout
    assert "  records at parse:" in p.stdout, p.stdout


def test_anduin_test_reports_a_bad_tests_file_with_positions(tmp_path):
    bad = tmp_path / "bad.tests.yaml"
    lines = ["tests:", "  - name: x", "    input: {component: nope, lines: [a]}",
             "    expect: {component: parse, records: [{equals: {level: error}, absnt: [x]}]}"]
    bad.write_text("\n".join(lines) + "\n")
    p = run_anduin_test(bad)
    assert p.returncode == 1
    err = p.stderr.splitlines()
    col_nope, col_absnt = lines[2].index("nope") + 1, lines[3].index("absnt") + 1
    assert err[0].startswith(f'{bad}:3:{col_nope}: test "x": input: component: no component "nope" in '), p.stderr
    assert err[1].startswith(f'{bad}:4:{col_absnt}: test "x": expect: records: unknown key "absnt" (did you mean "absent"?)'), p.stderr
    assert err[2] == f"2 problems in {bad}", p.stderr
