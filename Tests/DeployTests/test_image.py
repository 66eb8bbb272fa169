"""The image `make image` builds (deploy/image/build.sh), run with podman as the chart runs it.

One container, from the image tag in $ANDUIN_IMAGE (default anduin:<appVersion>), with what the
DaemonSet gives it: the chart's command, user and mounts (the config rendered by the real helm, a
kubelet-style node tree read-only at /var/log, a data_dir volume), a read-only root filesystem, every
capability dropped, no new privileges. It ships to osmem-server on loopback (host network), then:

- every line of the node tree arrives once, with kubernetes fields from the path;
- the agent serves every metric the chart's alert rules use;
- `podman stop` (SIGTERM) ends it with exit 0 within the chart's terminationGracePeriodSeconds;
- lines appended while it was stopped, and after its restart, arrive once; nothing is repeated.

Then: the image fits its size budget, and its own libcurl (HTTP and HTTPS only) ships over TLS with
HTTP/2 through nginx, verifying the server against `tls.ca_file` and refusing an unknown issuer.

Podman runs with runc, host networking and explicit ulimits (crun refuses this host's cgroup layout;
podman's default ulimits exceed the host's hard limits). Where podman cannot run (not root, no podman,
no image) the test says so in one line and skips; with ANDUIN_REQUIRE_IMAGE_TEST=1 (CI) it fails.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import yaml

from test_manifests import CHART_DIR, RULE_METRICS, ROOT, anduin_config, helm_template, one

NODE_TREE = ROOT / "examples" / "node" / "var" / "log"
# examples/node: payments 11 CRI lines of which two are one record (a P part and its F part); web 6
# Docker lines of which two are one split message.
INITIAL_DOCS = 15
DEADLINE = 90


def chart_version():
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]


IMAGE = os.environ.get("ANDUIN_IMAGE") or f"anduin:{chart_version()}"


def cannot_run(reason):
    message = f"image test not run: {reason} (it needs root, podman and runc, and `make image`)"
    if os.environ.get("ANDUIN_REQUIRE_IMAGE_TEST") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_image(runc=True):
    """Skips (fails in CI) unless this runs as root with podman (and runc) and the image exists."""
    if os.geteuid() != 0:
        cannot_run("not root")
    if not shutil.which("podman") or (runc and not shutil.which("runc")):
        cannot_run("podman or runc is not installed")
    if subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, timeout=60).returncode != 0:
        cannot_run(f"no image {IMAGE}")


def podman(*args, check=True, timeout=120):
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    return json.loads(text) if text.lstrip().startswith(("{", "[")) else text


def wait_for(what, check, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Container:
    """The agent's container, wired from the rendered DaemonSet."""

    def __init__(self, work, osmem_url):
        self.name = f"anduin-image-test-{os.getpid()}"
        self.api_port, tap_port = free_port(), free_port()
        docs = helm_template(
            "--set", "auth.mode=none", "--set", "secret.caKey=", "--set", "kubernetes.api=off",
            "--set", f"elasticsearch.hosts={{{osmem_url}}}", "--set", "shutdownTimeout=10s",
            "--set", f"api.port={self.api_port}", "--set", f"api.tapPort={tap_port}")
        cm, self.cfg = anduin_config(docs)
        pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        self.grace = pod["terminationGracePeriodSeconds"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
        assert not sc["allowPrivilegeEscalation"]

        self.node = work / "node"
        shutil.copytree(NODE_TREE, self.node, symlinks=True)
        config_dir, self.data = work / "config", work / "data"
        config_dir.mkdir()
        self.data.mkdir()
        (config_dir / "anduin.yaml").write_text(cm["data"]["anduin.yaml"])
        # The chart's mounts, from the node tree and volumes of this test.
        sources = {"/var/log": self.node, "/etc/anduin/config": config_dir, self.cfg["data_dir"]: self.data}
        volumes = []
        for m in c["volumeMounts"]:
            assert m["mountPath"] in sources, f"the chart mounts {m['mountPath']}: the image test does not know it"
            volumes += ["-v", f"{sources[m['mountPath']]}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
        env = ["-e", "NODE_NAME=node-1"]
        assert [e["name"] for e in c["env"]] == ["NODE_NAME"]
        self.run_args = [
            "--runtime", "runc", "--network=host",
            "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=1000:1000",
            # As readOnlyRootFilesystem: no writable /tmp or /run either (podman adds them by default).
            "--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
            "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}",
            "--stop-signal", "SIGTERM", "--stop-timeout", str(self.grace),
            "--entrypoint", json.dumps(c["command"]),
            *env, *volumes]

    def create_and_start(self):
        podman("rm", "--force", "--ignore", self.name)
        podman("run", "--detach", "--name", self.name, *self.run_args, IMAGE)

    def start(self):
        podman("start", self.name)

    def running(self):
        return podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def logs(self):
        p = podman("logs", self.name, check=False)
        return (p.stdout + p.stderr)[-4000:]

    def stop(self):
        started = time.monotonic()
        podman("stop", "--time", str(self.grace), self.name, timeout=self.grace + 30)
        took = time.monotonic() - started
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        return code, took

    def metrics(self):
        return http("GET", f"http://127.0.0.1:{self.api_port}/metrics")

    def remove(self):
        podman("rm", "--force", "--ignore", self.name, check=False)


def count(url, index="logs-*"):
    http("POST", f"{url}/{index}/_refresh")
    return http("GET", f"{url}/{index}/_count")["count"]


def search(url, query, size=100):
    http("POST", f"{url}/logs-*/_refresh")
    return [h["_source"] for h in http("POST", f"{url}/logs-*/_search", {"query": query, "size": size})["hits"]["hits"]]


def caught_up(agent):
    """Every byte read is checkpointed and every record delivered (from the agent's /metrics)."""
    lines = agent.metrics().splitlines()
    behind = [float(l.rsplit(" ", 1)[1]) for l in lines if l.startswith("anduin_input_bytes_behind{")]
    pending = [float(l.rsplit(" ", 1)[1]) for l in lines if l.startswith("anduin_output_pending_records{")]
    return behind and pending and not any(behind) and not any(pending)


def append(node, marker):
    """One CRI line (payments) and one Docker line (web), written as the runtimes write them."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    (payments,) = node.glob("pods/payments_*/server/0.log")
    (web,) = node.glob("pods/web_*/nginx/0.log")
    with open(payments, "a") as f:
        f.write(f'{now} stdout F {{"level":"info","msg":"{marker}-cri"}}\n')
    with open(web, "a") as f:
        f.write(json.dumps({"log": f"level=info msg={marker}-docker\n", "stream": "stdout", "time": now}) + "\n")


def test_image_runs_as_the_chart_runs_it(tmp_path, osmem):
    require_image()

    agent = Container(tmp_path, osmem)
    try:
        agent.create_and_start()
        wait_for(f"{INITIAL_DOCS} documents", lambda: count(osmem) >= INITIAL_DOCS or (not agent.running() and
                 pytest.fail(f"the container exited:\n{agent.logs()}")))
        wait_for("the agent to catch up", lambda: caught_up(agent))
        assert count(osmem) == INITIAL_DOCS, agent.logs()
        docs = search(osmem, {"match_all": {}})
        for d in docs:
            k8s = d.get("kubernetes") or {}
            assert k8s.get("namespace_name") in ("payments", "web"), d
            assert k8s.get("pod_name") and k8s.get("container_name") in ("server", "nginx"), d
        assert {d["kubernetes"]["pod_name"] for d in docs} == {"api-7d9f8b6c5-x2k4q", "nginx-6c8f7d5b4-m9p2r"}

        # The alert rules of the chart use only metrics the agent serves.
        served = {l.split("{")[0].split(" ")[0] for l in agent.metrics().splitlines() if l and not l.startswith("#")}
        assert RULE_METRICS <= served, f"not served: {sorted(RULE_METRICS - served)}"

        code, took = agent.stop()
        assert code == 0, f"exit {code} after SIGTERM:\n{agent.logs()}"
        assert took < agent.grace, f"podman stop took {took:.1f}s, over terminationGracePeriodSeconds {agent.grace}"

        append(agent.node, "while-stopped")
        agent.start()
        wait_for("the agent's API after the restart", lambda: agent.running() and agent.metrics())
        append(agent.node, "after-restart")
        wait_for(f"{INITIAL_DOCS + 4} documents", lambda: count(osmem) >= INITIAL_DOCS + 4)
        wait_for("the agent to catch up after the restart", lambda: caught_up(agent))
        assert count(osmem) == INITIAL_DOCS + 4, agent.logs()
        docs = search(osmem, {"match_all": {}}, size=200)
        for marker in ("while-stopped-cri", "while-stopped-docker", "after-restart-cri", "after-restart-docker"):
            hits = [d for d in docs if marker in json.dumps(d)]
            assert len(hits) == 1, f"{marker}: {len(hits)} documents"

        code, _ = agent.stop()
        assert code == 0, agent.logs()
    finally:
        agent.remove()


def test_image_chowns_the_data_dir_as_the_non_root_init_container_does(tmp_path):
    """values/non-root.yaml's init container: `chown -R 10001:10001 <dataDir>` in the image, root with
    CAP_CHOWN only."""
    require_image()  # it runs the container with runc
    docs = helm_template("-f", str(pathlib.Path(__file__).parent / "values" / "non-root.yaml"))
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    sc = init["securityContext"]
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    (data / "checkpoints" / "tail.json").write_text("{}")
    (m,) = init["volumeMounts"]
    p = podman("run", "--rm", "--runtime", "runc", "--network=host",
               "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=1000:1000", "--read-only",
               "--cap-drop=ALL", *[f"--cap-add={c}" for c in sc["capabilities"]["add"]],
               "--user", f"{sc['runAsUser']}:0", "--entrypoint", json.dumps(init["command"]),
               "-v", f"{data}:{m['mountPath']}:rw", IMAGE, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    for path in (data, data / "checkpoints", data / "checkpoints" / "tail.json"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (10001, 10001), f"{path}: {st.st_uid}:{st.st_gid}"


# The image's size budget (issue: "≤ 40 MB uncompressed"; Fluent Bit's distroless image is about 77 MB).
MAX_IMAGE_BYTES = 40_000_000


def test_image_fits_its_size_budget():
    require_image(runc=False)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    assert size <= MAX_IMAGE_BYTES, f"{IMAGE} is {size:,} bytes uncompressed, over {MAX_IMAGE_BYTES:,}"


def make_pki(d):
    """A throw-away CA and a server certificate for IP 127.0.0.1 signed by it (openssl)."""
    ssl = ["openssl"]
    def run(*args):
        subprocess.run(ssl + list(args), check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2",
        "-subj", "/CN=Anduin Image Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "server.key", "-out", d / "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key", "-CAcreateserial",
        "-out", d / "server.pem", "-days", "2", "-extfile", d / "server.ext")


def test_image_ships_over_https_and_http2(tmp_path, osmem):
    """The image's libcurl (deploy/image/libcurl.sh: HTTP and HTTPS only, OpenSSL, nghttp2) against nginx
    terminating TLS with HTTP/2 in front of osmem-server: the server certificate is checked against
    `tls.ca_file`, the requests go out as HTTP/2, and every record arrives once. Without the CA, the
    unknown issuer is refused (verification is on, with the image's CA bundle)."""
    require_image()
    for tool in ("/usr/sbin/nginx", "/usr/bin/openssl"):
        assert os.path.exists(tool), f"{tool} is missing (make test-deps installs nginx-light; openssl comes with ca-certificates)"

    tls = tmp_path / "tls"
    tls.mkdir()
    make_pki(tls)
    port = free_port()
    ngx = tmp_path / "nginx"
    (ngx / "tmp").mkdir(parents=True)
    upstream = osmem.removeprefix("http://")
    (ngx / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {ngx}/nginx.pid;
error_log {ngx}/error.log warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {ngx}/tmp;
    proxy_temp_path {ngx}/tmp;
    fastcgi_temp_path {ngx}/tmp;
    uwsgi_temp_path {ngx}/tmp;
    scgi_temp_path {ngx}/tmp;
    log_format proto '$server_protocol $request_method $uri $status';
    access_log {ngx}/access.log proto;
    client_max_body_size 50m;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {tls}/server.pem;
        ssl_certificate_key {tls}/server.key;
        location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1; }}
    }}
}}
""")
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-p", str(ngx), "-c", str(ngx / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=open(ngx / "stderr.log", "w"))
    names = []
    try:
        wait_for("nginx to listen", lambda: nginx.poll() is None and socket.create_connection(("127.0.0.1", port), 1).close() is None)

        def run_agent(name, index, with_ca):
            config = tmp_path / name
            (config / "data").mkdir(parents=True)
            tls_block = "    tls: {ca_file: /etc/anduin/tls/ca.pem}\n" if with_ca else ""
            (config / "anduin.yaml").write_text(f"""data_dir: /var/lib/anduin
