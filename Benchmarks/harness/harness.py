#!/usr/bin/env python3
"""End-to-end benchmark harness: the same corpus, the same measurement, for any shipper.

    python3 Benchmarks/harness/harness.py corpus --kind docker --lines 1000000 --out /tmp/bench
    python3 Benchmarks/harness/harness.py bench --corpus /tmp/bench/docker.log --lines 1000000 --runs 5 \
        --anduin .build/release/anduin [--fluentbit /path/to/fluent-bit]
    python3 Benchmarks/harness/harness.py run --corpus /tmp/bench/docker.log --lines 1000000 \
        --config-template Benchmarks/harness/p1-blackhole.yaml --sink count-file --runs 5 --idle \
        -- .build/release/anduin run --config {config}
    python3 Benchmarks/harness/harness.py bench --scenarios p0 --seconds 120 --runs 3 --anduin .build/release/anduin
    python3 Benchmarks/harness/harness.py soak --seconds 3600 -- .build/release/anduin run --config {config}

`run` writes a config from a template ({corpus}, {data_dir}, {count_file}, {sink_url}, {sink_port},
{template_dir} are filled in), starts the shipper command ({config} is replaced by the config's path),
samples its memory every 20 ms, waits until the sink has counted every line, reads the process's CPU
time (utime+stime from /proc/PID/stat) and peak RSS (VmHWM, and RssAnon/RssFile of the largest
sample) at that moment, stops it with SIGTERM, and prints the median of N runs, with wall-clock
lines per second beside the CPU figures. Idle RSS: the shipper watching an empty folder, read after
--idle-seconds (10). `bench` runs P1/P2/P3 and idle for Anduin and, when given, Fluent Bit
(interleaved run by run) and prints the comparison table with ratios; without a Fluent Bit binary it
prints the reference figures measured earlier on this machine kind, labelled as such.
P0 (a quiet node: a kubelet-style tree written by a paced writer, CPU per minute, context switches,
RSS and delivery latency) and the soak (`make soak`: rotation, RSS slope, fds, every line counted)
are in quiet.py.
Sinks: `count-file` (the shipper writes its running count to a file, e.g. Anduin's blackhole output),
`http` (a local HTTP server that counts the ndjson lines it receives, gzip or not; TCP_NODELAY, one
write per response) and `stdout-total` (the shipper prints `total = N`, Fluent Bit's counter output).
"""
import sys

# The harness stays off libssl/libcrypto (http.client imports ssl when it can): the kernel does not
# page out a library page that another process maps too, so the harness's own mappings would stay
# resident in the shippers' idle RSS, as on no node. The sinks speak plain HTTP.
sys.modules.setdefault("ssl", None)

import argparse
import gzip
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
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


PATHS = ["/", "/api/v1/orders", "/api/v1/orders/12345?expand=items&page=2", "/static/app.3f2a1b.js", "/healthz",
         "/login", "/images/logo.png", "/search?q=winter+boots&sort=price"]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
          "curl/8.5.0", "kube-probe/1.29",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"]


def nginx_line(i, rnd):
    """An nginx `combined` access line (plain lines, as nginx writes its own access.log)."""
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(1_795_000_000 + i // 1000))
    ip = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
    return (f'{ip} - {rnd.choice(["-", "-", "-", "alice"])} [{t}] "{rnd.choice(["GET", "GET", "GET", "POST", "PUT"])} '
            f'{rnd.choice(PATHS)} HTTP/1.1" {rnd.choice([200, 200, 200, 201, 301, 304, 404, 500])} {rnd.randrange(50000)} '
            f'"{rnd.choice(["-", "https://shop.example.com/", "https://www.google.com/"])}" "{rnd.choice(AGENTS)}"')


def make_corpus(kind, lines, out_dir):
    """docker: json-file lines whose log is a JSON object (~194 bytes a line, as in the reference
    figure); cri: the same messages in CRI format; logfmt: CRI lines with logfmt messages; nginx:
    plain nginx `combined` access lines."""
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
            elif kind == "nginx":
                buf.append(nginx_line(i, rnd))
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
    """Counts the NDJSON lines it receives (gunzipping them); optionally keeps the first bodies."""
    daemon_threads = True

    def __init__(self, save_dir=None, save_max=0):
        super().__init__(("127.0.0.1", 0), SinkHandler)
        self.count = 0
        self.bytes = 0
        self.wire_bytes = 0
        self.requests = 0
        self.save_dir = save_dir
        self.save_max = save_max
        self.lock = threading.Lock()

    def observe(self, body, arrived):
        """Each (gunzipped) body as it arrives; the latency sink (quiet.py) reads its documents."""


def response(reply):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(reply)).encode() + b"\r\n\r\n" + reply)


