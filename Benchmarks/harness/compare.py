"""`harness.py bench`: every scenario for Anduin and, when given, Fluent Bit, interleaved run by run,
and the comparison table with ratios (Fluent Bit's reference figures when no binary is given)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from harness import HERE, fmt, idle_rss, median, one_run, warm

IDLE_SAMPLES = 3
from quiet import quiet_run


# Shippers `bench` knows: the command ({bin} and {config} filled in), and per scenario the config
# template and how the harness learns that every line has arrived.
SHIPPERS = {
    "anduin": {"command": ["{bin}", "run", "--config", "{config}"],
               "p1": ("p1-blackhole.yaml", "count-file"), "p2": ("p2-http.yaml", "http"),
               "p2a": ("p2-http-all-metadata.yaml", "http"),
               "p3": ("p3-http-disk.yaml", "http"), "nginx": ("nginx-parse.yaml", "count-file"),
               "idle": "p1-blackhole.yaml", "p0": ("p0-es.yaml", "latency")},
    # stdbuf: the counter output printf()s without flushing, and a pipe is block-buffered, so the
    # last counts would wait in Fluent Bit's buffer (it execs the binary: same process, same figures).
    "fluent-bit": {"command": ["stdbuf", "-oL", "{bin}", "-c", "{config}"],
                   "p1": ("fluentbit-p1.conf", "stdout-total"), "p2": ("fluentbit-p2.conf", "http"),
                   "p3": ("fluentbit-p3.conf", "http"), "nginx": ("fluentbit-nginx.conf", "stdout-total"),
                   "idle": "fluentbit-p1.conf", "p0": ("fluentbit-p0.conf", "latency")},
}

SCENARIOS = {
    "p0": "a quiet node: kubelet tree, a paced writer, tail -> kubernetes (path) -> parse -> elasticsearch sink",
    "p1": "tail (docker) -> discard",
    "p2": "tail -> JSON lift -> gzip (default level) -> HTTP, memory buffer",
    "p2a": "P2 with log.offset and event.id on (off by default), against Fluent Bit's P2",
    "p3": "P2 with the disk buffer",
    "nginx": "tail (raw nginx combined lines) -> parse (nginx, time_key) -> discard; Fluent Bit: its nginx regex parser with Time_Key",
}

# Scenarios that read another corpus than --corpus: its file name, in the same folder.
SCENARIO_CORPUS = {"nginx": "nginx.log"}

# Scenarios a shipper does not run, compared with another of its scenarios: Fluent Bit's P2 records
# carry none of the fields P2A turns on.
COMPARE_WITH = {"p2a": "p2"}

# Fluent Bit 5.1.1 measured side by side on this machine kind (/work/shared/field-notes.md,
# "Measured against Fluent Bit"), shown when no Fluent Bit binary is given.
FLUENT_BIT_REFERENCE = {
    "p1": {"cpu_s": 2.26, "lines_per_cpu_s": 440_000, "peak_rss_mib": 72.0, "note": "2.05-2.52 CPU-s, peak 68-75 MiB"},
    "p2": {"cpu_s": 8.20, "lines_per_cpu_s": 122_000, "peak_rss_mib": 72.0, "note": "gzip level 6, its only level"},
    "idle": {"idle_rss_mib": 16.0, "idle_anon_mib": 2.6, "idle_file_mib": 13.4, "note": "one empty watched folder"},
}


# P0 measured by hand for issue 28 (500 files, 2 lines/s each, 60 s, tail (docker) -> parse -> discard,
# two alternating runs): not this pipeline, shown only when no Fluent Bit binary is given.
FLUENT_BIT_P0_REFERENCE = {"cpu_s_per_min": 12.45, "ctx_per_s": 260.0, "rss_mib": 24.85}

# Issue 28's targets for P0: CPU and context switches as ratios to Fluent Bit's, latency in seconds.
P0_TARGETS = {"cpu_s_per_min": 0.1, "ctx_per_s": 1.0, "latency_p99_s": 1.5}


def bench(args):
    """Runs every scenario for every shipper, interleaved run by run, and prints the comparison."""
    shippers = [("anduin", args.anduin)] + ([("fluent-bit", args.fluentbit)] if args.fluentbit else [])
    # Each binary runs from a copy of its own: pages that another process maps too (a torture run or
    # a test executing the same file) stay resident, which would show in RSS. The copy is flushed to
    # disk, as an installed binary is: the kernel cannot drop a page it has yet to write back, so a
    # fresh copy keeps every code page a shipper ever touched resident.
    copies = tempfile.mkdtemp(prefix="harness-bin-")
    try:
        for i, (name, binary) in enumerate(shippers):
            copy = os.path.join(copies, name)
            shutil.copy2(binary, copy)
            with open(copy, "rb") as f:
                os.fsync(f.fileno())
            shippers[i] = (name, copy)
        bench_copies(args, shippers)
    finally:
        shutil.rmtree(copies, ignore_errors=True)


def bench_copies(args, shippers):
    scenarios = [s for s in args.scenarios.split(",") if s]
    p0 = {}
    if "p0" in scenarios:
        scenarios.remove("p0")
        p0 = bench_p0(args, shippers)
    if not scenarios and args.no_idle:
        if p0:
            print_p0_table(p0, args)
        return
    if scenarios and (not args.corpus or not args.lines):
        raise SystemExit("P1-P3 need --corpus and --lines")
    args.scenarios = ",".join(scenarios)
    if scenarios:
        warm(args.corpus)
    results = {}
    spreads = {}  # (scenario, shipper) -> {key: (min, max)} over the runs
    for scenario in scenarios:
        runs = {name: [] for name, _ in shippers}
        for i in range(args.runs):
            for name, binary in shippers:
                spec = SHIPPERS[name]
                if scenario not in spec:
                    continue
                tmpl_name, sink_kind = spec[scenario]
                template = open(os.path.join(HERE, tmpl_name)).read()
                command = [c.replace("{bin}", binary) for c in spec["command"]]
                work = tempfile.mkdtemp(prefix=f"harness-{name}-{scenario}-")
                run_args = args
                if scenario in SCENARIO_CORPUS:
                    run_args = argparse.Namespace(**vars(args))
                    run_args.corpus = os.path.join(os.path.dirname(os.path.abspath(args.corpus)), SCENARIO_CORPUS[scenario])
                    if i == 0:
                        warm(run_args.corpus)
                res = one_run(command, template, sink_kind, work, run_args)
                res["load"] = os.getloadavg()[0]
                shutil.rmtree(work, ignore_errors=True)
                runs[name].append(res)
                print(f"{scenario} {name} run {i + 1}: {fmt(res)}", flush=True)
        for name in runs:
            if runs[name]:
                spreads[(scenario, name)] = {k: (min(r[k] for r in runs[name]), max(r[k] for r in runs[name]))
                                             for k in runs[name][0]}
                results[(scenario, name)] = median(runs[name])
    if not args.no_idle:
        # Median of IDLE_SAMPLES samples per shipper, interleaved: one sample depends on what else
        # the machine runs at that moment (shared-library pages another process maps stay resident).
        # Then again with a CPU hog on every core, as on a busy node.
        for kind in ("idle", "idle-hog"):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(os.cpu_count() or 1)] if kind == "idle-hog" else []
            try:
                samples = {name: [] for name, _ in shippers}
                for i in range(IDLE_SAMPLES):
                    for name, binary in shippers:
                        spec = SHIPPERS[name]
                        template = open(os.path.join(HERE, spec["idle"])).read()
                        command = [c.replace("{bin}", binary) for c in spec["command"]]
                        work = tempfile.mkdtemp(prefix=f"harness-{name}-idle-")
                        res = idle_rss(command, template, work, args.idle_seconds)
                        shutil.rmtree(work, ignore_errors=True)
                        samples[name].append(res)
                        print(f"{kind} {name} sample {i + 1}: {fmt(res)}", flush=True)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            for name in samples:
                results[(kind, name)] = median(samples[name])
    print_table(results, args, measured_fb=bool(args.fluentbit), spreads=spreads)
    if p0:
        print_p0_table(p0, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{s}/{n}": v for (s, n), v in results.items()} | {f"p0/{n}": v for n, v in p0.items()},
                      f, indent=1)


def bench_p0(args, shippers):
    """P0 for every shipper, interleaved run by run; every run is kept (the table shows the spread)."""
    runs = {name: [] for name, _ in shippers}
    for i in range(args.runs):
        for name, binary in shippers:
            spec = SHIPPERS[name]
            path = args.p0_anduin_config if name == "anduin" and args.p0_anduin_config else os.path.join(HERE, spec["p0"][0])
            template = open(path).read()
            command = [c.replace("{bin}", binary) for c in spec["command"]]
            work = tempfile.mkdtemp(prefix=f"harness-{name}-p0-")
            res = quiet_run(command, template, work, args)
            shutil.rmtree(work, ignore_errors=True)
            runs[name].append(res)
            top = ", ".join(f"{k} {v:.0f}" for k, v in list(res["threads"].items())[:6])
            print(f"p0 {name} run {i + 1}: {fmt({k: v for k, v in res.items() if k != 'threads'})}", flush=True)
            print(f"p0 {name} run {i + 1}: context switches per s by thread name: {top}", flush=True)
    return runs


def print_p0_table(runs, args):
    names = [n for n in ("anduin", "fluent-bit") if runs.get(n)]
    measured_fb = "fluent-bit" in names
    every = [r for n in names for r in runs[n]]
    loads = [r["load"] for r in every]
    print()
    print(f"P0, {SCENARIOS['p0']}: {args.p0_files} files x {args.p0_rate:g} lines/s, {args.seconds:.0f} s measured "
          f"after a warm-up; medians of {args.runs} interleaved runs [min-max]. Machine load (1-min average) "
          f"during the runs: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs.")
    fb_label = "Fluent Bit" if measured_fb else "Fluent Bit (reference*)"
    print()
    print(f"| P0 | Anduin | {fb_label} | Anduin / Fluent Bit | target |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("CPU-s per minute", "cpu_s_per_min", "{:.2f}"), ("context switches per s (all threads)", "ctx_per_s", "{:.0f}"),
            ("of which voluntary (wake-ups)", "voluntary_per_s", "{:.0f}"),
            ("RSS MiB (median of 1 s samples)", "rss_mib", "{:.1f}"), ("delivery latency p50 s", "latency_p50_s", "{:.3f}"),
            ("delivery latency p99 s", "latency_p99_s", "{:.3f}"), ("machine load (1-min average)", "load", "{:.2f}")]

    def cell(rs, key, form):
        vals = sorted(r[key] for r in rs)
        med = statistics.median(vals)
        return med, form.format(med) + (f" [{form.format(vals[0])}-{form.format(vals[-1])}]" if len(vals) > 1 else "")

    for label, key, form in rows:
        a, av = cell(runs["anduin"], key, form)
        fv, ratio, f = "-", "", None
        if measured_fb:
            f, fv = cell(runs["fluent-bit"], key, form)
        elif key in FLUENT_BIT_P0_REFERENCE:
            f = FLUENT_BIT_P0_REFERENCE[key]
            fv = form.format(f)
        if f and key != "load":
            ratio = f"{a / f:.2f}x"
        target = ""
        if key in P0_TARGETS:
            limit = P0_TARGETS[key]
            if key == "latency_p99_s":
                target = f"<= {limit:g} s: " + ("met" if a <= limit else f"short by {a - limit:.3f} s")
            elif f:
                target = f"<= {limit:g}x: " + ("met" if a / f <= limit else f"short ({a / f:.2f}x)")
            else:
                target = f"<= {limit:g}x Fluent Bit's"
        print(f"| {label} | {av} | {fv} | {ratio} | {target} |")
    for name in names:
        by = {}
        for r in runs[name]:
            for k, v in r["threads"].items():
                by[k] = by.get(k, 0) + v / len(runs[name])
        top = sorted(by.items(), key=lambda kv: -kv[1])
        exited = sum(r["threads_exited"] for r in runs[name])
        print(f"{name}: context switches per s by thread name (mean of runs; {runs[name][0]['threads_n']} threads"
              + (f"; {exited} thread(s) exited during a window, their switches not counted" if exited else "") + "): "
              + ", ".join(f"{k} {v:.0f}" for k, v in top[:10]))
    if not measured_fb:
        print()
        print("* reference, not measured here: Fluent Bit 5.1.1 measured by hand for issue 28 with 500 files x 2 lines/s "
              "for 60 s and tail (docker) -> parse -> discard, a lighter pipeline than P0's (CPU 12.4-12.5 CPU-s per "
              "minute, 245-275 context switches per s, RSS 24.8-24.9 MiB). Give FLUENTBIT=/path/to/fluent-bit to "
              "measure it side by side.")


def spread(runs_spread, key, form, scale):
    """" [min-max]" of `key` over a scenario's runs; "" when there is none (one run, or all equal)."""
    lo, hi = (runs_spread or {}).get(key, (None, None))
    if lo is None:
        return ""
    lo, hi = form.format(lo * scale), form.format(hi * scale)
    return "" if lo == hi else f" [{lo}-{hi}]"


