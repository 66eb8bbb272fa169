"""`make demo`: Anduin's main job end to end, on this machine, in well under a minute.

Starts osmem-server (an in-memory OpenSearch-compatible server from PyPI, installed in .venv-test) on a
free loopback port, copies the example node tree (examples/node: /var/log/pods files and their
/var/log/containers symlinks, as a kubelet lays them out) to examples/.demo, runs `anduin run` with
examples/anduin.yaml (tail with multiline: → kubernetes → parse → elasticsearch with a disk buffer, and a
file), appends lines while it runs, then shows what a user would check: the documents indexed, a search
by namespace and level, the joined Java stack trace and `anduin status`. Stops everything it
started, also on failure or Ctrl-C.

    python3 examples/demo.py PATH/TO/anduin [--dir WORK_DIR]

Exit 0 when every expected document arrived (the demo test checks this output), 1 otherwise.
Only the standard library: it runs with the venv's or the system's python3.
"""

import argparse
import datetime
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "anduin.yaml"
# What examples/node holds once the tail's multiline: and the partial-line merges ran: payments 5 records
# (a 6-line Java trace is one), web 6 lines of which two are one Docker-split message: 5.
INITIAL_DOCS = 10
APPENDED = 2
TIMEOUT = 60


def fail(message):
    raise SystemExit(f"demo failed: {message}")


def osmem_binary():
    if os.environ.get("OSMEM_SERVER_BIN"):
        return os.environ["OSMEM_SERVER_BIN"]
    found = sorted(glob.glob(str(ROOT / ".venv-test/lib/python3*/site-packages/osmem_server/bin/osmem-server")))
    if not found:
        fail("osmem-server is not installed: run `make demo` (it installs it in .venv-test)")
    return found[-1]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        fail(f"{method} {url}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}")
    except OSError as e:
        fail(f"{method} {url}: {e}")
    return json.loads(text) if text.lstrip().startswith(("{", "[")) else text