inputs:
  pods:
    type: tail
    paths: ["/var/log/pods/*/*/*.log"]
outputs:
  es:
    type: elasticsearch
    from: [pods]
    hosts: ["https://127.0.0.1:{port}"]
    index: {index}
    buffer: {{type: memory}}
    batch: {{timeout: 100ms}}
{tls_block}""")
            full = f"anduin-image-tls-{os.getpid()}-{name}"
            names.append(full)
            podman("run", "--detach", "--name", full, "--runtime", "runc", "--network=host",
                   "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=1000:1000", "--read-only", "--cap-drop=ALL",
                   "--user", "0:0", "-v", f"{NODE_TREE}:/var/log:ro", "-v", f"{tls}:/etc/anduin/tls:ro",
                   "-v", f"{config}/anduin.yaml:/etc/anduin/anduin.yaml:ro", "-v", f"{config}/data:/var/lib/anduin:rw",
                   IMAGE)
            return full

        trusted = run_agent("trusted", "tls-trusted", with_ca=True)
        wait_for(f"{INITIAL_DOCS} documents over TLS", lambda: count(osmem, "tls-trusted") >= INITIAL_DOCS)
        time.sleep(1)
        assert count(osmem, "tls-trusted") == INITIAL_DOCS
        podman("stop", "--time", "20", trusted)
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", trusted).stdout.strip())
        assert code == 0, podman("logs", trusted).stderr[-3000:]
        bulk = [l for l in (ngx / "access.log").read_text().splitlines() if "/_bulk" in l]
        assert bulk and all(l.startswith("HTTP/2.0 POST") for l in bulk), bulk

        untrusted = run_agent("untrusted", "tls-untrusted", with_ca=False)
        logs = lambda: (lambda p: p.stdout + p.stderr)(podman("logs", untrusted, check=False))
        wait_for("a certificate error in the log", lambda: "certificate" in logs().lower())
        http("POST", f"{osmem}/_refresh")
        indices = http("GET", f"{osmem}/_cat/indices?format=json")
        assert not any(i.get("index") == "tls-untrusted" for i in indices), indices
    finally:
        for n in names:
            podman("rm", "--force", "--ignore", n, check=False)
        nginx.terminate()
        nginx.wait(timeout=10)
