"""`harness.py bench`: every scenario for Anduin and, when given, Fluent Bit, interleaved run by run,
and the comparison table with ratios (Fluent Bit's reference figures when no binary is given)."""
import argparse
import json
import os
import shutil
import tempfile

from harness import HERE, fmt, idle_rss, median, one_run, warm


# Shippers `bench` knows: the command ({bin} and {config} filled in), and per scenario the config
# template and how the harness learns that every line has arrived.
SHIPPERS = {
    "anduin": {"command": ["{bin}", "run", "--config", "{config}"],
               "p1": ("p1-blackhole.yaml", "count-file"), "p2": ("p2-http.yaml", "http"),
               "p2m": ("p2-http-no-metadata.yaml", "http"),
               "p3": ("p3-http-disk.yaml", "http"), "nginx": ("nginx-parse.yaml", "count-file"),
               "idle": "p1-blackhole.yaml"},
    # stdbuf: the counter output printf()s without flushing, and a pipe is block-buffered, so the
    # last counts would wait in Fluent Bit's buffer (it execs the binary: same process, same figures).
    "fluent-bit": {"command": ["stdbuf", "-oL", "{bin}", "-c", "{config}"],
                   "p1": ("fluentbit-p1.conf", "stdout-total"), "p2": ("fluentbit-p2.conf", "http"),
                   "p3": ("fluentbit-p3.conf", "http"), "nginx": ("fluentbit-nginx.conf", "stdout-total"),
                   "idle": "fluentbit-p1.conf"},
}

SCENARIOS = {
    "p1": "tail (docker) -> discard",
    "p2": "tail -> JSON lift -> gzip (default level) -> HTTP, memory buffer",
    "p2m": "P2 with metadata off (no log.file.path, log.offset, event.id), against Fluent Bit's P2",
    "p3": "P2 with the disk buffer",
    "nginx": "tail (raw nginx combined lines) -> parse (nginx, time_key) -> discard; Fluent Bit: its nginx regex parser with Time_Key",
}

# Scenarios that read another corpus than --corpus: its file name, in the same folder.
SCENARIO_CORPUS = {"nginx": "nginx.log"}

# Scenarios a shipper does not run, compared with another of its scenarios: Fluent Bit's P2 records
# carry none of the fields P2M turns off.
COMPARE_WITH = {"p2m": "p2"}

# Fluent Bit 5.1.1 measured side by side on this machine kind (/work/shared/field-notes.md,
# "Measured against Fluent Bit"), shown when no Fluent Bit binary is given.
FLUENT_BIT_REFERENCE = {
    "p1": {"cpu_s": 2.26, "lines_per_cpu_s": 440_000, "peak_rss_mib": 72.0, "note": "2.05-2.52 CPU-s, peak 68-75 MiB"},
    "p2": {"cpu_s": 8.20, "lines_per_cpu_s": 122_000, "peak_rss_mib": 72.0, "note": "gzip level 6, its only level"},
    "idle": {"idle_rss_mib": 16.0, "idle_anon_mib": 2.6, "idle_file_mib": 13.4, "note": "one empty watched folder"},
}


def bench(args):
    """Runs every scenario for every shipper, interleaved run by run, and prints the comparison."""
    shippers = [("anduin", args.anduin)] + ([("fluent-bit", args.fluentbit)] if args.fluentbit else [])
    warm(args.corpus)
    results = {}
    for scenario in args.scenarios.split(","):
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
                shutil.rmtree(work, ignore_errors=True)
                runs[name].append(res)
                print(f"{scenario} {name} run {i + 1}: {fmt(res)}", flush=True)
        for name in runs:
            if runs[name]:
                results[(scenario, name)] = median(runs[name])
    if not args.no_idle:
        for name, binary in shippers:
            spec = SHIPPERS[name]
            template = open(os.path.join(HERE, spec["idle"])).read()
            command = [c.replace("{bin}", binary) for c in spec["command"]]
            work = tempfile.mkdtemp(prefix=f"harness-{name}-idle-")
            res = idle_rss(command, template, work, args.idle_seconds)
            shutil.rmtree(work, ignore_errors=True)
            results[("idle", name)] = res
            print(f"idle {name}: {fmt(res)}", flush=True)
    print_table(results, args, measured_fb=bool(args.fluentbit))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{s}/{n}": v for (s, n), v in results.items()}, f, indent=1)


def print_table(results, args, measured_fb):
    fb_label = "Fluent Bit" if measured_fb else "Fluent Bit (reference*)"
    print()
    print(f"Medians of {args.runs} runs, {args.lines:,} lines. CPU = utime+stime of the shipper when the sink had "
          "every line; the machine is shared, so compare CPU figures, wall-clock is indicative only.")
    for scenario in args.scenarios.split(","):
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
            ("lines per wall-s", "lines_per_wall_s", "{:,.0f}"), ("peak RSS MiB", "peak_rss_mib", "{:.1f}")]
    for scenario in args.scenarios.split(","):
        a, f = results[(scenario, "anduin")], fb(scenario)
        for label, key, form in rows:
            scale = 1_000_000 / a["lines"] if key == "cpu_s" else 1
            av = form.format(a[key] * scale)
            if key == "peak_rss_mib":
                av += f" ({a['peak_anon_mib']:.1f} anon, {a['peak_file_mib']:.1f} file)"
            fv, ratio = "-", ""
            if f and key in f:
                fscale = 1_000_000 / f["lines"] if key == "cpu_s" and "lines" in f else 1
                fv = form.format(f[key] * fscale)
                if key == "peak_rss_mib" and "peak_anon_mib" in f:
                    fv += f" ({f['peak_anon_mib']:.1f} anon, {f['peak_file_mib']:.1f} file)"
                ratio = f"{(a[key] * scale) / (f[key] * fscale):.2f}x" if f[key] else ""
            print(f"| {scenario.upper()} {label} | {av} | {fv} | {ratio} |")
    if ("idle", "anduin") in results:
        a, f = results[("idle", "anduin")], fb("idle")
        av = f"{a['idle_rss_mib']:.1f} ({a['idle_anon_mib']:.1f} anon, {a['idle_file_mib']:.1f} file)"
        fv, ratio = "-", ""
        if f:
            fv = f"{f['idle_rss_mib']:.1f} ({f['idle_anon_mib']:.1f} anon, {f['idle_file_mib']:.1f} file)"
            ratio = f"{a['idle_rss_mib'] / f['idle_rss_mib']:.2f}x"
        print(f"| idle RSS MiB (empty watched folder, after {args.idle_seconds:.0f} s) | {av} | {fv} | {ratio} |")
    if not measured_fb:
        print()
        print("* reference, not measured here: Fluent Bit 5.1.1 measured earlier with this harness on this machine "
              "kind (P1: " + FLUENT_BIT_REFERENCE["p1"]["note"] + "; P2: " + FLUENT_BIT_REFERENCE["p2"]["note"]
              + "). Give FLUENTBIT=/path/to/fluent-bit to measure it side by side.")
