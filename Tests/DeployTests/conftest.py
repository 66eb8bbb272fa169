"""Shared fixtures of the deploy tests."""

import glob
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def osmem():
    """osmem-server (an in-memory OpenSearch-compatible server, in .venv-test) on a free loopback port: its URL."""
    found = sorted(glob.glob(str(ROOT / ".venv-test/lib/python3*/site-packages/osmem_server/bin/osmem-server")))
    if not found:
        pytest.fail("osmem-server is not installed in .venv-test (make test-deps)")
    p = subprocess.Popen([found[-1], "--no-ja", "--parent-pid", str(os.getpid())], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = json.loads(p.stdout.readline() or "{}").get("url")
    if not url:
        p.kill()
        pytest.fail("osmem-server did not start")
    yield url
    p.stdin.close()  # osmem-server exits when its stdin closes
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
