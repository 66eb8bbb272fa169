#!/usr/bin/env python3
"""End-to-end benchmark harness: the same corpus, the same measurement, for any shipper.

    python3 Benchmarks/harness/harness.py corpus --kind docker --lines 1000000 --out /tmp/bench
    python3 Benchmarks/harness/harness.py run --corpus /tmp/bench/docker.log --lines 1000000 \
        --sink count-file --runs 5 -- .build/release/anduin run --config {config}

`run` writes a config from a template ({corpus}, {data_dir}, {count_file}, {sink_url} are filled in),
starts the shipper command ({config} is replaced by the config's path), waits until the sink has
counted every line, reads the process's CPU time (utime+stime from /proc/PID/stat) and peak RSS
(VmHWM from /proc/PID/status) at that moment, stops it with SIGTERM, and prints the median of N runs.
Sinks: `count-file` (the shipper writes its running count to a file, e.g. Anduin's blackhole output)
and `http` (a local HTTP server that counts the ndjson lines it receives, gzip or not).
"""
import argparse
import gzip
import http.server
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua").split()


def message(i, rnd):
    return {"level": rnd.choice(["info", "info", "info", "warn", "error"]),
            "msg": f"hello {i} " + " ".join(rnd.choice(WORDS) for _ in range(9)),
            "user": f"u{i % 1000}"}


def timestamp(i):
    secs = 1_795_000_000 + i // 1000
    t = time.gmtime(secs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{(i % 1000) * 1000 + 123:09d}Z"


def make_corpus(kind, lines, out_dir):
    """docker: json-file lines whose log is a JSON object (~194 bytes a line, as in the reference
    figure); cri: the same messages in CRI format; logfmt: CRI lines with logfmt messages."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{kind}.log")
    rnd = random.Random(42)
    with open(path, "w") as f:
        buf = []
        for i in range(lines):
            m = message(i, rnd)
            if kind == "docker":
                buf.append(json.dumps({"log": json.dumps(m, separators=(",", ":")) + "\n", "stream": "stdout",
                                       "time": timestamp(i)}, separators=(",", ":")))
            elif kind == "cri":
                buf.append(f"{timestamp(i)} stdout F " + json.dumps(m, separators=(",", ":")))
            elif kind == "logfmt":
                buf.append(f'{timestamp(i)} stdout F level={m["level"]} msg="{m["msg"]}" user={m["user"]}')
            else:
                raise SystemExit(f"unknown corpus kind {kind}")
            if len(buf) == 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    size = os.path.getsize(path)
    print(f"{path}: {lines} lines, {size / 1e6:.1f} MB, {size / lines:.0f} bytes a line")
    return path


class CountingSink(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), SinkHandler)
        self.count = 0
        self.bytes = 0
        self.lock = threading.Lock()


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        n = body.count(b"\n")
        if body and not body.endswith(b"\n"):
            n += 1
        with self.server.lock:
            self.server.count += n
            self.server.bytes += len(body)
        reply = b'{"errors":false,"items":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_PUT = do_POST

    def log_message(self, *args):
        pass


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fill(template, **values):
    """{name} placeholders; other braces (YAML flow mappings) are left alone."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def one_run(args, template, work):
    data_dir = os.path.join(work, "data")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    count_file = os.path.join(work, "count")
    if os.path.exists(count_file):
        os.remove(count_file)
    sink = None
    sink_url = ""
    if args.sink == "http":
        sink = CountingSink()
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        sink_url = f"http://127.0.0.1:{sink.server_address[1]}/"
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write(fill(template, corpus=os.path.abspath(args.corpus), data_dir=data_dir, count_file=count_file,
                     sink_url=sink_url))
    cmd = [c.replace("{config}", config) for c in args.command]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "stderr.log"), "w"))

    def counted():
        if sink is not None:
            with sink.lock:
                return sink.count
        try:
            with open(count_file) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    deadline = start + args.timeout
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        n = counted()
        if n >= args.lines:
            break
        time.sleep(0.02)
    wall = time.monotonic() - start
    cpu = proc_cpu_seconds(proc.pid) if proc.poll() is None else float("nan")
    hwm = proc_status_kib(proc.pid, "VmHWM") if proc.poll() is None else 0
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    if sink is not None:
        sink.shutdown()
        sink.server_close()
    if n < args.lines:
        raise SystemExit(f"only {n} of {args.lines} lines arrived in {args.timeout}s; see {work}/stderr.log")
    return {"lines": n, "wall_s": wall, "cpu_s": cpu, "lines_per_cpu_s": n / cpu, "peak_rss_mib": hwm / 1024}


def idle_rss(args, template, work):
    """RSS of the shipper after it has started and settled with nothing to read."""
    empty = os.path.join(work, "empty.log")
    open(empty, "w").close()
    data_dir = os.path.join(work, "data-idle")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    config = os.path.join(work, "idle.yaml")
    with open(config, "w") as f:
        f.write(fill(template, corpus=empty, data_dir=data_dir, count_file=os.path.join(work, "idle-count"),
                     sink_url="http://127.0.0.1:9/"))
    proc = subprocess.Popen([c.replace("{config}", config) for c in args.command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    rss = proc_status_kib(proc.pid, "VmRSS") / 1024 if proc.poll() is None else float("nan")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return rss


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus", help="generate a corpus")
    c.add_argument("--kind", choices=["docker", "cri", "logfmt"], default="docker")
    c.add_argument("--lines", type=int, default=1_000_000)
    c.add_argument("--out", default="/tmp/anduin-bench")
    r = sub.add_parser("run", help="measure a shipper command")
    r.add_argument("--corpus", required=True)
    r.add_argument("--lines", type=int, required=True, help="lines the sink must count")
    r.add_argument("--config-template", required=True, help="config file with {corpus} {data_dir} {count_file} {sink_url}")
    r.add_argument("--sink", choices=["count-file", "http"], default="count-file")
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--timeout", type=float, default=300)
    r.add_argument("--idle", action="store_true", help="also measure idle RSS")
    r.add_argument("command", nargs="+", help="shipper command; {config} is replaced by the config path")
    args = p.parse_args()
    if args.cmd == "corpus":
        make_corpus(args.kind, args.lines, args.out)
        return
    template = open(args.config_template).read()
    work = tempfile.mkdtemp(prefix="anduin-harness-")
    # Warm the page cache so every run reads from memory, as in the reference figure.
    with open(args.corpus, "rb") as f:
        while f.read(1 << 24):
            pass
    results = []
    for i in range(args.runs):
        res = one_run(args, template, work)
        results.append(res)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()),
              flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("median: lines={lines:.0f} wall_s={wall_s:.3f} cpu_s={cpu_s:.3f} lines_per_cpu_s={lines_per_cpu_s:,.0f} "
          "peak_rss_mib={peak_rss_mib:.1f}".format(**med))
    if args.idle:
        print(f"idle_rss_mib={idle_rss(args, template, work):.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
