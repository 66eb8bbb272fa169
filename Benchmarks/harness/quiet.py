"""P0 (a quiet node) and the memory soak: a kubelet-style tree written by a paced writer, shipped to an
Elasticsearch-compatible sink that reads each document's write time.

    harness.py bench --scenarios p0 --seconds 120 --runs 3 --anduin .build/release/anduin [--fluentbit …]
    harness.py soak --anduin .build/release/anduin --seconds 3600

The tree is `<root>/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`, docker json-file lines whose `log`
is a JSON object carrying `wt` (the write time, Unix seconds), `f` (the file's index) and `n` (the line's
number in that file), so the sink computes delivery latency and counts every line once.
The writer is one process (`harness.py writer`), so its pacing does not depend on the harness's sink
threads: the lines of all files are spread evenly over each second (file i gets a line every
1/rate s), one write(2) per line, as a container runtime writes them. With rotation it does what
kubelet does: rename `0.log` to `0.log.<YYYYMMDD-hhmmss>`, start a new `0.log`, keep the newest
`keep` rotated files.
"""
import glob
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
import uuid

from harness import HERE, CountingSink, proc_cpu_seconds, proc_status_kib, start, write_config

NAMESPACES = ["default", "payments", "checkout", "search", "kube-system", "monitoring", "ingress", "batch",
              "auth", "web"]
CONTAINERS = ["app", "sidecar"]


def make_tree(root, files, seed=7):
    """Creates `files` empty container logs (two containers a pod) and returns their paths."""
    rnd = random.Random(seed)
    paths = []
    pods = (files + len(CONTAINERS) - 1) // len(CONTAINERS)
    for p in range(pods):
        ns = NAMESPACES[p % len(NAMESPACES)]
        pod = f"svc-{p}-{rnd.getrandbits(32):08x}"[:40]
        uid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        for c in CONTAINERS:
            if len(paths) == files:
                break
            d = os.path.join(root, "var", "log", "pods", f"{ns}_{pod}_{uid}", c)
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "0.log")
            open(path, "w").close()
            paths.append(path)
    return paths