def wait_for(what, check, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Demo:
    def __init__(self, anduin, work):
        self.anduin = anduin
        self.work = work
        self.osmem = None
        self.agent = None
        self.url = None

    # The pieces, in order.

    def start_server(self):
        self.osmem = subprocess.Popen([osmem_binary(), "--no-ja", "--parent-pid", str(os.getpid())],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
        ready = json.loads(self.osmem.stdout.readline() or "{}")
        self.url = ready.get("url") or fail("osmem-server did not start")
        print(f"osmem-server {ready.get('version', '')} (OpenSearch API) on {self.url}")

    def lay_out_node(self):
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        shutil.copytree(HERE / "node", self.work / "node", symlinks=True)
        links = sorted((self.work / "node/var/log/containers").iterdir())
        print(f"node tree in {self.rel(self.work / 'node')}: var/log/pods/<ns>_<pod>_<uid>/<container>/0.log")
        for link in links:
            print(f"  var/log/containers/{link.name[:48]}… -> {os.readlink(link)[:40]}…")

    def start_agent(self):
        env = dict(os.environ, DEMO_DIR=str(self.work), ES_URL=self.url, ANDUIN_LOG_LEVEL="info")
        self.env = env
        check = subprocess.run([self.anduin, "validate", "--config", str(CONFIG)], env=env,
                               capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"anduin validate:\n{check.stdout}{check.stderr}")
        self.log = open(self.work / "anduin.log", "w")
        self.agent = subprocess.Popen([self.anduin, "run", "--config", str(CONFIG)], env=env,
                                      stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        address_file = self.work / "data/api.address"
        api = wait_for("the agent's API address", lambda: address_file.exists() and address_file.read_text().strip())
        self.api = "http://" + api
        print(f"anduin run --config {self.rel(CONFIG)}  (pid {self.agent.pid}, API on {api}, "
              f"its log in {self.rel(self.work / 'anduin.log')})")

    def count(self):
        if self.agent.poll() is not None:
            fail(f"the agent exited with {self.agent.returncode}; see {self.work / 'anduin.log'}")
        http("POST", f"{self.url}/logs-*/_refresh")
        return http("GET", f"{self.url}/logs-*/_count")["count"]

    def append_lines(self):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        containers = self.work / "node/var/log/containers"
        (payments,) = containers.glob("*_payments_server-*.log")
        (web,) = containers.glob("*_web_nginx-*.log")
        with open(payments, "a") as f:  # CRI, through the symlink, as the runtime writes
            f.write(f'{now} stdout F {{"level":"error","msg":"refund failed","order":42,"reason":"gateway timeout"}}\n')
        with open(web, "a") as f:  # Docker json-file
            f.write(json.dumps({"log": 'level=info msg="GET /checkout 200" dur=12ms\n', "stream": "stdout",
                                "time": now}) + "\n")
        print(f"appended {APPENDED} lines while it runs (one CRI, one Docker)")

    def show_results(self):
        total = INITIAL_DOCS + APPENDED
        wait_for(f"{total} documents", lambda: self.count() >= total)
        time.sleep(0.5)  # anything beyond the expected would show up in the count below
        indices = http("GET", f"{self.url}/_cat/indices?format=json")
        per_index = sorted((i["index"], int(i["docs.count"])) for i in indices if i["index"].startswith("logs-"))
        count = self.count()
        print(f"\n{count} documents in logs-*: " + ", ".join(f"{n} {i}" for i, n in per_index))
        if count != total:
            fail(f"expected {total} documents, found {count}")

        query = {"query": {"bool": {"filter": [{"term": {"kubernetes.namespace_name": "payments"}},
                                               {"term": {"level": "error"}}]}},
                 "sort": [{"@timestamp": "asc"}], "size": 10}
        hits = http("POST", f"{self.url}/logs-*/_search", query)["hits"]["hits"]
        print(f"\nsearch logs-*: kubernetes.namespace_name: payments AND level: error → {len(hits)} hits")
        for h in hits:
            print(json.dumps(h["_source"], indent=2, ensure_ascii=False))
        if len(hits) != 2:
            fail(f"expected 2 hits, found {len(hits)}")

        trace = http("POST", f"{self.url}/logs-*/_search",
                     {"query": {"match_phrase": {"message": "exception in thread"}}})["hits"]["hits"]
        if len(trace) != 1:
            fail(f"expected the Java stack trace as one document, found {len(trace)}")
        message = trace[0]["_source"]["message"]
        print(f"\nthe Java stack trace, {message.count(chr(10)) + 1} lines joined into one document:")
        print("  " + message.replace("\n", "\n  "))

    def show_status(self):
        # Checkpoints are written about once a second: wait until they cover every byte read, so the
        # status shows a caught-up agent (BEHIND 0 B), not the last second's lag.
        def caught_up():
            text = http("GET", f"{self.api}/metrics")
            behind = [l for l in text.splitlines() if l.startswith("anduin_input_bytes_behind{")]
            return behind and all(float(l.rsplit(" ", 1)[1]) == 0 for l in behind)
        wait_for("the checkpoints to cover every line read (bytes_behind 0)", caught_up, timeout=15)
        p = subprocess.run([self.anduin, "status", "--config", str(CONFIG)], env=self.env,
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            fail(f"anduin status (exit {p.returncode}):\n{p.stdout}{p.stderr}")
        print(f"\n$ anduin status --config {self.rel(CONFIG)}")
        print(p.stdout.rstrip())

    def stop(self):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                rc = self.agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                rc = self.agent.wait()
            print(f"\nstopped anduin with SIGTERM (exit {rc}); "
                  f"{sum(1 for _ in open(self.work / 'out/records.ndjson'))} records in "
                  f"{self.rel(self.work / 'out/records.ndjson')}, checkpoints and the disk buffer in "
                  f"{self.rel(self.work / 'data')}")
            self.agent_rc = rc
        if self.osmem and self.osmem.poll() is None:
            self.osmem.stdin.close()  # osmem-server exits when its stdin closes
            try:
                self.osmem.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.osmem.kill()
                self.osmem.wait()
            print("stopped osmem-server")

    def rel(self, path):
        try:
            return str(pathlib.Path(path).relative_to(pathlib.Path.cwd()))
        except ValueError:
            return str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("anduin", help="the anduin binary")
    parser.add_argument("--dir", default=str(HERE / ".demo"), help="work folder (default examples/.demo)")
    args = parser.parse_args()
    started = time.monotonic()
    demo = Demo(os.path.abspath(args.anduin), pathlib.Path(args.dir).resolve())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        demo.start_server()
        demo.lay_out_node()
        demo.start_agent()
        wait_for(f"{INITIAL_DOCS} documents", lambda: demo.count() >= INITIAL_DOCS)
        print(f"{INITIAL_DOCS} documents indexed from the files")
        demo.append_lines()
        demo.show_results()
        demo.show_status()
    finally:
        demo.stop()
    if getattr(demo, "agent_rc", 0) != 0:
        fail(f"anduin exited with {demo.agent_rc}; see {demo.work / 'anduin.log'}")
    print(f"demo ok in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
