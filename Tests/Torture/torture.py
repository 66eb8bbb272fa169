#!/usr/bin/env python3
"""Randomized torture harness: the real `anduin` binary against real peers, random valid configs,
adversarial corpora and fault schedules (issue 24).

    python3 Tests/Torture/torture.py --bin .build/release/anduin --runs 20 [--seed S] [--run K]

Each run's seed is derived from the master seed and the run number, so `--seed S --run K` replays run K
alone (same config, corpus and fault schedule; only the timing differs). A run:

  1. draws a config from the option declarations the binary prints (`anduin config reference --type T`:
     each option's type, range and choices), with durations that govern liveness capped so that a run
     drains in seconds (the caps are in LIVENESS_CAPS), and checks it with `anduin validate` (a config the
     harness drew that validate refuses is a harness bug, reported as such, not as an agent failure);
  2. writes a corpus from adversarial generators into kubelet-style files (docker, CRI or raw), every
     line carrying a unique id (Q<run><f><file>n<seq>Z) so the far end can count it;
  3. runs the agent (Popen, no shell) through a fault schedule while the lines are written;
  4. heals every fault, waits until the agent has drained, stops it with SIGTERM and checks:
     - no exit by signal, no exit nobody asked for (a crash is restarted once, as a DaemonSet would; a
       second one is a restart loop), SIGTERM exits 0 within shutdown_timeout + STOP_SLACK;
     - the accounting identity of every output at the end (/status: in + recovered = delivered +
       dead-lettered + dropped + corrupt + pending, pending 0, unaccounted 0);
     - every written line is at the far end or in the dead-letter store, or covered by the aggregate drop
       counters (drop_oldest, corrupt, filter drops, dead-letter store drops); never both delivered and
       dead-lettered (unless a kill -9 replayed it); never twice in an Elasticsearch index (the `_id` is
       the line's event.id); never twice at an `http` output unless a kill -9 or a request timeout can
       explain the replay;
     - peak RSS (VmHWM) of every agent process under RSS_BOUND_MIB + 2 x the corpus bytes;
     - no configured secret (raw, Basic base64, `ApiKey`/`Bearer` forms) in the agent's log, its
       dead-letter files or /metrics;
     - no document the agent built was refused with 400 when no 400 was scripted (duplicate keys).
  A run whose agent makes no progress for STALL_SECONDS while draining has stalled (a failure), unless
  its requests were timing out then (the peer too slow on a loaded machine) or it said at start that the
  descriptor limit is too low: those, and runs still draining at --drain-seconds, are INCONCLUSIVE,
  neither passed nor failed.

Peers: osmem-server (from .venv-test) and Tests/IntegrationTests/Peers/receiver.py, each behind a small
TCP proxy of this file that refuses, blackholes or slows connections on demand.
"""
import argparse
import base64
import calendar
import collections
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECEIVER = os.path.join(ROOT, "Tests", "IntegrationTests", "Peers", "receiver.py")
ID_RE = re.compile(rb"Q[0-9a-f]{4}f\d{3}n\d{6}Z")
RSS_BOUND_MIB = 256
STOP_SLACK = 10.0
DRAIN_SECONDS = 120.0
STALL_SECONDS = 20


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- option declarations

def parse_size(t):
    m = re.fullmatch(r"([\d,]+)\s*(B|KiB|MiB|GiB|TiB)?", t.strip())
    if not m:
        raise ValueError("size %r" % t)
    mult = {"B": 1, None: 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m.group(2)]
    return int(m.group(1).replace(",", "")) * mult


def parse_duration(t):
    m = re.fullmatch(r"([\d.]+)(ms|s|m|h|d)", t.strip())
    if not m:
        raise ValueError("duration %r" % t)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


class Option:
    def __init__(self, name, kind, lo=None, hi=None, choices=None):
        self.name, self.kind, self.lo, self.hi, self.choices = name, kind, lo, hi, choices

    def __repr__(self):
        return "Option(%s %s %s..%s %s)" % (self.name, self.kind, self.lo, self.hi, self.choices)


def option_table(binary, type_):
    """The options of one plugin type, from `anduin config reference --type`: type, range, choices."""
    out = subprocess.run([binary, "config", "reference", "--type", type_], capture_output=True, text=True,
                         check=True).stdout
    opts = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        name, typ = cells[0].strip("`"), cells[1]
        m = re.fullmatch(r"(integer|size|duration) (\S+)–(\S+)", typ)
        if m:
            conv = {"integer": lambda s: int(s.replace(",", "")), "size": parse_size, "duration": parse_duration}[m.group(1)]
            opts[name] = Option(name, m.group(1), conv(m.group(2)), conv(m.group(3)))
        elif typ == "bool":
            opts[name] = Option(name, "bool")
        elif "\\|" in typ:
            opts[name] = Option(name, "enum", choices=[c.strip() for c in typ.split("\\|")])
        else:
            opts[name] = Option(name, "other")
    return opts


# Durations that decide how fast a run drains are drawn from [declared minimum, cap] (the declared
# maximum, an hour or a day, would only make a run wait); sizes and counts use their full ranges, with
# the declared bounds themselves drawn often.
LIVENESS_CAPS = {
    "batch.timeout": 1.0, "retry.initial": 0.5, "retry.max": 2.0, "retry.max_age": 5.0,
    "request_timeout": 8.0, "connect_timeout": 3.0, "buffer.fsync_interval": 1.0,
    "flush_timeout": 1.0, "partial_timeout": 1.0, "rotate_wait": 1.0, "checkpoint_interval": 1.0,
    "glob_interval": 0.5, "poll_interval": 0.25, "ready.stall_after": 60.0,
    # The full scan behind inotify's folder events: long enough that a missed event shows as a file
    # found late (still well within the drain), not as a fast scan hiding it.
    "refresh_interval": 20.0,
}
# Floors: a request_timeout of 1 ms would fail every request of a healthy destination forever.
LIVENESS_FLOORS = {"request_timeout": 2.0, "connect_timeout": 0.2}
# Sizes whose full range cannot be honoured on this box: a 1 TiB memory of records is not tested.
SIZE_CAPS = {"buffer.max_records": 200_000, "batch.max_records": 100_000, "retry.max_attempts": 6}


class Drawer:
    def __init__(self, rng, tables):
        self.rng, self.t = rng, tables

    def opt(self, table, name):
        return self.t[table][name]

    def draw(self, table, name, lo=None, hi=None):
        o = self.opt(table, name)
        rng = self.rng
        if o.kind == "bool":
            return rng.random() < 0.5
        if o.kind == "enum":
            return rng.choice(o.choices)
        a = o.lo if lo is None else max(o.lo, lo)
        b = o.hi if hi is None else min(o.hi, hi)
        if o.kind == "duration":
            b = min(b, LIVENESS_CAPS.get(name, b))
            a = max(a, min(LIVENESS_FLOORS.get(name, a), b))
        if o.kind == "integer" and name in SIZE_CAPS:
            b = min(b, SIZE_CAPS[name])
        if b < a:
            b = a
        r = rng.random()
        if r < 0.3:
            v = a
        elif r < 0.45:
            v = b
        else:  # log-uniform in between
            la, lb = max(a, 1e-3 if o.kind == "duration" else 1), max(b, 1e-3 if o.kind == "duration" else 1)
            v = math_exp(rng.uniform(math_log(la), math_log(lb)))
            v = min(max(v, a), b)
        if o.kind == "duration":
            return "%dms" % max(round(v * 1000), 0) if v < 1000 else "%ds" % int(v)
        return int(v)


def math_log(x):
    import math
    return math.log(x)


def math_exp(x):
    import math
    return math.exp(x)


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (k, yaml_value(x)) for k, x in v.items()) + "}"
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted scalar


def to_yaml(doc, indent=0):
    lines = []
    for k, v in doc.items():
        if isinstance(v, dict) and v and indent < 4:
            lines.append(" " * indent + "%s:" % k)
            lines.append(to_yaml(v, indent + 2))
        else:
            lines.append(" " * indent + "%s: %s" % (k, yaml_value(v)))
    return "\n".join(lines)