RESPONSE = response(b'{"errors":false,"items":[]}')
BULK_ITEM = b'{"create":{"status":201}}'


def bulk_response(actions):
    """An Elasticsearch bulk answer accounting for every action (Anduin trusts no less)."""
    return response(b'{"errors":false,"items":[' + b",".join([BULK_ITEM] * actions) + b"]}")


class SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Nagle plus a delayed ACK on the client would add ~40 ms to every request: the sink would
        # measure itself rather than the shipper.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        wire = len(body)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.observe(body, time.time())
        n = body.count(b"\n")
        if body and not body.endswith(b"\n"):
            n += 1
        with self.server.lock:
            self.server.count += n
            self.server.bytes += len(body)
            self.server.wire_bytes += wire
            self.server.requests += 1
            seq = self.server.requests
        if self.server.save_dir and seq <= self.server.save_max:
            with open(os.path.join(self.server.save_dir, f"body-{seq:04d}.ndjson"), "wb") as f:
                f.write(body)
        # Status line, headers and body in one write (BaseHTTPRequestHandler would send two).
        # A bulk body is an action line and a document per record.
        self.wfile.write(bulk_response(n // 2) if self.path.endswith("/_bulk") else RESPONSE)

    do_PUT = do_POST

    def log_message(self, *args):
        pass


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def proc_status_kib(pid, *keys):
    """Values (KiB) of /proc/PID/status lines, 0 for a missing key; None when the process is gone."""
    values = dict.fromkeys(keys, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = line.split(":", 1)[0]
                if k in values:
                    values[k] = int(line.split()[1])
    except OSError:
        return None
    return [values[k] for k in keys]


def fill(template, **values):
    """{name} placeholders; other braces (YAML flow mappings) are left alone."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return template


def write_config(template, work, name, **values):
    values.setdefault("template_dir", HERE)
    config = os.path.join(work, name)
    with open(config, "w") as f:
        f.write(fill(template, **values))
    return config


def start(command, config, work, stdout_pipe=False):
    cmd = [c.replace("{config}", config) for c in command]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "stderr.log"), "w"))


class StdoutTotal:
    """Follows a shipper's stdout for its count (Fluent Bit's `counter` output): before 5.x a
    running `total = N`; from 5.x one `{"ts":…,"log_records":N,"total":N}` line per flush, counting
    that flush only, so those are summed."""

    def __init__(self, proc):
        self.count = 0
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            m = PER_FLUSH.search(line)
            if m:
                self.count += int(m.group(1))
                continue
            m = RUNNING_TOTAL.search(line)
            if m:
                self.count = int(m.group(1))


RUNNING_TOTAL = re.compile(rb"total = (\d+)")
PER_FLUSH = re.compile(rb'"log_records":(\d+)')


def one_run(command, template, sink_kind, work, args, save_dir=None):
    """One measured run: start, wait until the sink counted every line, sample CPU and memory."""
    data_dir = os.path.join(work, "data")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    count_file = os.path.join(work, "count")
    if os.path.exists(count_file):
        os.remove(count_file)
    sink = None
    port = "9"
    if sink_kind == "http":
        sink = CountingSink(save_dir, args.save_bodies if save_dir else 0)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        port = str(sink.server_address[1])
    config = write_config(template, work, "config", corpus=os.path.abspath(args.corpus), data_dir=data_dir,
                          count_file=count_file, sink_url=f"http://127.0.0.1:{port}/", sink_port=port)
    t0 = time.monotonic()
    proc = start(command, config, work, stdout_pipe=(sink_kind == "stdout-total"))
    total = StdoutTotal(proc) if sink_kind == "stdout-total" else None

    def counted():
        if sink is not None:
            with sink.lock:
                return sink.count
        if total is not None:
            return total.count
        try:
            with open(count_file) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    deadline = t0 + args.timeout
    n = 0
    peak = (0, 0, 0)  # VmRSS, RssAnon, RssFile (KiB) of the sample with the highest VmRSS
    while time.monotonic() < deadline and proc.poll() is None:
        mem = proc_status_kib(proc.pid, "VmRSS", "RssAnon", "RssFile")
        if mem and mem[0] > peak[0]:
            peak = tuple(mem)
        n = counted()
        if n >= args.lines:
            break
        time.sleep(0.02)
    wall = time.monotonic() - t0
    alive = proc.poll() is None
    cpu = proc_cpu_seconds(proc.pid) if alive else float("nan")
    hwm = (proc_status_kib(proc.pid, "VmHWM") or [0])[0] if alive else 0
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if sink is not None:
        sink.shutdown()
        sink.server_close()
    if n < args.lines:
        raise SystemExit(f"only {n} of {args.lines} lines arrived in {wall:.0f}s; see {work}/stderr.log")
    result = {"lines": n, "wall_s": wall, "cpu_s": cpu, "lines_per_cpu_s": n / cpu if cpu > 0 else float("nan"), "lines_per_wall_s": n / wall,
              "peak_rss_mib": hwm / 1024, "peak_anon_mib": peak[1] / 1024, "peak_file_mib": peak[2] / 1024}
    if sink is not None:
        # Request bodies as sent (compressed when gzip), per line: what the network and ingest pay.
        result["wire_bytes_per_line"] = sink.wire_bytes / n
    return result


def idle_rss(command, template, work, settle):
    """RSS of the shipper `settle` seconds after it started watching an empty folder."""
    folder = os.path.join(work, "empty")
    os.makedirs(folder, exist_ok=True)
    data_dir = os.path.join(work, "data-idle")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    config = write_config(template, work, "idle", corpus=os.path.join(folder, "*.log"), data_dir=data_dir,
                          count_file=os.path.join(work, "idle-count"), sink_url="http://127.0.0.1:9/",
                          sink_port="9")
    proc = start(command, config, work)
    time.sleep(settle)
    mem = proc_status_kib(proc.pid, "VmRSS", "RssAnon", "RssFile") if proc.poll() is None else None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if mem is None:
        raise SystemExit(f"the shipper exited while idle; see {work}/stderr.log")
    return {"idle_rss_mib": mem[0] / 1024, "idle_anon_mib": mem[1] / 1024, "idle_file_mib": mem[2] / 1024}


def median(results):
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def fmt(res):
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())


def warm(path):
    """Page-cache the corpus so every run reads from memory, as in the reference figures."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus", help="generate a corpus")
    c.add_argument("--kind", choices=["docker", "cri", "logfmt", "nginx"], default="docker")
    c.add_argument("--lines", type=int, default=1_000_000)
    c.add_argument("--out", default="/tmp/anduin-bench")

    def common(q, corpus_required=True):
        q.add_argument("--corpus", required=corpus_required)
        q.add_argument("--lines", type=int, required=corpus_required, help="lines the sink must count")
        q.add_argument("--runs", type=int, default=5)
        q.add_argument("--timeout", type=float, default=300)
        q.add_argument("--idle-seconds", type=float, default=10)

    r = sub.add_parser("run", help="measure one shipper command")
    common(r)
    r.add_argument("--config-template", required=True,
                   help="config file with {corpus} {data_dir} {count_file} {sink_url} {sink_port} {template_dir}")
    r.add_argument("--sink", choices=["count-file", "http", "stdout-total"], default="count-file")
    r.add_argument("--idle", action="store_true", help="also measure idle RSS (an empty watched folder)")
    r.add_argument("--save-bodies", type=int, default=0, metavar="N",
                   help="keep the first N (gunzipped) request bodies of the first run in --save-dir")
    r.add_argument("--save-dir")
    r.add_argument("command", nargs="+", help="shipper command; {config} is replaced by the config path")
    b = sub.add_parser("bench", help="P0-P3 and idle for Anduin (and Fluent Bit), with the comparison table")
    common(b, corpus_required=False)
    b.add_argument("--anduin", required=True, help="path of the anduin binary")
    b.add_argument("--fluentbit", default="", help="path of a fluent-bit binary (optional)")
    b.add_argument("--scenarios", default="p0,p1,p2,p2a,p3,nginx")
    b.add_argument("--seconds", type=float, default=120, help="P0: seconds measured (after the warm-up)")
    b.add_argument("--p0-files", type=int, default=500, help="P0: container log files")
    b.add_argument("--p0-rate", type=float, default=2, help="P0: lines a second written to each file")
    b.add_argument("--p0-anduin-config", default="",
                   help="P0: another config template for Anduin (default p0-es.yaml), to see what a stage costs")
    b.add_argument("--p0-warmup", type=float, default=10,
                   help="P0: seconds of writing before the window (at most a quarter of --seconds)")
    b.add_argument("--no-idle", action="store_true")
    b.add_argument("--json", help="also write the medians to this file")
    b.set_defaults(save_bodies=0)
    s = sub.add_parser("soak", help="steady lines with kubelet rotation for an hour: RSS growth, fds, every line")
    s.add_argument("--seconds", type=float, default=3600)
    s.add_argument("--rate", type=float, default=2000, help="lines a second, all files together")
    s.add_argument("--files", type=int, default=100)
    s.add_argument("--rotate-bytes", type=int, default=256 * 1024, help="a file is rotated past this size")
    s.add_argument("--keep", type=int, default=5, help="rotated files kept per container")
    s.add_argument("--interval", type=float, default=10, help="seconds between RSS/fd samples")
    s.add_argument("--warmup", type=float, default=300, help="seconds left out of the slope (at most half the run)")
    s.add_argument("--max-growth", type=float, default=1.0, help="MiB/h of RSS growth allowed after the warm-up")
    s.add_argument("--min-judged", type=float, default=600,
                   help="seconds after the warm-up below which the RSS slope is printed but not judged")
    s.add_argument("--fd-slack", type=int, default=5,
                   help="open fds the second half's median count may exceed the first half's by")
    s.add_argument("--timeout", type=float, default=120, help="seconds to wait for the last lines at the end")
    s.add_argument("--config-template", default=os.path.join(HERE, "p0-es.yaml"))
    s.add_argument("command", nargs="+", help="shipper command; {config} is replaced by the config path")
    w = sub.add_parser("writer", help="(internal) the paced writer of P0 and the soak")
    w.add_argument("--root", required=True)
    w.add_argument("--rate", type=float, required=True, help="lines a second to each file")
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--rotate-bytes", type=int, default=0)
    w.add_argument("--keep", type=int, default=5)
    args = p.parse_args()
    if args.cmd == "corpus":
        make_corpus(args.kind, args.lines, args.out)
        return
    if args.cmd in ("soak", "writer"):
        import quiet
        (quiet.soak if args.cmd == "soak" else quiet.writer_main)(args)
        return
    if args.cmd == "bench":
        from compare import bench
        bench(args)
        return
    template = open(args.config_template).read()
    work = tempfile.mkdtemp(prefix="anduin-harness-")
    warm(args.corpus)
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)
    results = []
    for i in range(args.runs):
        res = one_run(args.command, template, args.sink, work, args, args.save_dir if i == 0 else None)
        results.append(res)
        print(f"run {i + 1}: {fmt(res)}", flush=True)
    med = median(results)
    print("median: lines={lines:.0f} wall_s={wall_s:.3f} cpu_s={cpu_s:.3f} lines_per_cpu_s={lines_per_cpu_s:,.0f} "
          "lines_per_wall_s={lines_per_wall_s:,.0f} peak_rss_mib={peak_rss_mib:.1f} "
          "(anon {peak_anon_mib:.1f} / file {peak_file_mib:.1f})".format(**med))
    if args.idle:
        idle = idle_rss(args.command, template, work, args.idle_seconds)
        print("idle_rss_mib={idle_rss_mib:.1f} (anon {idle_anon_mib:.1f} / file {idle_file_mib:.1f}) after "
              "{s:.0f} s on an empty watched folder".format(s=args.idle_seconds, **idle))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
