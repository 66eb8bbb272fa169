"""The `make dist` tarball (deploy/dist/build.sh): unpacked into a temporary root, its binary run with
its own example config against osmem-server, and its systemd unit checked.

`make deploy-test` builds the tarball first; a missing tarball fails the test.
"""

import configparser
import json
import os
import platform
import shutil
import signal
import subprocess
import tarfile
import time

import pytest
import yaml

from test_image import INITIAL_DOCS, NODE_TREE, count, search, wait_for
from test_manifests import CHART_DIR, ROOT


def tarball():
    version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    path = ROOT / "dist" / f"anduin-{version}-linux-{platform.machine()}.tar.gz"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make dist` (`make deploy-test` builds it)")
    return path


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    path = tarball()
    with tarfile.open(path) as t:
        names = t.getnames()
        top = {n.split("/")[0] for n in names}
        assert top == {path.name.removesuffix(".tar.gz")}, top
        for m in t.getmembers():
            assert m.uid == 0 and m.gid == 0, f"{m.name} is owned by {m.uid}:{m.gid}"
    # As INSTALL.txt says, into / (here a temporary root).
    subprocess.run(["tar", "-xzf", str(path), "--strip-components=1", "-C", str(root)], check=True)
    return root


def test_tarball_layout(unpacked):
    files = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assert files == ["INSTALL.txt", "etc/anduin/anduin.yaml.example", "etc/systemd/system/anduin.service",
                     "usr/local/bin/anduin"]
    binary = unpacked / "usr/local/bin/anduin"
    assert os.access(binary, os.X_OK)
    # Stripped, and the Swift runtime linked in: no libswift*.so needed on the node.
    p = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60)
    assert "not found" not in p.stdout and "libswift" not in p.stdout, p.stdout
    assert ".symtab" not in subprocess.run(["readelf", "-S", str(binary)], capture_output=True, text=True).stdout


def unit(unpacked):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(unpacked / "etc/systemd/system/anduin.service")
    return parser


def test_systemd_unit(unpacked):
    u = unit(unpacked)
    s = u["Service"]
    assert s["ExecStart"].split()[:2] == ["/usr/local/bin/anduin", "run"]
    assert "--config /etc/anduin/anduin.yaml" in s["ExecStart"]
    assert s["Restart"] == "always"
    assert s["StateDirectory"] == "anduin"
    assert int(s["LimitNOFILE"]) >= 65536
    assert s["KillSignal"] == "SIGTERM"
    # Hardened, and still able to read any file under /var/log (and write only its state directory).
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
    assert s["CapabilityBoundingSet"] == "CAP_DAC_READ_SEARCH"
    for key in ("InaccessiblePaths", "TemporaryFileSystem", "ProtectHome"):
        assert "/var/log" not in s.get(key, ""), key
    assert u["Install"]["WantedBy"] == "multi-user.target"
    example = yaml.safe_load((unpacked / "etc/anduin/anduin.yaml.example").read_text())
    assert example["data_dir"] == "${STATE_DIRECTORY:-/var/lib/anduin}"
    # The timeout to stop fits the agent's own shutdown_timeout.
    assert int(s["TimeoutStopSec"]) > int(example["shutdown_timeout"].rstrip("s"))
    if shutil.which("systemd-analyze"):
        p = subprocess.run(["systemd-analyze", "verify", "--root", str(unpacked), "/etc/systemd/system/anduin.service"],
                           capture_output=True, text=True, timeout=60)
        problems = [l for l in (p.stdout + p.stderr).splitlines() if "anduin.service" in l and "Unknown" in l]
        assert not problems, problems


def test_binary_from_the_tarball_ships_the_node(tmp_path, unpacked, osmem):
    binary = unpacked / "usr/local/bin/anduin"
    node = tmp_path / "node"
    shutil.copytree(NODE_TREE, node / "var/log", symlinks=True)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "anduin.yaml"
    # The example as installed; only its API port is made free (a fixed port may be taken here).
    config.write_text((unpacked / "etc/anduin/anduin.yaml.example").read_text().replace("127.0.0.1:2020", "127.0.0.1:0"))
    # What the unit and /etc/anduin/anduin.env give it.
    env = dict(os.environ, STATE_DIRECTORY=str(state), LOG_ROOT=str(node / "var/log"), ES_URL=osmem)
    p = subprocess.run([str(binary), "validate", "--config", str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    log = open(tmp_path / "anduin.log", "w")
    agent = subprocess.Popen([str(binary), "run", "--watch-config", "--config", str(config)], env=env,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(f"{INITIAL_DOCS} documents", lambda: count(osmem) >= INITIAL_DOCS and
                 (agent.poll() is None or pytest.fail(f"the agent exited {agent.returncode}")))
        time.sleep(1)
        assert count(osmem) == INITIAL_DOCS
        docs = search(osmem, {"match_all": {}})
        assert {d["kubernetes"]["namespace_name"] for d in docs} == {"payments", "web"}
        assert (state / "anduin.lock").exists(), "data_dir is the unit's StateDirectory"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0, (tmp_path / "anduin.log").read_text()[-3000:]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