# ---------------------------------------------------------------- corpus

HEXCHARS = "0123456789abcdef"


def rand_time(rng, extremes):
    r = rng.random()
    if not extremes or r < 0.85:
        t = time.time() + rng.uniform(-3600, 60)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % rng.randrange(10 ** 9)
    return rng.choice([
        "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000001+14:00", "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:59-12:00", "1677-09-21T00:12:43.145224191Z", "1677-09-21T00:12:43.145224192Z",
        "2262-04-11T23:47:16.854775807Z", "2262-04-11T23:47:16.854775808Z", "1970-01-01T00:00:00Z",
        "%04d-%02d-%02dT%02d:%02d:%02d.%dZ" % (rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
                                              rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                                              rng.randrange(10 ** 9)),
        "not-a-time", "2026-13-45T99:99:99Z", "",
    ])


def body_text(rng, kind, size):
    """Message text after the id (bytes, no newline)."""
    if kind == "hex":
        return rng.getrandbits(size * 4).to_bytes(size // 2 + 1, "little").hex()[:size].encode()
    if kind == "b64":
        return base64.b64encode(rng.getrandbits(size * 6).to_bytes(size * 3 // 4 + 1, "little"))[:size]
    if kind == "same":
        return (b"all work and no play " * (size // 21 + 1))[:size]
    if kind == "json":
        pad = rng.getrandbits(120).to_bytes(15, "little").hex()
        dup = rng.choice(['', ',"level":"warn"', ',"log":"x","_log":"y"', ',"stream":"s","@timestamp":"t"'])
        return ('"level":"info","pad":"%s"%s}' % (pad, dup)).encode()
    if kind == "logfmt":
        return b'level=warn msg="a b c" dur=1.2ms k=' + rng.getrandbits(64).to_bytes(8, "little").hex().encode()
    if kind == "bad":
        junk = bytes(rng.choice([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x00, 0x01, 0x1b, 0x7f, 0x08, 0x0c, 0x22, 0x5c,
                                 0xf0, 0x9f, 0x98]) for _ in range(size))
        return junk.replace(b"\n", b"?")
    return b"plain message " + rng.choice([b"GET /", b"user logged in", b"ok", b"timeout talking to db"])


class FileCorpus:
    """One log file's lines, in writing order: ('line', [raw file lines], [ids]) and rotation events."""

    def __init__(self, idx, fmt):
        self.idx, self.fmt, self.events = idx, fmt, []


def encode_lines(rng, fmt, text, stream, tstamp, split):
    """One logical message as the file lines of its format (docker/CRI split into partials)."""
    if fmt == "raw":
        return [text + b"\n"]
    chunks = [text[i:i + split] for i in range(0, len(text), split)] or [b""]
    out = []
    for n, c in enumerate(chunks):
        last = n == len(chunks) - 1
        if fmt == "docker":
            # The log value as JSON: ASCII-escape valid text; raw invalid bytes are left raw (as a buggy
            # runtime would write them) except quote and backslash.
            s = c.decode("latin-1")
            esc = json.dumps(s, ensure_ascii=False)[1:-1].encode("latin-1") if rng.random() < 0.7 else \
                c.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            out.append(b'{"log":"' + esc + (b'\\n' if last else b'') + b'","stream":"' + stream.encode() +
                       b'","time":"' + tstamp.encode() + b'"}\n')
        else:
            out.append(tstamp.encode() + b" " + stream.encode() + (b" F " if last else b" P ") + c + b"\n")
    return out


def make_corpus(rng, runtag, nfiles, nlines, fmt_choice, extremes, multiline, huge, kinds):
    files = []
    ids_total = 0
    for f in range(nfiles):
        fmt = fmt_choice if fmt_choice != "mixed" else rng.choice(["docker", "cri"])
        fc = FileCorpus(f, fmt)
        seq = 0
        per = max(1, nlines // nfiles)
        rotations = set(rng.sample(range(per), min(per, rng.choice([0, 0, 1, 2])))) if per > 10 else set()
        truncs = set(rng.sample(range(per), min(per, rng.choice([0, 0, 0, 1])))) if per > 10 else set()
        for i in range(per):
            if i in rotations:
                fc.events.append(("rotate",))
            if i in truncs:
                fc.events.append(("copytruncate",))
            tid = "Q%sf%03dn%06dZ" % (runtag, f, seq)
            seq += 1
            stream = "stdout" if rng.random() < 0.8 else "stderr"
            ts = rand_time(rng, extremes)
            kind = rng.choice(kinds)
            r = rng.random()
            if huge and r < 0.004:
                size = rng.choice([17 * 1024, 33 * 1024, 70 * 1024, 200 * 1024, 600 * 1024])
                text = tid.encode() + b" " + body_text(rng, rng.choice(["hex", "same", "b64"]), size)
                lines = encode_lines(rng, fmt, text, stream, ts, 16 * 1024 if fmt == "docker" else rng.choice([8192, 16384, 65536]))
                fc.events.append(("line", lines, [tid]))
                continue
            if multiline and r < 0.05:
                # A Java trace: every line its own id; the tail's multiline: (or the filter) joins them.
                head = (tid + " java.lang.IllegalStateException: boom").encode()
                msgs, tids = [head], [tid]
                for _ in range(rng.randint(1, 6)):
                    t2 = "Q%sf%03dn%06dZ" % (runtag, f, seq)
                    seq += 1
                    msgs.append(("\tat com.example.Foo.bar(Foo.java:%d) %s" % (rng.randint(1, 999), t2)).encode())
                    tids.append(t2)
                lines = []
                for m in msgs:
                    lines += encode_lines(rng, fmt, m, stream, ts, 1 << 30)
                fc.events.append(("line", lines, tids))
                continue
            if kind == "json":
                text = b'{"tid":"' + tid.encode() + b'",' + body_text(rng, "json", 0)
            elif kind == "logfmt":
                text = b"tid=" + tid.encode() + b" " + body_text(rng, "logfmt", 0)
            else:
                text = tid.encode() + b" " + body_text(rng, kind, rng.choice([8, 30, 60, 200, 1000]))
            split = rng.choice([1 << 30, 1 << 30, 16 * 1024, 40]) if fmt != "raw" else 1 << 30
            fc.events.append(("line", encode_lines(rng, fmt, text, stream, ts, split), [tid]))
        ids_total += seq
        files.append(fc)
    return files, ids_total


class Writer(threading.Thread):
    """Writes every file's events over `seconds`, kubelet-style: logs/p<N>/c/0.log, rotated by rename to
    0.log.<time> (a new 0.log follows), or copied to 0.copy.<n> (no glob matches it) and truncated."""

    def __init__(self, root, files, seconds):
        super().__init__(daemon=True)
        self.root, self.files, self.seconds = root, files, seconds
        self.written = collections.Counter()  # id -> times written (1)
        self.at_risk = set()  # ids in a file when it was copytruncated (README: a known limit)
        self.done = threading.Event()
        self.bytes = 0
        self.error = None

    def path(self, fc):
        return os.path.join(self.root, "p%03d" % fc.idx, "c", "0.log")

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the run
            self.error = repr(e)
        self.done.set()

    def _run(self):
        handles, cursor, in_file = {}, {}, {}
        for fc in self.files:
            p = self.path(fc)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            handles[fc.idx] = open(p, "ab")
            cursor[fc.idx] = 0
            in_file[fc.idx] = []
        start = time.monotonic()
        nrot = 0
        while True:
            frac = min(1.0, (time.monotonic() - start) / self.seconds)
            left = False
            for fc in self.files:
                target = int(len(fc.events) * frac)
                h = handles[fc.idx]
                while cursor[fc.idx] < target:
                    ev = fc.events[cursor[fc.idx]]
                    cursor[fc.idx] += 1
                    if ev[0] == "line":
                        for ln in ev[1]:
                            h.write(ln)
                            self.bytes += len(ln)
                        for t in ev[2]:
                            self.written[t] += 1
                        in_file[fc.idx] += ev[2]
                    elif ev[0] == "rotate":
                        h.close()
                        nrot += 1
                        p = self.path(fc)
                        os.rename(p, p + time.strftime(".%Y%m%d-%H%M%S", time.gmtime()) + "%03d" % nrot)
                        h = handles[fc.idx] = open(p, "ab")
                        in_file[fc.idx] = []
                    elif ev[0] == "copytruncate":
                        h.flush()
                        nrot += 1
                        p = self.path(fc)
                        shutil.copyfile(p, os.path.join(os.path.dirname(p), "0.copy.%d" % nrot))
                        os.truncate(p, 0)
                        self.at_risk.update(in_file[fc.idx])
                        in_file[fc.idx] = []
                h.flush()
                left = left or cursor[fc.idx] < len(fc.events)
            if not left and frac >= 1.0:
                break
            time.sleep(0.02)
        for h in handles.values():
            h.close()


# ---------------------------------------------------------------- peers

class Proxy:
    """A TCP proxy in front of a peer: pass, refuse (nothing listening), blackhole (accept, never answer)
    or slow (each answer chunk delayed)."""

    def __init__(self, target_port):
        self.target = target_port
        self.mode, self.delay = "pass", 0.0
        self.lock = threading.Lock()
        self.conns = set()
        self.lsock = None
        self.port = 0
        self._listen()

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(256)
        self.lsock, self.port = s, s.getsockname()[1]
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _kill_conns(self):
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def set_mode(self, mode, delay=0.0):
        with self.lock:
            old, self.mode, self.delay = self.mode, mode, delay
        if mode in ("refuse", "blackhole") or old in ("blackhole", "slow"):
            self._kill_conns()
        if mode == "refuse" and self.lsock:
            try:
                self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread; close alone would not
            except OSError:
                pass
            self.lsock.close()
            self.lsock = None
        elif mode != "refuse" and self.lsock is None:
            for _ in range(50):
                try:
                    self._listen()
                    break
                except OSError:
                    time.sleep(0.1)

    def _handle(self, c):
        # Relayed pieces go on at once: with Nagle a small piece waits for the peer's delayed ACK
        # (40 ms a request), which makes one-record batches crawl.
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.conns.add(c)
            mode = self.mode
        if mode == "blackhole":
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
            c.close()
            return
        try:
            u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            u.settimeout(None)
            u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns.add(u)

        def pump(a, b, slow):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    if slow and self.mode == "slow":
                        time.sleep(self.delay)
                    b.sendall(d)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(u, c, True), daemon=True)
        t.start()
        pump(c, u, False)
        t.join()
        c.close()
        u.close()


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def osmem_binary():
    if os.environ.get("OSMEM_SERVER_BIN"):
        return os.environ["OSMEM_SERVER_BIN"]
    lib = os.path.join(ROOT, ".venv-test", "lib")
    for py in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        p = os.path.join(lib, py, "site-packages", "osmem_server", "bin", "osmem-server")
        if os.access(p, os.X_OK):
            return p
    raise SystemExit("osmem-server not found: run `make test-deps` (it installs it in .venv-test)")


class Peer:
    """osmem-server or receiver.py, behind a Proxy."""

    def __init__(self, kind, rundir):
        self.kind = kind
        if kind == "osmem":
            self.p = subprocess.Popen([osmem_binary(), "--no-ja"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=open(os.path.join(rundir, "osmem.log"), "wb"))
            ready = json.loads(self.p.stdout.readline())
            self.url = ready["url"]
        else:
            self.p = subprocess.Popen([sys.executable, RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=open(os.path.join(rundir, "receiver-%d.log" % id(self)), "wb"))
            ready = json.loads(self.p.stdout.readline())
            self.url = "http://127.0.0.1:%d" % ready["port"]
        self.proxy = Proxy(int(self.url.rsplit(":", 1)[1]))
        self.via = "http://127.0.0.1:%d" % self.proxy.port

    def script(self, **kw):
        if self.kind == "receiver":
            http("POST", self.url + "/_control/script", kw)

    def docs(self, es):
        """Every stored document as bytes (one JSON text each)."""
        out = []
        if self.kind == "osmem":
            http("POST", self.url + "/torture*/_refresh", {})
            # The scroll API: from + size stops at index.max_result_window (10,000).
            j = json.loads(http("POST", self.url + "/torture*/_search?scroll=1m",
                                {"size": 5000, "query": {"match_all": {}}, "sort": ["_doc"]}, 60))
            while j["hits"]["hits"]:
                out += [json.dumps(h["_source"]).encode() for h in j["hits"]["hits"]]
                j = json.loads(http("POST", self.url + "/_search/scroll", {"scroll": "1m", "scroll_id": j["_scroll_id"]}, 60))
            total = json.loads(http("GET", self.url + "/torture*/_count"))["count"]
            if total != len(out):
                raise RuntimeError("osmem: _count %d but _search paged %d documents" % (total, len(out)))
        elif es:
            j = json.loads(http("GET", self.url + "/_control/bulk", timeout=60))
            out = [json.dumps(d["doc"]).encode() for d in j["docs"]]
        else:
            j = json.loads(http("GET", self.url + "/_control/records", timeout=60))
            out = [json.dumps(r).encode() for r in j["records"]]
        return out

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.proxy.set_mode("refuse")


# ---------------------------------------------------------------- the agent

def agent_env():
    """The agent's environment: the Swift backtracer switched on, so that a trap names its source line in
    the agent's log (a binary linked with the static stdlib needs to be told where the backtracer is)."""
    env = dict(os.environ)
    if "SWIFT_BACKTRACE" not in env:
        swift = shutil.which("swift")
        if swift:
            libexec = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(swift))), "libexec", "swift", "linux")
            for name in ("swift-backtrace-static", "swift-backtrace"):
                if os.access(os.path.join(libexec, name), os.X_OK):
                    env["SWIFT_BACKTRACE"] = "enable=yes,color=no,swift-backtrace=" + os.path.join(libexec, name)
                    break
    return env


class AgentProc:
    def __init__(self, popen, logpath, nofile):
        self.p, self.log, self.nofile = popen, logpath, nofile
        self.hwm_kib = 0
        self.status = None  # last /status
        self.expected_exit = False
        self.started = time.monotonic()
        self.stop_seconds = None


class Agent:
    def __init__(self, binary, rundir, config_path, data_dir):
        self.bin, self.rundir, self.config, self.data_dir = binary, rundir, config_path, data_dir
        self.procs = []
        self.lock = threading.Lock()

    @property
    def cur(self):
        return self.procs[-1] if self.procs else None

    def start(self, nofile=None):
        try:
            os.unlink(os.path.join(self.data_dir, "api.address"))
        except OSError:
            pass
        logpath = os.path.join(self.rundir, "agent-%d.log" % (len(self.procs) + 1))

        def pre():
            os.setsid()
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        p = subprocess.Popen([self.bin, "run", "--config", self.config], stdin=subprocess.DEVNULL,
                             stdout=open(logpath, "wb"), stderr=subprocess.STDOUT, preexec_fn=pre, cwd=self.rundir,
                             env=agent_env())
        with self.lock:
            self.procs.append(AgentProc(p, logpath, nofile))

    def api(self):
        try:
            with open(os.path.join(self.data_dir, "api.address")) as f:
                a = f.read().strip()
            return a or None
        except OSError:
            return None

    def sample(self):
        a = self.cur
        if a is None or a.p.poll() is not None:
            return
        try:
            with open("/proc/%d/status" % a.p.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        a.hwm_kib = max(a.hwm_kib, int(line.split()[1]))
        except OSError:
            pass
        api = self.api()
        if api:
            try:
                a.status = json.loads(http("GET", "http://%s/status" % api, timeout=3))
            except Exception:  # noqa: BLE001 - busy or stopping; the next sample will do
                pass

    def metrics(self):
        api = self.api()
        if not api:
            return b""
        try:
            return http("GET", "http://%s/metrics" % api, timeout=5)
        except Exception:  # noqa: BLE001
            return b""

    def signal(self, sig, expect_exit):
        a = self.cur
        if a is None or a.p.poll() is not None:
            return None
        if expect_exit:
            self.sample()
            a.expected_exit = True
        a.p.send_signal(sig)
        return a

    def wait_exit(self, a, timeout):
        t0 = time.monotonic()
        try:
            a.p.wait(timeout)
        except subprocess.TimeoutExpired:
            a.p.kill()
            a.p.wait()
            a.stop_seconds = None
            return False
        a.stop_seconds = time.monotonic() - t0
        return True


# ---------------------------------------------------------------- one run

FAULTS_ALL = ["kill9", "term", "hup_good", "hup_bad", "refuse", "blackhole", "slow", "items_429", "items_503",
              "items_400", "items_echo", "req_413", "req_503", "req_429", "malformed", "req_400echo", "disk_full",
              "fd_limit"]


def run_seed(master, k):
    return int.from_bytes(hashlib.sha256(("%d:%d" % (master, k)).encode()).digest()[:6], "big")


class Run:
    def __init__(self, args, tables, master, k):
        self.args, self.tables, self.master, self.k = args, tables, master, k
        self.seed = run_seed(master, k)
        self.rng = random.Random(self.seed)
        self.tag = "%04x" % (self.seed & 0xFFFF)
        self.dir = os.path.join(args.workdir, "%d-%d" % (master, k))
        self.failures, self.harness_bugs, self.notes = [], [], []
        self.mounted = False
        self.ctl = threading.RLock()  # starting and stopping the agent: faults vs the crash restart

    def fail(self, msg):
        self.failures.append(msg)

    # -- config
    def draw_config(self):
        rng, d = self.rng, Drawer(self.rng, self.tables)
        self.secrets = {}
        inp = {"type": "tail", "paths": [os.path.join(self.dir, "logs/*/*/*.log"), os.path.join(self.dir, "logs/*/*/*.log.*")],
               "format": self.fmt if self.fmt in ("raw",) else rng.choice(["auto", self.fmt if self.fmt != "mixed" else "auto"]),
               "max_line_bytes": d.draw("tail", "max_line_bytes", hi=2 << 20),
               "read_budget": d.draw("tail", "read_budget"),
               "partial_timeout": d.draw("tail", "partial_timeout"),
               "checkpoint_interval": d.draw("tail", "checkpoint_interval"),
               "rotate_wait": d.draw("tail", "rotate_wait"),
               "glob_interval": d.draw("tail", "glob_interval"),
               "watch": d.draw("tail", "watch"), "poll_interval": d.draw("tail", "poll_interval"),
               "max_open_files": rng.choice([0, 0, d.draw("tail", "max_open_files", lo=1, hi=256)])}
        # Drawn from a generator of its own, so the draws after it (and every earlier seed's run) stay
        # as they were.
        inp["refresh_interval"] = Drawer(random.Random(self.seed ^ 0x5EED), self.tables).draw("tail", "refresh_interval")
        filters = {}
        src = "logs"
        if self.multiline:
            # The filter's table: the same declarations as the tail's `multiline:` group.
            ml = {"mode": "java", "flush_timeout": d.draw("multiline", "flush_timeout"),
                  "max_bytes": d.draw("multiline", "max_bytes", hi=4 << 20)}
            if rng.random() < 0.8:
                inp["multiline"] = ml
            else:
                # The filter stays for records of other inputs; drawn sometimes so it keeps working.
                filters["ml"] = dict(ml, type="multiline", **{"from": [src]})
                src = "ml"
        if rng.random() < 0.5:
            filters["p"] = {"type": "parse", "from": [src], "formats": rng.choice([["json"], ["json", "logfmt"]]),
                            "keep_message": d.draw("parse", "keep_message")}
            if rng.random() < 0.3:
                filters["p"]["target"] = "parsed"
            src = "p"
        outputs = {}
        for i, peer in enumerate(self.peers):
            name = "o%d" % i
            o = {"type": "elasticsearch" if peer.es else "http", "from": [src]}
            if peer.es:
                o["hosts"] = [peer.peer.via]
                o["index"] = rng.choice(["torture", "torture-%Y", "torture-%Y.%m.%d"])
            else:
                o["uri"] = peer.peer.via + "/ingest"
                o["encoding"] = d.draw("http", "encoding")
            # Credentials drawn at random: none may show up in the log, the dead letters or /metrics.
            auth = rng.choice(["api_key", "basic", "none"] if peer.es else ["basic", "none"])
            if auth == "api_key":
                o["api_key"] = self.secret("api_key")
            elif auth == "basic":
                o["user"] = "torture"
                o["password"] = self.secret("password")
            if rng.random() < 0.5:
                o["headers"] = {"X-Torture-Token": self.secret("header")}
            buf = {"type": self.buffer_types[i]}
            if buf["type"] == "disk":
                mb = d.draw("network-outputs", "buffer.max_bytes", hi=64 << 20) if rng.random() > 0.05 else \
                    self.tables["network-outputs"]["buffer.max_bytes"].hi
                buf["max_bytes"] = mb
                buf["segment_bytes"] = d.draw("network-outputs", "buffer.segment_bytes", hi=mb) if rng.random() > 0.4 else \
                    self.tables["network-outputs"]["buffer.segment_bytes"].lo
                buf["when_full"] = d.draw("network-outputs", "buffer.when_full")
                buf["fsync"] = d.draw("network-outputs", "buffer.fsync")
                buf["fsync_interval"] = d.draw("network-outputs", "buffer.fsync_interval")
                buf["compress"] = rng.random() < 0.8
            else:
                buf["max_records"] = d.draw("network-outputs", "buffer.max_records")
            o["buffer"] = buf
            o["batch"] = {"max_records": d.draw("network-outputs", "batch.max_records"),
                          "max_bytes": d.draw("network-outputs", "batch.max_bytes"),
                          "timeout": d.draw("network-outputs", "batch.timeout")}
            ri = d.draw("network-outputs", "retry.initial")
            o["retry"] = {"initial": ri, "max": max(ri, d.draw("network-outputs", "retry.max"), key=parse_duration),
                          "max_age": rng.choice(["0s", d.draw("network-outputs", "retry.max_age", lo=1.0)]),
                          "max_attempts": rng.choice([0, d.draw("network-outputs", "retry.max_attempts")]),
                          "lane_max_bytes": d.draw("network-outputs", "retry.lane_max_bytes", hi=64 << 20)}
            o["dead_letter"] = {"max_bytes": d.draw("network-outputs", "dead_letter.max_bytes", hi=64 << 20),
                                "max_files": d.draw("network-outputs", "dead_letter.max_files")}
            o["concurrency"] = rng.randint(1, 4)
            o["request_timeout"] = d.draw("network-outputs", "request_timeout")
            o["connect_timeout"] = d.draw("network-outputs", "connect_timeout")
            o["compression"] = d.draw("network-outputs", "compression")
            o["compression_level"] = d.draw("network-outputs", "compression_level")
            o["metadata"] = {k: rng.random() < 0.6 for k in ("file_path", "offset", "event_id")}
            outputs[name] = o
            peer.name = name
        return {"data_dir": os.path.join(self.dir, "data"), "log_level": rng.choice(["info", "info", "debug"]),
                "log_format": rng.choice(["text", "json"]), "shutdown_timeout": "%ds" % rng.choice([2, 5, 10]),
                "api": {"address": "127.0.0.1:0"}, "inputs": {"logs": inp}, "filters": filters, "outputs": outputs}

    def secret(self, kind):
        s = "S3cr%s%s" % (kind[:3], "".join(self.rng.choice(HEXCHARS) for _ in range(20)))
        self.secrets[kind + str(len(self.secrets))] = s
        return s

    def write_config(self, cfg, path):
        if not cfg.get("filters"):
            cfg = {k: v for k, v in cfg.items() if k != "filters"}
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")

    def validate(self, path):
        r = subprocess.run([self.args.bin, "validate", "--config", path], capture_output=True, text=True)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    # -- the run
    def plan(self):
        rng = self.rng
        self.fmt = rng.choice(["docker", "cri", "mixed", "raw"])
        self.multiline = rng.random() < 0.4
        self.extremes = rng.random() < 0.4
        self.huge = rng.random() < 0.5
        kinds = rng.choice([["hex"], ["hex", "b64"], ["same"], ["plain", "json", "logfmt", "bad", "hex", "same"],
                            ["json"], ["bad", "plain"]])
        self.nfiles = rng.choice([1, 2, 3, 5, 8, 20, 40])
        self.nlines = rng.choice([1000, 3000, 6000, 12000, 20000])
        self.write_seconds = rng.uniform(6, 14)
        self.files, self.nids = make_corpus(rng, self.tag, self.nfiles, self.nlines, self.fmt, self.extremes,
                                            self.multiline, self.huge, kinds)
        self.kinds = kinds
        # Destinations.
        self.peers = []
        n_out = rng.choice([1, 1, 2])
        self.buffer_types = [("disk" if rng.random() < 0.65 else "memory") for _ in range(n_out)]
        self.dest_kinds = [rng.choice(["osmem", "recv-es", "recv-http"]) for _ in range(n_out)]
        # Faults: (start second, duration, name, output index).
        faults = []
        pool = list(FAULTS_ALL)
        if not self.args.allow_mount:
            pool.remove("disk_full")
        for _ in range(rng.choice([0, 1, 2, 3, 3, 4, 5])):
            f = rng.choice(pool)
            faults.append((rng.uniform(0.5, self.write_seconds), rng.uniform(1, 5), f, rng.randrange(n_out)))
        self.faults = sorted(faults)
        self.tmpfs = any(f[2] == "disk_full" for f in faults)

    def summary(self):
        segs = []
        for i, o in enumerate(self.cfg["outputs"].values()):
            b = o["buffer"]
            segs.append("%s:%s/%s" % (self.dest_kinds[i], b["type"], "%s/%s/%s" % (b["max_bytes"], b["segment_bytes"], b["when_full"])
                                      if b["type"] == "disk" else b["max_records"]))
        return ("fmt=%s files=%d lines=%d kinds=%s multiline=%s extremes=%s huge=%s out=[%s] faults=[%s]" %
                (self.fmt, self.nfiles, self.nids, "+".join(self.kinds), self.multiline, self.extremes, self.huge,
                 " ".join(segs), " ".join("%s@%.1f" % (f[2], f[0]) for f in self.faults)))

    def execute(self):
        t_start = time.monotonic()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.plan()
        data_dir = os.path.join(self.dir, "data")
        os.makedirs(data_dir)
        if self.tmpfs:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", data_dir], capture_output=True, text=True)
            if r.returncode != 0:
                self.notes.append("disk_full skipped: cannot mount a tmpfs (%s)" % r.stderr.strip())
                self.faults = [f for f in self.faults if f[2] != "disk_full"]
            else:
                self.mounted = True
        peers_by_kind = []
        try:
            for dk in self.dest_kinds:
                p = Peer("osmem" if dk == "osmem" else "receiver", self.dir)
                peers_by_kind.append(p)
            self.peers = [type("Dest", (), {"peer": p, "es": dk != "recv-http", "name": None})()
                          for p, dk in zip(peers_by_kind, self.dest_kinds)]
            self.cfg = self.draw_config()
            self.cfg_path = os.path.join(self.dir, "anduin.yaml")
            self.write_config(self.cfg, self.cfg_path)
            ok, msg = self.validate(self.cfg_path)
            log("  %s" % self.summary())
            if not ok:
                self.harness_bugs.append("validate refused the drawn config: %s" % msg.replace("\n", " | ")[:600])
                return
            self.good_config = open(self.cfg_path).read()
            self.agent = Agent(self.args.bin, self.dir, self.cfg_path, data_dir)
            self._drive()
        finally:
            for p in peers_by_kind:
                p.stop()
            a = getattr(self, "agent", None)
            if a and a.cur and a.cur.p.poll() is None:
                a.cur.p.kill()
                a.cur.p.wait()
            if self.mounted:
                subprocess.run(["umount", "-l", data_dir])
            self.seconds = time.monotonic() - t_start

    def _start_agent(self, nofile=None):
        with open(self.cfg_path, "w") as f:
            f.write(self.good_config)  # a bad config of a hup_bad fault may still be in place
        self.agent.start(nofile)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.agent.api() or self.agent.cur.p.poll() is not None:
                break
            time.sleep(0.05)

    def _drive(self):
        rng, agent = self.rng, self.agent
        writer = Writer(os.path.join(self.dir, "logs"), self.files, self.write_seconds)
        self.writer = writer
        stop_sampling = threading.Event()
        crashes = self.crashes = []

        def sampler():
            while not stop_sampling.is_set():
                agent.sample()
                with self.ctl:
                    a = agent.cur
                    if a is not None and a.p.poll() is not None and not a.expected_exit:
                        crashes.append((a.p.returncode, a.log, time.monotonic() - a.started))
                        a.expected_exit = True  # counted once
                        if len(crashes) <= 1:
                            time.sleep(1.0)  # a DaemonSet's restart, once
                            self._start_agent()
                stop_sampling.wait(0.5)

        nofile0 = None
        if any(f[2] == "fd_limit" and f[0] < 1.0 for f in self.faults):
            nofile0 = rng.choice([32, 64, 128])
        self._start_agent(nofile0)
        threading.Thread(target=sampler, daemon=True).start()
        writer.start()
        t0 = time.monotonic()
        pending = list(self.faults)
        active = []  # (end time, undo)
        self.had_kill9 = False
        self.had_timeout_fault = False
        self.scripted_400 = False
        filler = []
        while not writer.done.is_set() or pending or active:
            now = time.monotonic() - t0
            for end, undo in [x for x in active if x[0] <= now]:
                active.remove((end, undo))
                undo()
            while pending and pending[0][0] <= now:
                at, dur, name, oi = pending.pop(0)
                with self.ctl:
                    undo = self._fault(name, oi, filler)
                if undo:
                    active.append((now + dur, undo))
            if writer.done.is_set() and not pending and active and now > self.write_seconds + 6:
                for _, undo in active:
                    undo()
                active = []
            time.sleep(0.05)
        if writer.error:
            self.harness_bugs.append("writer: " + writer.error)
        # Every fault healed: the agent must be running and drain.
        with self.ctl:
            a = agent.cur
            if a.p.poll() is not None:
                if not a.expected_exit:
                    crashes.append((a.p.returncode, a.log, time.monotonic() - a.started))
                    a.expected_exit = True
                self._start_agent()
        self._drain()
        stop_sampling.set()
        time.sleep(0.6)
        metrics = agent.metrics()
        a = agent.signal(signal.SIGTERM, True)
        if a is not None:
            limit = parse_duration(self.cfg["shutdown_timeout"]) + STOP_SLACK
            if not agent.wait_exit(a, limit):
                self.fail("SIGTERM at the end: still running after %.0f s (shutdown_timeout %s), killed" %
                          (limit, self.cfg["shutdown_timeout"]))
            elif a.p.returncode != 0:
                self.fail("SIGTERM at the end: %s" % exit_text(a))
        for rc, logp, age in crashes:
            if rc < 0:
                what = "killed by %s%s" % (signal.Signals(-rc).name, " (a Swift trap)" if -rc in (4, 5) else "")
            else:
                what = "exit status %d" % rc
            self.fail("agent exited on its own (%s) %.1f s after start; log %s: %s" %
                      (what, age, logp, fatal_line(logp) or tail_of(logp, 1)))
        if len(crashes) > 1:
            self.fail("restart loop: %d unrequested exits" % len(crashes))
        self._check(metrics)

    def _drain(self):
        """Waits until every output has nothing pending and every file is checkpointed at its end. A run that
        keeps making progress may take up to --drain-seconds; one that makes none for STALL_SECONDS with
        records waiting is stalled (a failure); one still progressing at the cap is inconclusive."""
        t0 = time.monotonic()
        deadline = t0 + self.args.drain_seconds
        quiet, last_progress, last_sum = 0, t0, None
        self.drain_state = "drained"
        while True:
            self.agent.sample()
            a = self.agent.cur
            s = a.status
            if a.p.poll() is not None:
                with self.ctl:
                    if not a.expected_exit:
                        self.crashes.append((a.p.returncode, a.log, time.monotonic() - a.started))
                        a.expected_exit = True
                self.drain_state = "agent exited"
                return
            if s and all(o["pending"] == 0 for o in s["outputs"]) and all(
                    i["bytes_behind"] == 0 and i.get("files_waiting", 0) == 0 for i in s["inputs"]):
                quiet += 1
                if quiet >= 3:
                    return
            else:
                quiet = 0
            now = time.monotonic()
            if s:
                total = sum(o["delivered"] + o["dead_lettered"] + o["dropped"]["drop_oldest"] + o["dropped"]["corrupt"]
                            for o in s["outputs"]) + sum(i["records"] for i in s["inputs"])
                if total != last_sum:
                    last_sum, last_progress = total, now
            if now - last_progress > STALL_SECONDS:
                self.drain_state = "stalled"
                why = ("stalled: no record read, delivered, dead-lettered or dropped for %d s after every fault was "
                       "healed; outputs %s; inputs %s" % (STALL_SECONDS, brief_outputs(s), brief_inputs(s)))
                try:
                    said = b"the file descriptor limit (" in open(self.agent.cur.log, "rb").read()
                except OSError:
                    said = False
                if said:
                    # The agent said at start that the drawn descriptor limit cannot hold this config.
                    self.notes.append("under a descriptor limit the agent said was too low: " + why)
                elif request_timeouts_since(self.agent.cur.log, time.time() - (now - last_progress)):
                    # The destination (a Python peer on a loaded machine) did not answer the agent's requests
                    # within request_timeout: not a verdict on the agent either way.
                    self.drain_state = "inconclusive"
                    self.notes.append("INCONCLUSIVE: the destination's answers timed out while nothing moved: " + why)
                else:
                    self.fail(why)
                return
            if now > deadline:
                self.drain_state = "inconclusive"
                self.notes.append("INCONCLUSIVE: still draining (slowly) after %.0f s: %s" % (
                    self.args.drain_seconds, brief_outputs(s)))
                return
            time.sleep(0.5)

    # -- faults
    def _fault(self, name, oi, filler):
        rng, agent = self.rng, self.agent
        dest = self.peers[oi]
        peer = dest.peer
        if name == "kill9":
            self.had_kill9 = True
            a = agent.signal(signal.SIGKILL, True)
            if a:
                a.p.wait()
            time.sleep(rng.uniform(0.1, 1.0))
            self._start_agent()
        elif name == "term":
            a = agent.signal(signal.SIGTERM, True)
            if a:
                limit = parse_duration(self.cfg["shutdown_timeout"]) + STOP_SLACK
                if not agent.wait_exit(a, limit):
                    self.fail("SIGTERM: still running after %.0f s (shutdown_timeout %s), killed" %
                              (limit, self.cfg["shutdown_timeout"]))
                    self.had_kill9 = True
                elif a.p.returncode != 0:
                    self.fail("SIGTERM: %s" % exit_text(a))
            self._start_agent()
        elif name == "hup_good":
            # Another valid draw of the batch and concurrency; the buffers stay the same.
            cfg = json.loads(json.dumps(self.cfg))
            d = Drawer(rng, self.tables)
            for o in cfg["outputs"].values():
                o["concurrency"] = rng.randint(1, 4)
                o["batch"]["max_records"] = d.draw("network-outputs", "batch.max_records")
                o["compression_level"] = d.draw("network-outputs", "compression_level")
            self.write_config(cfg, self.cfg_path)
            ok, msg = self.validate(self.cfg_path)
            if not ok:
                self.harness_bugs.append("validate refused the reload config: " + msg[:300])
                self.write_config(self.cfg, self.cfg_path)
            else:
                self.cfg = cfg
                self.good_config = open(self.cfg_path).read()
                agent.signal(signal.SIGHUP, False)
        elif name == "hup_bad":
            bad = self.cfg_path + ".bad"
            with open(self.cfg_path) as f:
                text = f.read()
            text = text.replace("concurrency: ", "concurrency: 1000", 1) if rng.random() < 0.5 else text + "\nbogus_key: [\n"
            good = self.good_config
            with open(self.cfg_path, "w") as f:
                f.write(text)
            agent.signal(signal.SIGHUP, False)

            def undo():
                with open(self.cfg_path, "w") as f:
                    f.write(good)
            return undo
        elif name in ("refuse", "blackhole", "slow"):
            # Connections are cut (refuse, blackhole) or answers come late (slow): a request the destination
            # stored may be retried, so an http output may receive it twice (at least once).
            self.had_timeout_fault = True
            peer.proxy.set_mode(name, rng.uniform(0.3, 3.0))
            return lambda: peer.proxy.set_mode("pass")
        elif name.startswith("items_") or name.startswith("req_") or name == "malformed":
            if peer.kind != "receiver":
                return None  # osmem answers as it does: only the proxy faults apply to it
            idx = self.cfg["outputs"][dest.name].get("index", "")
            year_index = time.strftime(idx, time.gmtime()) if idx else None
            if name in ("items_429", "items_503", "items_400", "items_echo"):
                if not dest.es:
                    peer.script(then={"items_429": "429", "items_503": "503", "items_400": "400",
                                      "items_echo": "400echo"}[name])
                    self.scripted_400 = self.scripted_400 or name in ("items_400", "items_echo")
                    return lambda: peer.script(then="200")
                st = {"items_429": 429, "items_503": 503, "items_400": 400, "items_echo": rng.choice([400, 503])}[name]
                self.scripted_400 = self.scripted_400 or st == 400
                peer.script(then="200", poison_index=year_index, poison_status=st, poison_echo=name == "items_echo")
                return lambda: peer.script(then="200", poison_index=None, poison_echo=False)
            answer = {"req_413": "413", "req_503": "503", "req_429": "429", "req_400echo": "400echo",
                      "malformed": rng.choice(["no_items", "empty_items", "extra_items", "invalid_json", "html"])}[name]
            if name == "req_400echo":
                self.scripted_400 = True
            if name == "malformed" and not dest.es:
                answer = "500"
            peer.script(responses=[answer] * rng.randint(1, 8), then="200")
            return lambda: peer.script(then="200")
        elif name == "disk_full":
            path = os.path.join(agent.data_dir, "filler")
            try:
                with open(path, "wb") as f:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
            except OSError:
                pass

            def undo():
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return undo
        elif name == "fd_limit":
            a = agent.signal(signal.SIGTERM, True)
            if a:
                agent.wait_exit(a, parse_duration(self.cfg["shutdown_timeout"]) + STOP_SLACK)
            self._start_agent(rng.choice([32, 64, 128]))
        return None

    # -- checks
    def _check(self, metrics):
        agent, w = self.agent, self.writer
        written = set(w.written)
        # Per process: peak memory; the aggregate drop counters over all processes.
        bound = RSS_BOUND_MIB * 1024 + 2 * w.bytes // 1024
        for i, a in enumerate(agent.procs):
            if a.hwm_kib > bound:
                self.fail("peak RSS of agent process %d: %d MiB > bound %d MiB" % (i + 1, a.hwm_kib // 1024, bound // 1024))
        # Secrets.
        forms = []
        for s in self.secrets.values():
            forms += [s.encode(), base64.b64encode(("torture:" + s).encode())]
        texts = [("agent log " + a.log, open(a.log, "rb").read()) for a in agent.procs]
        texts.append(("/metrics", metrics))
        dl_root = os.path.join(agent.data_dir, "dead-letter")
        for dirpath, _, names in os.walk(dl_root):
            for n in names:
                p = os.path.join(dirpath, n)
                texts.append(("dead-letter file " + p, open(p, "rb").read()))
        for where, text in texts:
            for f in forms:
                if f in text:
                    self.fail("secret leaked in %s: ...%s..." % (where, context(text, f)))
                    break
        final = agent.procs[-1].status if agent.procs else None
        if final is None:
            if self.drain_state == "stalled" and any(n.startswith("under a descriptor limit the agent said") for n in self.notes):
                self.notes.append("no /status from the last agent process (its API had no descriptor either)")
            elif not self.crashes:
                self.fail("no /status from the last agent process")
            return
        if self.drain_state != "drained":
            return  # stalled (a failure already), the agent exited (reported), or inconclusive (a note)
        # Accounting identity of every output, at the end. Records a reload gave up on (at shutdown_timeout)
        # are counted as returned by the agent itself (README "Accounting"): no offset is allowed.
        for o in final["outputs"]:
            lhs = o["in"] + o["recovered"]
            rhs = (o["delivered"] + o["dead_lettered"] + o["dropped"]["drop_oldest"] + o["dropped"]["corrupt"]
                   + o.get("returned", 0) + o["pending"])
            if lhs != rhs or o["pending"] != 0:
                self.fail("accounting of output %s at the end: in %d + recovered %d != delivered %d "
                          "+ dead-lettered %d + drop_oldest %d + corrupt %d + returned %d + pending %d (unaccounted %d)" %
                          (o["name"], o["in"], o["recovered"], o["delivered"], o["dead_lettered"],
                           o["dropped"]["drop_oldest"], o["dropped"]["corrupt"], o.get("returned", 0), o["pending"],
                           o["unaccounted"]))
        for i in final["inputs"]:
            if i["bytes_behind"] != 0:
                self.notes.append("input %s: %d bytes behind at the end" % (i["name"], i["bytes_behind"]))
        # Lines a filter dropped, and lines cut off a multiline record at max_bytes (merged, so not counted as
        # dropped; at most one partly kept line per truncated record loses its id). Drop counters count
        # records; a multiline record holds several lines: when records were dropped, every merged line may
        # have been in one of them.
        counts = [process_counts(a) for a in agent.procs]
        filt_dropped = sum(c["filt_dropped"] + c["truncated"] for c in counts)
        merged = sum(c["merged"] for c in counts)
        # A stop that gave up at shutdown_timeout cut requests short: at least once from there.
        gave_up = any(re.search(rb"not delivered within shutdown_timeout|cut short at shutdown_timeout", open(a.log, "rb").read())
                      for a in agent.procs)
        lines_fail = self.fail if not self.crashes else (lambda m: self.notes.append("after a crash: " + m))
        # Lines: every written id at each destination exactly once, or dead-lettered, or counted dropped.
        for dest in self.peers:
            oname = dest.name
            agg = sum(c["outputs"].get(oname, 0) for c in counts)
            agg = agg + filt_dropped + (merged if agg else 0)
            try:
                docs = dest.peer.docs(dest.es)
            except Exception as e:  # noqa: BLE001
                self.fail("output %s: cannot read the destination's documents: %r" % (oname, e))
                continue
            found = collections.Counter()
            for d in docs:
                for m in set(ID_RE.findall(d)):
                    found[m.decode()] += 1
            dl_ids, dl_400 = set(), []
            odir = os.path.join(dl_root, oname)
            for dirpath, _, names in os.walk(odir):
                for n in names:
                    if not n.endswith(".ndjson"):
                        continue
                    for line in open(os.path.join(dirpath, n), "rb"):
                        ids = ID_RE.findall(line)
                        dl_ids.update(x.decode() for x in ids)
                        try:
                            e = json.loads(line)
                        except ValueError:
                            continue
                        if e.get("status") == 400 and not self.scripted_400:
                            dl_400.append(str(e.get("reason"))[:200])
            foreign = set(found) - written
            if foreign:
                lines_fail("output %s: %d ids at the destination that were never written (e.g. %s)" %
                          (oname, len(foreign), sorted(foreign)[:3]))
            missing = written - set(found) - dl_ids
            excused = missing & w.at_risk
            missing -= excused
            if excused:
                self.notes.append("output %s: %d lines written before a copytruncate not shipped (README known limit)" %
                                  (oname, len(excused)))
            if len(missing) > agg:
                lines_fail("output %s: %d of %d lines neither delivered nor dead-lettered, and only %d counted as dropped "
                          "(e.g. %s)" % (oname, len(missing), len(written), agg, sorted(missing)[:4]))
            both = set(found) & dl_ids
            if both and self.had_timeout_fault and not (self.had_kill9 or gave_up):
                # A request the destination stored before its connection was cut or timed out is sent
                # again (at least once), and the answer to that retry may refuse it for good.
                self.notes.append("output %s: %d lines delivered and dead-lettered after a cut connection" %
                                  (oname, len(both)))
            elif both and not (self.had_kill9 or gave_up):
                lines_fail("output %s: %d lines both delivered and dead-lettered (e.g. %s)" % (oname, len(both), sorted(both)[:3]))
            dups = [t for t, c in found.items() if c > 1]
            if dups:
                if dest.es:
                    self.fail("output %s: %d lines in the index more than once (e.g. %s)" % (oname, len(dups), sorted(dups)[:3]))
                elif not (self.had_kill9 or self.had_timeout_fault or gave_up or self.crashes):
                    self.fail("output %s (http): %d lines delivered more than once without a kill -9 or timeout (e.g. %s)" %
                              (oname, len(dups), sorted(dups)[:3]))
                else:
                    self.notes.append("output %s (http): %d lines delivered twice (replays after a kill -9, a cut connection or a stop at shutdown_timeout)" % (oname, len(dups)))
            if dl_400:
                self.fail("output %s: %d documents refused with 400 though no 400 was scripted: %s" %
                          (oname, len(dl_400), dl_400[0]))


def exit_text(a):
    rc = a.p.returncode
    if rc >= 0:
        return "exit status %d" % rc
    return "killed by %s during the stop; log %s: %s" % (signal.Signals(-rc).name, a.log, fatal_line(a.log) or tail_of(a.log, 1))


def process_counts(a):
    """What one agent process dropped, per output (drop_oldest + corrupt + dead-letter store drops), and its
    filters' dropped, merged and truncated records: from its stop line (`anduin stopped: …`, the final
    counters) when it stopped cleanly, else from its last /status sample (kill -9, crash). A reload writes a
    stop line too (the old pipeline's counters, which go on counting in the new one): it is not final for a
    process killed later."""
    line = None
    killed = a.p.returncode is not None and a.p.returncode < 0
    try:
        with open(a.log, "rb") as f:
            for ln in f:
                if b"anduin stopped: " in ln:
                    line = ln.decode("utf-8", "replace")
    except OSError:
        pass
    res = {"outputs": {}, "filt_dropped": 0, "merged": 0, "truncated": 0}
    if line is not None:
        text = line.split("anduin stopped: ", 1)[1].rstrip().rstrip('"}').rstrip()
        for part in text.split("; "):
            head, _, kv = part.partition(": ")
            kind, _, name = head.partition(" ")
            c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", kv)}
            if kind == "output":
                res["outputs"][name] = (c.get("buffer_records_dropped", 0) + c.get("buffer_corrupt_records", 0) +
                                        c.get("dead_letter_dropped_records", 0))
            elif kind == "filter":
                res["filt_dropped"] += max(0, c.get("records_in", 0) - c.get("records_out", 0) - c.get("records_merged", 0))
                res["merged"] += c.get("records_merged", 0)
                res["truncated"] += c.get("records_truncated", 0)
            elif kind == "input":
                # The tail's multiline: joins before records_out, so its dropped lines are counted apart.
                res["filt_dropped"] += c.get("multiline_dropped", 0)
                res["merged"] += c.get("multiline_merged", 0)
                res["truncated"] += c.get("multiline_truncated", 0)
        if not (killed and a.status):
            return res
        res = {"outputs": {}, "filt_dropped": 0, "merged": 0, "truncated": 0}
    if a.status:
        for o in a.status["outputs"]:
            res["outputs"][o["name"]] = o["dropped"]["drop_oldest"] + o["dropped"]["corrupt"] + o["dead_letter_dropped"]
        res["filt_dropped"] = a.status["totals"]["dropped"]["filters"]
        for c in a.status.get("components", []):
            if c.get("kind") == "filter":
                res["merged"] += c.get("counters", {}).get("records_merged", 0)
                res["truncated"] += c.get("counters", {}).get("records_truncated", 0)
            elif c.get("kind") == "input":
                res["filt_dropped"] += c.get("counters", {}).get("multiline_dropped", 0)
                res["merged"] += c.get("counters", {}).get("multiline_merged", 0)
                res["truncated"] += c.get("counters", {}).get("multiline_truncated", 0)
    return res


def request_timeouts_since(log_path, since_wall):
    """How many of the agent's log lines since `since_wall` (epoch seconds) say a request timed out."""
    n = 0
    try:
        with open(log_path, "rb") as f:
            for line in f:
                if b"no complete response from" not in line:
                    continue
                m = re.search(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", line)
                if m and calendar.timegm(time.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%S")) >= since_wall - 1:
                    n += 1
    except OSError:
        return 0
    return n


def brief_outputs(s):
    if not s:
        return "(no /status)"
    return ", ".join("%s: in %d recovered %d delivered %d dead-lettered %d dropped %d/%d pending %d unaccounted %d" % (
        o["name"], o["in"], o["recovered"], o["delivered"], o["dead_lettered"], o["dropped"]["drop_oldest"],
        o["dropped"]["corrupt"], o["pending"], o["unaccounted"]) for o in s["outputs"])


def brief_inputs(s):
    if not s:
        return "(no /status)"
    return ", ".join("%s: %d records, %d bytes behind" % (i["name"], i["records"], i["bytes_behind"]) for i in s["inputs"])


def tail_of(path, n=3):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4000))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()[-n:]
        return " | ".join(l[:300] for l in lines)
    except OSError:
        return "(no log)"


def fatal_line(path):
    """The Swift runtime's message and the crashing frame in the project's sources, when the backtracer
    printed them (debug builds; a release build with the static stdlib usually traps without a word)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    what, where, crashed = None, None, False
    for line in lines:
        m = re.search(r"(Swift runtime failure: [^*]*?)(?: in \S+ at |\s*\*\*\*|$)|(Fatal error: .*)|(Precondition failed.*)", line)
        if what is None and m:
            what = next(g for g in m.groups() if g)[:200]
        if re.match(r"Thread \d+ (\".*\" )?crashed:", line):
            crashed = True
        elif crashed and where is None and "/Sources/" in line or crashed and where is None and "/plugins/" in line:
            m = re.search(r"0x[0-9a-f]+ (.*?)(?: \+ \d+)? in \S+ at (\S+:\d+)", line)
            if m and not m.group(1).startswith("Swift runtime failure"):
                path = m.group(2)
                path = path[path.find("/Sources/") + 1:] if "/Sources/" in path else path[path.find("/plugins/") + 1:]
                where = "%s at %s" % (m.group(1), path)
            else:
                continue
    if what or where:
        return "%s; %s" % (what or "crash", where or "no frame in the project's sources")
    return None


def context(text, needle):
    i = text.find(needle)
    return text[max(0, i - 60):i + len(needle) + 20].decode("utf-8", "replace").replace("\n", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "anduin"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None, help="master seed (default: random, printed)")
    ap.add_argument("--run", type=int, default=None, help="replay only this run of the master seed")
    ap.add_argument("--first", type=int, default=1, help="first run number")
    ap.add_argument("--workdir", default="/tmp/anduin-torture")
    ap.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS)
    ap.add_argument("--keep", action="store_true", help="keep the directories of passing runs too")
    ap.add_argument("--no-mount", dest="allow_mount", action="store_false",
                    help="no tmpfs for the disk-full fault (needs root)")
    ap.add_argument("--plan", action="store_true", help="print each run's draw (config, corpus, faults) without running")
    ap.add_argument("--make", default="make torture", help=argparse.SUPPRESS)
    args = ap.parse_args()
    # SIGTERM (a CI timeout) unwinds like an exception, so the running agent and peers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.allow_mount and os.geteuid() != 0:
        args.allow_mount = False
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        raise SystemExit("no agent binary at %s (make release, or --bin)" % args.bin)
    master = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10 ** 9)
    tables = {t: option_table(args.bin, t) for t in ("tail", "multiline", "parse", "network-outputs", "http", "elasticsearch")}
    runs = [args.run] if args.run else list(range(args.first, args.first + args.runs))
    log("torture: master seed %d, %d run(s), binary %s%s" % (master, len(runs), args.bin,
                                                             "" if args.allow_mount else " (disk_full fault off: no tmpfs)"))
    os.makedirs(args.workdir, exist_ok=True)
    failed, bugs, inconclusive, t0 = [], [], [], time.monotonic()
    for k in runs:
        r = Run(args, tables, master, k)
        if args.plan:
            r.plan()
            r.peers = [type("Dest", (), {"peer": type("P", (), {"via": "http://127.0.0.1:1"})(), "es": dk != "recv-http",
                                         "name": None})() for dk in r.dest_kinds]
            r.cfg = r.draw_config()
            log("run %d (seed %d): %s" % (k, r.seed, r.summary()))
            continue
        log("run %d (seed %d):" % (k, r.seed))
        try:
            r.execute()
        except Exception as e:  # noqa: BLE001 - a harness error is reported, not hidden
            import traceback
            r.harness_bugs.append("harness error: %s" % traceback.format_exc().strip().replace("\n", " | ")[-800:])
            r.seconds = 0
        repro = "%s SEED=%d RUN=%d   (or: python3 Tests/Torture/torture.py --bin %s --seed %d --run %d)" % (
            args.make, master, k, args.bin, master, k)
        for n in r.notes:
            log("  note: " + n)
        if r.failures:
            failed.append(k)
            log("  FAIL run %d in %.0f s (dir %s)" % (k, r.seconds, r.dir))
            for f in r.failures:
                log("    - " + f)
            log("  reproduce: " + repro)
        elif r.harness_bugs:
            bugs.append(k)
            log("  HARNESS BUG run %d:" % k)
            for b in r.harness_bugs:
                log("    - " + b)
            log("  reproduce: " + repro)
        elif getattr(r, "drain_state", "") == "inconclusive":
            inconclusive.append(k)
            log("  INCONCLUSIVE run %d in %.0f s (too slow to drain; dir %s)" % (k, r.seconds, r.dir))
        else:
            log("  ok run %d in %.0f s" % (k, r.seconds))
            if not args.keep:
                shutil.rmtree(r.dir, ignore_errors=True)
    log("torture: master seed %d: %d run(s) in %.0f s, %d failed%s, %d harness bug(s)%s, %d inconclusive%s" % (
        master, len(runs), time.monotonic() - t0, len(failed), (" (runs %s)" % failed) if failed else "",
        len(bugs), (" (runs %s)" % bugs) if bugs else "", len(inconclusive),
        (" (runs %s)" % inconclusive) if inconclusive else ""))
    sys.exit(1 if failed or bugs else 0)


if __name__ == "__main__":
    main()