def tree_paths(root):
    return sorted(glob.glob(os.path.join(root, "var", "log", "pods", "*", "*", "0.log")))


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def writer_main(args):
    """The paced writer (`harness.py writer`): runs until `seconds` have passed, then prints a JSON
    report (lines per file, how far behind schedule it fell at worst) on stdout."""
    paths = tree_paths(args.root)
    if not paths:
        raise SystemExit(f"no files under {args.root}")
    files = len(paths)
    fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in paths]
    # Each file starts as if partly filled, so rotations come spread out as on a node, not all at once.
    sizes = [os.path.getsize(p) + (args.rotate_bytes * i // files) for i, p in enumerate(paths)]
    seq = [0] * files
    rotations = 0
    interval = 1.0 / (files * args.rate)
    total = int(args.seconds * files * args.rate)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    t0 = time.monotonic()
    k = 0
    max_lag = 0.0
    while k < total and not stop:
        due = t0 + k * interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
            now = time.monotonic()
        max_lag = max(max_lag, now - due)
        while k < total and t0 + k * interval <= now:
            i = k % files
            n = seq[i]
            wt = time.time()
            msg = (f'{{\\"level\\":\\"info\\",\\"msg\\":\\"request {n} {words[n % len(words)]} '
                   f'{words[(n * 7) % len(words)]} done\\",\\"f\\":{i},\\"n\\":{n},\\"wt\\":{wt:.6f}}}')
            line = f'{{"log":"{msg}\\n","stream":"stdout","time":"{rfc3339(wt)}"}}\n'.encode()
            os.write(fds[i], line)
            seq[i] = n + 1
            sizes[i] += len(line)
            k += 1
            if args.rotate_bytes and sizes[i] >= args.rotate_bytes and rotate(paths[i], fds, i, args.keep):
                sizes[i] = 0
                rotations += 1
    for fd in fds:
        os.close(fd)
    json.dump({"written": sum(seq), "per_file": seq, "max_lag_s": max_lag, "rotations": rotations,
               "seconds": time.monotonic() - t0}, sys.stdout)
    sys.stdout.flush()


def rotate(path, fds, i, keep):
    """kubelet's rotation: rename to <name>.<YYYYMMDD-hhmmss>, a new file, the newest `keep` kept.
    False (no rotation yet) when this second's name is taken."""
    rotated = path + "." + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if os.path.exists(rotated):
        return False
    os.rename(path, rotated)
    new = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.close(fds[i])
    fds[i] = new
    old = sorted(glob.glob(glob.escape(path) + ".*"))
    for p in old[:-keep] if keep > 0 else old:
        os.remove(p)
    return True


def start_writer(root, rate, seconds, rotate_bytes=0, keep=5):
    cmd = [sys.executable, os.path.join(HERE, "harness.py"), "writer", "--root", root, "--rate", str(rate),
           "--seconds", str(seconds), "--rotate-bytes", str(rotate_bytes), "--keep", str(keep)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE)


def writer_report(writer):
    out = writer.communicate()[0]
    if writer.returncode != 0 or not out:
        raise SystemExit(f"the writer failed (exit {writer.returncode})")
    return json.loads(out)


class LatencySink(CountingSink):
    """The counting sink that also reads every document: its `wt` gives the delivery latency (time of
    arrival minus time of writing), `f`/`n` which line it is, so losses and duplicates are counted."""

    def __init__(self, files, since=0.0):
        super().__init__()
        self.files = files
        self.since = since  # latencies of lines written before this (warm-up) are not kept
        self.latencies = []
        self.docs = 0
        self.unreadable = 0
        self.duplicates = 0
        self.seen = [bytearray() for _ in range(files)]
        self.unique = 0

    def observe(self, body, arrived):
        lat, lines = [], []
        for raw in body.split(b"\n"):
            if not raw or raw.startswith(b'{"create"') or raw.startswith(b'{"index"'):
                continue
            try:
                doc = json.loads(raw)
                f, n, wt = int(doc["f"]), int(doc["n"]), float(doc["wt"])
            except (ValueError, KeyError, TypeError):
                f = None
            lines.append((f, n, wt) if f is not None else None)
        with self.lock:
            for item in lines:
                self.docs += 1
                if item is None or not 0 <= item[0] < self.files or item[1] < 0:
                    self.unreadable += 1
                    continue
                f, n, wt = item
                seen = self.seen[f]
                if n >= len(seen):
                    seen.extend(b"\0" * (n + 1 - len(seen) + 1024))
                if seen[n]:
                    self.duplicates += 1
                else:
                    seen[n] = 1
                    self.unique += 1
                if wt >= self.since:
                    self.latencies.append(arrived - wt)


def threads(pid):
    """{tid: (name, voluntary, nonvoluntary context switches)} of every thread of the process."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(task + "/comm") as f:
                name = f.read().strip()
            v = proc_status_file(task + "/status", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
        except OSError:
            continue
        out[os.path.basename(task)] = (name, v[0], v[1])
    return out


def proc_status_file(path, *keys):
    values = dict.fromkeys(keys, 0)
    with open(path) as f:
        for line in f:
            k = line.split(":", 1)[0]
            if k in values:
                values[k] = int(line.split()[1])
    return [values[k] for k in keys]


def switches_between(before, after):
    """Context switches in the window: voluntary (the thread waited: its wake-ups), nonvoluntary (it was
    preempted: mostly the machine's load), and by thread name (both). A thread that exited in the window
    is missed (its counts go with it); one that started in it counts from zero."""
    by_name, vol, nonvol = {}, 0, 0
    for tid, (name, v, nv) in after.items():
        _, v0, nv0 = before.get(tid, (name, 0, 0))
        dv, dnv = max(v - v0, 0), max(nv - nv0, 0)
        vol, nonvol = vol + dv, nonvol + dnv
        by_name[name] = by_name.get(name, 0) + dv + dnv
    return vol, nonvol, by_name


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def stop(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fill_values(root, work, port):
    data_dir = os.path.join(work, "data")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    return dict(root=root, data_dir=data_dir, sink_url=f"http://127.0.0.1:{port}/", sink_port=str(port),
                kube_tag_prefix="kube." + root.strip("/").replace("/", ".") + ".var.log.pods.",
                count_file=os.path.join(work, "count"), corpus=root)


def wait_drained(sink, expected, deadline, proc, count_file=None):
    """Until the sink has every line; with a count file (a config whose output is Anduin's blackhole,
    to see what the delivery path costs), until it says so."""
    def count():
        if count_file:
            try:
                with open(count_file) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        with sink.lock:
            return sink.unique
    while time.monotonic() < deadline and proc.poll() is None:
        if count() >= expected:
            return True
        time.sleep(0.1)
    return count() >= expected


def quiet_run(command, template, work, args):
    """One P0 run: the tree, the shipper, a warm-up, then `seconds` of measurement while the writer
    writes `rate` lines a second to every file. CPU from /proc/PID/stat and context switches from
    /proc/PID/task/*/status between the window's start and end; RSS sampled every second."""
    root = os.path.join(work, "node")
    make_tree(root, args.p0_files)
    warmup = min(args.p0_warmup, max(args.seconds / 4, 2))
    sink = LatencySink(args.p0_files)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    values = fill_values(root, work, sink.server_address[1])
    config = write_config(template, work, "config", **values)
    count_file = values["count_file"] if "{count_file}" in template else None
    load0 = loadavg()
    proc = start(command, config, work)
    writer = None
    try:
        time.sleep(2)  # the shipper discovers the (empty) files before the first line
        if proc.poll() is not None:
            raise SystemExit(f"the shipper exited at start; see {work}/stderr.log")
        sink.since = time.time() + warmup
        writer = start_writer(root, args.p0_rate, warmup + args.seconds)
        time.sleep(warmup)
        cpu0, sw0, t0 = proc_cpu_seconds(proc.pid), threads(proc.pid), time.monotonic()
        rss = []
        while writer.poll() is None and proc.poll() is None:
            mem = proc_status_kib(proc.pid, "VmRSS")
            if mem:
                rss.append(mem[0] / 1024)
            time.sleep(1)
        if proc.poll() is not None:
            raise SystemExit(f"the shipper exited during the run; see {work}/stderr.log")
        cpu1, sw1, t1 = proc_cpu_seconds(proc.pid), threads(proc.pid), time.monotonic()
        report = writer_report(writer)
        drained = wait_drained(sink, report["written"], time.monotonic() + args.timeout, proc, count_file)
    finally:
        if writer is not None:
            stop(writer)
        stop(proc)
        sink.shutdown()
        sink.server_close()
    load1 = loadavg()
    window = t1 - t0
    vol, nonvol, by_name = switches_between(sw0, sw1)
    lat = sorted(sink.latencies)
    if not drained or not (lat or count_file):
        raise SystemExit(f"only {sink.unique} of {report.get('written')} lines arrived; see {work}/stderr.log")
    lat = lat or [float("nan")]
    return {"cpu_s_per_min": (cpu1 - cpu0) / window * 60, "ctx_per_s": (vol + nonvol) / window,
            "voluntary_per_s": vol / window, "nonvoluntary_per_s": nonvol / window,
            "rss_mib": statistics.median(rss) if rss else float("nan"),
            "latency_p50_s": lat[len(lat) // 2], "latency_p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "latency_max_s": lat[-1], "lines": report["written"], "duplicates": sink.duplicates,
            "writer_max_lag_s": report["max_lag_s"], "window_s": window, "load": (load0 + load1) / 2,
            "threads_n": len(sw1), "threads_exited": len(set(sw0) - set(sw1)),
            "threads": {k: v / window for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}}


def least_squares_slope(xs, ys):
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")


def soak(args):
    """`make soak`: a steady rate across files with kubelet rotation for `seconds`; RSS and open fds every
    `interval` s; at the end the RSS slope after the warm-up (MiB/h, least squares), fd min/max, and the
    sink's count of every line. Exit 1 when RSS grows more than `max_growth` MiB/h after the warm-up,
    fds grow (the second half's median count more than `fd_slack` above the first half's: a
    rotated file still being read is open beside its successor for a while), or a line is lost or
    duplicated. The samples are written to samples.csv in the work dir (kept when the soak fails)."""
    work = tempfile.mkdtemp(prefix="anduin-soak-")
    root = os.path.join(work, "node")
    make_tree(root, args.files)
    template = open(args.config_template).read()
    sink = LatencySink(args.files)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    config = write_config(template, work, "config", **fill_values(root, work, sink.server_address[1]))
    rate = args.rate / args.files
    print(f"soak: {args.rate:g} lines/s across {args.files} files ({rate:g} a file) for {args.seconds:.0f} s, "
          f"rotation at {args.rotate_bytes} bytes keeping {args.keep}; samples every {args.interval:.0f} s; "
          f"work dir {work}; load {loadavg():.2f}", flush=True)
    proc = start([c.replace("{config}", config) for c in args.command], config, work)
    samples = []  # (seconds since start, RSS MiB, fds)
    writer = None
    try:
        time.sleep(2)
        if proc.poll() is not None:
            raise SystemExit(f"the shipper exited at start; see {work}/stderr.log")
        writer = start_writer(root, rate, args.seconds, args.rotate_bytes, args.keep)
        t0 = time.monotonic()
        next_sample = t0
        while writer.poll() is None and proc.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                mem = proc_status_kib(proc.pid, "VmRSS")
                fds = fd_count(proc.pid)
                if mem and fds is not None:
                    samples.append((now - t0, mem[0] / 1024, fds))
                    with sink.lock:
                        got = sink.unique
                    if len(samples) % max(1, int(60 / args.interval)) == 1:
                        print(f"  {now - t0:6.0f} s  RSS {mem[0] / 1024:6.1f} MiB  fds {fds:4d}  lines at the sink "
                              f"{got:,}  load {loadavg():.2f}", flush=True)
                next_sample += args.interval
            time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
        if proc.poll() is not None:
            raise SystemExit(f"the shipper exited during the soak; see {work}/stderr.log")
        report = writer_report(writer)
        drained = wait_drained(sink, report["written"], time.monotonic() + args.timeout, proc)
    finally:
        if writer is not None:
            stop(writer)
        stop(proc)
        sink.shutdown()
        sink.server_close()
    written = report.get("written", 0)
    per_file = report.get("per_file", [])
    lost = sum(n - sum(sink.seen[i][:n]) for i, n in enumerate(per_file))
    warm = min(args.warmup, args.seconds / 2)
    after = [s for s in samples if s[0] >= warm]
    slope = least_squares_slope([s[0] / 3600 for s in after], [s[1] for s in after])
    half = len(after) // 2
    # Medians: a burst of rotations holds a few more files open for a moment; a leak moves the median.
    fd_first = statistics.median([s[2] for s in after[:half]]) if half else 0
    fd_second = statistics.median([s[2] for s in after[half:]]) if after[half:] else 0
    with open(os.path.join(work, "samples.csv"), "w") as f:
        f.write("seconds,rss_mib,fds\n" + "".join(f"{t:.1f},{r:.2f},{n}\n" for t, r, n in samples))
    fds_all = [s[2] for s in samples]
    judged = args.seconds - warm >= args.min_judged
    lat = sorted(sink.latencies)
    print()
    print(f"lines written {written:,} (writer at worst {report.get('max_lag_s', 0):.2f} s behind schedule), "
          f"rotations {report.get('rotations', 0)}; at the sink {sink.unique:,} distinct, lost {lost}, "
          f"duplicated {sink.duplicates}, unreadable {sink.unreadable}"
          + ("" if drained else " (not drained within the timeout)"))
    if lat:
        print(f"delivery latency p50 {lat[len(lat) // 2]:.3f} s, p99 {lat[int(len(lat) * 0.99)]:.3f} s, "
              f"max {lat[-1]:.3f} s")
    if after:
        print(f"RSS after the first {warm:.0f} s: {after[0][1]:.1f} -> {after[-1][1]:.1f} MiB, "
              f"min {min(s[1] for s in after):.1f}, max {max(s[1] for s in after):.1f}; "
              f"least-squares growth {slope:+.2f} MiB/h over {len(after)} samples")
    print(f"open fds: min {min(fds_all, default=0)}, max {max(fds_all, default=0)}; after the warm-up, median "
          f"of the first half {fd_first:g}, of the second {fd_second:g}; load at the end {loadavg():.2f}")
    failures = []
    if lost or sink.duplicates or not drained:
        failures.append(f"{lost} lines lost, {sink.duplicates} duplicated")
    if fd_second > fd_first + args.fd_slack:
        failures.append(f"fds grew (median {fd_first:g} -> {fd_second:g}, more than {args.fd_slack} over)")
    if judged and not slope <= args.max_growth:
        failures.append(f"RSS grew {slope:+.2f} MiB/h (limit {args.max_growth:g})")
    elif not judged:
        print(f"RSS growth not judged: {args.seconds - warm:.0f} s after the warm-up is under {args.min_judged:.0f} s "
              "(too short for a slope of a few MiB an hour)")
    if failures:
        print("soak: FAILED: " + "; ".join(failures))
        print(f"work dir kept (samples.csv, stderr.log, the tree): {work}")
        sys.exit(1)
    print("soak: passed")
    shutil.rmtree(work, ignore_errors=True)