def print_table(results, args, measured_fb, spreads=None):
    spreads = spreads or {}
    fb_label = "Fluent Bit" if measured_fb else "Fluent Bit (reference*)"
    print()
    if args.scenarios:
        print(f"Medians of {args.runs} interleaved runs [min-max], {args.lines:,} lines. CPU = utime+stime of the shipper "
              "when the sink had every line; the machine is shared, so compare CPU figures, wall-clock is indicative only.")
        corpora = {args.corpus} | {os.path.join(os.path.dirname(os.path.abspath(args.corpus)), SCENARIO_CORPUS[s])
                                   for s in args.scenarios.split(",") if s in SCENARIO_CORPUS}
        for c in sorted(corpora):
            print(f"  corpus: {c} ({os.path.getsize(c) / 1e6:,.0f} MB)")
        loads = [v for sp in spreads.values() for v in sp.get("load", ())]
        if loads:
            print(f"  machine load (1-min average) after each run: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    for scenario in [s for s in args.scenarios.split(",") if s]:
        print(f"  {scenario.upper()}: {SCENARIOS[scenario]}")
    print()
    print(f"| | Anduin | {fb_label} | Anduin / Fluent Bit |")
    print("| --- | --- | --- | --- |")

    def fb(scenario):
        scenario = COMPARE_WITH.get(scenario, scenario)
        if measured_fb:
            return results.get((scenario, "fluent-bit"))
        return FLUENT_BIT_REFERENCE.get(scenario)

    rows = [("lines per CPU-s", "lines_per_cpu_s", "{:,.0f}"), ("CPU-s per 1M lines", "cpu_s", "{:.2f}"),
            ("lines per wall-s", "lines_per_wall_s", "{:,.0f}"), ("peak RSS MiB", "peak_rss_mib", "{:.1f}"),
            ("request bytes per line (as sent: gzip)", "wire_bytes_per_line", "{:.1f}")]
    for scenario in [s for s in args.scenarios.split(",") if s]:
        a, f = results[(scenario, "anduin")], fb(scenario)
        for label, key, form in rows:
            if key not in a:
                continue  # HTTP sinks only: wire bytes
            scale = 1_000_000 / a["lines"] if key == "cpu_s" else 1
            av = form.format(a[key] * scale)
            av += spread(spreads.get((scenario, "anduin")), key, form, scale)
            if key == "peak_rss_mib":
                av += f" ({a['peak_anon_mib']:.1f} anon, {a['peak_file_mib']:.1f} file)"
            fv, ratio = "-", ""
            if f and key in f:
                fscale = 1_000_000 / f["lines"] if key == "cpu_s" and "lines" in f else 1
                fv = form.format(f[key] * fscale)
                if measured_fb:
                    fv += spread(spreads.get((COMPARE_WITH.get(scenario, scenario), "fluent-bit")), key, form, fscale)
                if key == "peak_rss_mib" and "peak_anon_mib" in f:
                    fv += f" ({f['peak_anon_mib']:.1f} anon, {f['peak_file_mib']:.1f} file)"
                ratio = f"{(a[key] * scale) / (f[key] * fscale):.2f}x" if f[key] else ""
            print(f"| {scenario.upper()} {label} | {av} | {fv} | {ratio} |")
    for kind, beside in (("idle", ""), ("idle-hog", ", a CPU hog on every core")):
        if (kind, "anduin") not in results:
            continue
        a, f = results[(kind, "anduin")], fb(kind) if measured_fb or kind == "idle" else None
        av = f"{a['idle_rss_mib']:.1f} ({a['idle_anon_mib']:.1f} anon, {a['idle_file_mib']:.1f} file)"
        fv, ratio = "-", ""
        if f:
            fv = f"{f['idle_rss_mib']:.1f} ({f['idle_anon_mib']:.1f} anon, {f['idle_file_mib']:.1f} file)"
            ratio = f"{a['idle_rss_mib'] / f['idle_rss_mib']:.2f}x"
        print(f"| idle RSS MiB (empty watched folder, after {args.idle_seconds:.0f} s, median of {IDLE_SAMPLES}{beside}) "
              f"| {av} | {fv} | {ratio} |")
    if not measured_fb:
        print()
        print("* reference, not measured here: Fluent Bit 5.1.1 measured earlier with this harness on this machine "
              "kind (P1: " + FLUENT_BIT_REFERENCE["p1"]["note"] + "; P2: " + FLUENT_BIT_REFERENCE["p2"]["note"]
              + "). Give FLUENTBIT=/path/to/fluent-bit to measure it side by side.")
