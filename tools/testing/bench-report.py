#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a bench.sh run.

Usage: bench-report.py DIR

DIR is a run directory of bench.sh (build/bench/<timestamp>) holding raw/
as bench-guest.sh left it.  Writes DIR/results.json and DIR/table.txt and
prints the table: per case and target the median over the rounds with the
min..max spread of IOPS, MB/s, mean and p99 latency and CPU use; the
ratios ours/stock and ours/rd_mcp (per round, so that every ratio compares
two runs of the same round of the same boot); our module's attrib/stats
and the handler's counters per case; the host's load average (host.txt,
written by bench.sh); then the targets of issue #6, each MET, MISS or
UNKNOWN (a missing figure is never MET).

Exit status: 0 when every round of every target and case has a result and
the guest finished, 1 otherwise (the table still shows what there is).
"""

import json
import os
import re
import statistics
import sys

CASE_TITLES = {
    "randread_4k_qd1": "4k random read, QD1",
    "randread_4k_qd16": "4k random read, QD16",
    "randread_4k_qd64": "4k random read, QD64",
    "randwrite_4k_qd16": "4k random write, QD16",
    "randrw_64k_qd16": "64k random read/write 50/50, QD16",
    "read_1m_qd4": "1M sequential read, QD4",
    "write_1m_qd4": "1M sequential write, QD4",
}
TARGET_TITLES = {
    "rd_mcp": "rd_mcp",
    "fileio": "fileio",
    "stock": "stock",
    "ours": "ours",
    "stock_qcow": "stock+qcow",
    "ours_qcow": "ours+qcow",
}
METRICS = ("iops", "mbps", "lat_mean_us", "lat_p99_us", "cpu_pct", "cpu_us_per_io")

# The targets of issue #6: (description, case, metric, numerator,
# denominator, minimum ratio).
GOALS = [
    ("ours >= 1.5x stock IOPS at 4k QD1", "randread_4k_qd1", "iops", "ours", "stock", 1.5),
    ("ours >= 1.3x stock IOPS at 4k QD16", "randread_4k_qd16", "iops", "ours", "stock", 1.3),
    ("ours >= 1.3x stock IOPS at 4k QD64", "randread_4k_qd64", "iops", "ours", "stock", 1.3),
    ("ours >= 1.5x stock MB/s at 1M read", "read_1m_qd4", "mbps", "ours", "stock", 1.5),
    ("ours >= 1.5x stock MB/s at 1M write", "write_1m_qd4", "mbps", "ours", "stock", 1.5),
    ("ours >= 0.5x rd_mcp IOPS at 4k QD16", "randread_4k_qd16", "iops", "ours", "rd_mcp", 0.5),
]


def read_kv(path, sep="="):
    """key=value (or "key value") lines of a file; {} when it is missing."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if sep == " ":
                    k, _, v = line.partition(" ")
                else:
                    k, _, v = line.partition("=")
                if k:
                    out[k] = v
    except OSError:
        pass
    return out


def ints(d):
    out = {}
    for k, v in d.items():
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items()}


def lat_of(side):
    """(mean, p99) total latency in microseconds of one direction."""
    lat = side.get("lat_ns") or {}
    pct = lat.get("percentile")
    if not pct:
        # without lat_percentiles only the completion latency has them
        pct = (side.get("clat_ns") or {}).get("percentile") or {}
    p99 = pct.get("99.000000")
    mean = lat.get("mean")
    return (mean / 1000.0 if mean is not None else None,
            p99 / 1000.0 if p99 is not None else None)


def parse_fio(path):
    with open(path) as f:
        text = f.read()
    # fio may put a warning line in front of the JSON
    j = json.loads(text[text.find("{"):])
    job = j["jobs"][0]
    if job.get("error"):
        raise ValueError("fio job error %s" % job["error"])
    r, w = job["read"], job["write"]
    ios = r["total_ios"] + w["total_ios"]
    if ios == 0:
        raise ValueError("no I/O completed")
    means, p99s = [], []
    for side in (r, w):
        if side["total_ios"]:
            m, p = lat_of(side)
            means.append((m, side["total_ios"]))
            if p is not None:
                p99s.append(p)
    return {
        "iops": r["iops"] + w["iops"],
        "mbps": (r["bw_bytes"] + w["bw_bytes"]) / 1e6,
        # mixed cases: mean weighted by I/O count, p99 of the slower side
        "lat_mean_us": sum(m * n for m, n in means) / sum(n for _, n in means),
        "lat_p99_us": max(p99s) if p99s else None,
        "ios": ios,
        "runtime_ms": max(r["runtime"], w["runtime"]),
    }


def collect(raw, meta):
    rounds = int(meta.get("rounds", "0"))
    targets = meta.get("targets", "").split()
    cases = meta.get("cases", "").split()
    problems = []
    data = {c: {t: [] for t in targets} for c in cases}
    for r in range(1, rounds + 1):
        for t in targets:
            d = os.path.join(raw, "r%d" % r, t)
            prev_h = ints(read_kv(os.path.join(d, "prefill.handler")))
            prev_s = ints(read_kv(os.path.join(d, "prefill.stats"), " "))
            for c in cases:
                p = os.path.join(d, c + ".json")
                try:
                    res = parse_fio(p)
                except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
                    problems.append("round %d %s %s: %s" % (r, t, c, e))
                    continue
                res["round"] = r
                cpu = ints(read_kv(os.path.join(d, c + ".cpu")))
                if cpu.get("total_ticks"):
                    busy = cpu["total_ticks"] - cpu["idle_ticks"]
                    res["cpu_pct"] = 100.0 * busy / cpu["total_ticks"]
                    ncpu = cpu.get("ncpu", 1)
                    # CPU time of the whole guest per I/O, in microseconds
                    res["cpu_us_per_io"] = (res["cpu_pct"] / 100.0 * ncpu * 1e6 / res["iops"]
                                            if res["iops"] else None)
                    if cpu.get("handler_ticks") is not None and cpu.get("hz"):
                        # in % of one CPU; user and system time apart
                        for k, key in (("handler_ticks", "handler_cpu_pct"),
                                       ("handler_utime", "handler_user_pct"),
                                       ("handler_stime", "handler_sys_pct")):
                            if k in cpu:
                                res[key] = 100.0 * cpu[k] * ncpu / cpu["total_ticks"]
                        if "handler_minflt" in cpu and res["iops"]:
                            wall = cpu["total_ticks"] / ncpu / cpu["hz"]
                            res["handler_faults_per_io"] = (cpu["handler_minflt"] / wall
                                                            / res["iops"])
                h = ints(read_kv(os.path.join(d, c + ".handler")))
                if h:
                    dh = delta(h, prev_h)
                    prev_h = h
                    res["handler"] = {k: dh[k] for k in
                                      ("commands", "completed", "check_conditions",
                                       "kicks", "wakeups", "bytes_in", "bytes_out")
                                      if k in dh}
                    if dh.get("wakeups"):
                        res["handler"]["commands_per_wakeup"] = dh["commands"] / dh["wakeups"]
                s = ints(read_kv(os.path.join(d, c + ".stats"), " "))
                if s:
                    ds = delta(s, prev_s)
                    # gauges are shown as they are, counters as deltas
                    for k in ("inflight", "inflight_max", "data_pages"):
                        if k in s:
                            ds[k] = s[k]
                    # inflight_max is the high-water mark of the device's
                    # life (prefill and earlier cases included): it tells
                    # this case's peak only when the case raised it
                    if "inflight_max" in s:
                        ds["inflight_max_this_case"] = \
                            s["inflight_max"] > prev_s.get("inflight_max", 0)
                    prev_s = s
                    res["device_stats"] = ds
                data[c][t].append(res)
    return data, problems


def summarise(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired(data_c, metric, num, den):
    """Per-round ratios num/den of one metric (same round only)."""
    a = {x["round"]: x.get(metric) for x in data_c.get(num, [])}
    b = {x["round"]: x.get(metric) for x in data_c.get(den, [])}
    out = [ratio(a[r], b[r]) for r in sorted(a) if r in b]
    return [x for x in out if x is not None]


def fmt(v, metric):
    if v is None:
        return "-"
    if metric == "iops":
        return "%.0f" % v
    if metric in ("mbps", "cpu_pct"):
        return "%.1f" % v
    if v >= 1000:
        return "%.0f" % v
    return "%.1f" % v


def cell(s, metric):
    if not s:
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], metric)
    return "%s [%s..%s]" % (fmt(s["median"], metric), fmt(s["min"], metric), fmt(s["max"], metric))


def device_stats_line(rounds_c):
    """Our module's attrib/stats over one case (medians over the rounds)."""
    st = [x["device_stats"] for x in rounds_c if "device_stats" in x]
    if not st:
        return None

    def med(k, scale=1.0, metric="iops"):
        return cell(summarise([d[k] / scale if k in d else None for d in st]), metric)

    sizes = [(d["bytes_in"] + d["bytes_out"]) / d["cmds"] / 1024.0
             for d in st if d.get("cmds") and "bytes_in" in d and "bytes_out" in d]
    if all(d.get("inflight_max_this_case") for d in st):
        hw = med("inflight_max")
    else:
        # at least one round did not raise the device's high-water mark
        hw = "<=%d" % max(d.get("inflight_max", 0) for d in st)
    return ("cmds %s (KiB each %s), MB out %s, in %s; qfull %s, timeouts %s, "
            "ring-full waits %s, data-area-full waits %s; inflight high-water %s"
            % (med("cmds"), cell(summarise(sizes), "mbps"), med("bytes_out", 1e6, "mbps"),
               med("bytes_in", 1e6, "mbps"), med("qfull_events"), med("timeouts"),
               med("ring_full"), med("data_full"), hw))


def ratio_text(rr):
    """'1.23x' or '1.23x [1.10..1.40]' for a summary of per-round ratios."""
    if rr is None:
        return "n/a"
    if rr["n"] == 1:
        return "%.2fx" % rr["median"]
    return "%.2fx [%.2f..%.2f]" % (rr["median"], rr["min"], rr["max"])


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    top = sys.argv[1]
    raw = os.path.join(top, "raw")
    meta = read_kv(os.path.join(raw, "meta.txt"))
    done = read_kv(os.path.join(raw, "done"))
    host = read_kv(os.path.join(top, "host.txt"))
    if not meta:
        print("bench-report: no %s/meta.txt: the guest did not start the benchmark" % raw)
        return 1
    targets = meta["targets"].split()
    cases = meta["cases"].split()
    data, problems = collect(raw, meta)
    rounds = int(meta["rounds"])

    summary = {}
    lines = []
    lines.append("target_core_user benchmark: kernel %s, %s vCPU, %s round(s) x %s s per case, "
                 "%s MiB devices, user devices with max_data_area_mb=%s, tcmu-handler --threads %s"
                 % (meta.get("kernel"), meta.get("ncpu"), rounds, meta.get("runtime"),
                    meta.get("size_mb"), meta.get("data_mb"), meta.get("threads")))
    lines.append("host: %s CPUs, load average (1/5/15 min) %s at the start (%s), %s at the end "
                 "(%s); the host is shared and the guest is emulated (TCG): compare figures "
                 "within one run only"
                 % (host.get("host_ncpu", "?"), host.get("start_loadavg", "not recorded"),
                    host.get("start_date", "?"), host.get("end_loadavg", "not recorded"),
                    host.get("end_date", "?")))
    lines.append("fio: ioengine=libaio direct=1, 1 s ramp; values are medians over the rounds "
                 "with [min..max]; latency is fio's total latency (mean and p99);")
    lines.append("CPU % is the busy share of all guest CPUs during the case, CPU us/IO the "
                 "guest CPU time spent per I/O")
    lines.append("stock = Debian's target_core_user, ours = this tree's; both served by "
                 "tools/testing/tcmu-handler from RAM (qcow: tcmu-runner's qcow handler)")
    lines.append("ratios: median of the per-round ratios (each from one round of this boot) "
                 "with [min..max] over the rounds; for latency, below 1.00x is better")
    lines.append("attrib/stats (our module only): per-case deltas of its counters; the "
                 "inflight high-water mark is kept over the device's life, so \"<=N\" means "
                 "this case did not raise it")
    lines.append("handler CPU is in % of one CPU, from /proc/<pid>/stat against /proc/stat "
                 "ticks: approximate (under TCG it can exceed 100 %)")
    cols = ("IOPS", "MB/s", "lat mean us", "lat p99 us", "CPU %", "CPU us/IO")
    for c in cases:
        summary[c] = {"targets": {}, "ratios": {}}
        lines.append("")
        lines.append("== %s (%s): %s" % (CASE_TITLES.get(c, c), c, meta.get("case." + c, "")))
        rows = [("target",) + cols]
        for t in targets:
            s = {m: summarise([x.get(m) for x in data[c][t]]) for m in METRICS}
            summary[c]["targets"][t] = {"summary": s, "rounds": data[c][t]}
            rows.append((TARGET_TITLES.get(t, t),) + tuple(cell(s[m], m) for m in METRICS))
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
        for r in rows:
            lines.append("  " + "  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i])
                                          for i, v in enumerate(r)))
        for num, den in (("ours", "stock"), ("ours", "rd_mcp"), ("ours_qcow", "stock_qcow")):
            if num not in targets or den not in targets:
                continue
            parts = []
            rr = {}
            for m, label in (("iops", "IOPS"), ("mbps", "MB/s"), ("lat_mean_us", "lat mean"),
                             ("lat_p99_us", "lat p99")):
                pr = paired(data[c], m, num, den)
                rr[m] = {"per_round": pr, "summary": summarise(pr)}
                parts.append("%s %s" % (label, ratio_text(rr[m]["summary"])))
            summary[c]["ratios"]["%s/%s" % (num, den)] = rr
            lines.append("  %-12s %s" % ("%s/%s:" % (num, den), ", ".join(parts)))
        # our module's own view of the case
        for t in ("ours", "ours_qcow"):
            dl = device_stats_line(data[c].get(t, []))
            if dl:
                lines.append("  %s attrib/stats: %s" % (TARGET_TITLES[t], dl))
        # the handler's own view of the device
        for t in ("stock", "ours"):
            hv = [x["handler"] for x in data[c].get(t, []) if "handler" in x]
            if hv:
                cpw = [h.get("commands_per_wakeup") for h in hv]

                def med(k):
                    return cell(summarise([x.get(k) for x in data[c][t]]), "cpu_pct")
                lines.append("  handler under %-5s: %s commands/round, %s per wakeup, "
                             "CPU %s %% (user %s, sys %s), %s page faults per I/O"
                             % (t, cell(summarise([h.get("commands") for h in hv]), "iops"),
                                cell(summarise(cpw), "mbps"), med("handler_cpu_pct"),
                                med("handler_user_pct"), med("handler_sys_pct"),
                                cell(summarise([x.get("handler_faults_per_io")
                                                for x in data[c][t]]), "mbps")))

    # issue #6 targets: a figure that is missing makes a target UNKNOWN,
    # never MET
    def pair_ratio(c, m, num, den):
        if c not in summary:
            return None
        rr = summary[c]["ratios"].get("%s/%s" % (num, den))
        return rr[m]["summary"] if rr else None

    goals = []
    for desc, c, m, num, den, want in GOALS:
        rs = pair_ratio(c, m, num, den)
        g = {"goal": desc, "case": c, "metric": m, "want": want,
             "got": rs and rs["median"], "rounds": rs,
             "met": None if rs is None else rs["median"] >= want}
        if rs is None:
            g["why"] = "no %s and %s figures from the same round" % (num, den) \
                if c in cases else "case %s not run" % c
        elif rs["n"] > 1 and rs["min"] < want <= rs["max"]:
            g["why"] = "the rounds straddle %.2fx" % want
        goals.append(g)
    below, unknown = [], []
    for c in cases:
        for m in ("iops", "mbps"):
            rs = pair_ratio(c, m, "ours", "stock")
            if rs is None:
                if c not in unknown:
                    unknown.append(c)
            elif rs["median"] < 1.0:
                below.append("%s %s %.2fx" % (c, m, rs["median"]))
    never_below = {"goal": "ours >= 1.0x stock in every case", "want": 1.0,
                   "below": below, "unknown": unknown}
    if below:
        never_below["met"] = False
        never_below["why"] = "; ".join(below)
    elif unknown or not cases:
        never_below["met"] = None
        never_below["why"] = "no figure for " + (", ".join(unknown) or "any case")
    else:
        never_below["met"] = True
        never_below["why"] = "lowest %.2fx" % min(
            pair_ratio(c, m, "ours", "stock")["median"] for c in cases for m in ("iops", "mbps"))
    goals.append(never_below)

    lines.append("")
    lines.append("Issue #6 targets (median of the per-round ratios):")
    for g in goals:
        tag = {True: "MET", False: "MISS", None: "UNKNOWN"}[g["met"]]
        got = ratio_text(g.get("rounds")) if "rounds" in g else ""
        lines.append("  %-9s %-40s %s%s" % ("[%s]" % tag, g["goal"], got,
                                             ("; " if got else "") + g["why"]
                                             if g.get("why") else ""))
    count = {k: sum(1 for g in goals if g["met"] is v)
             for k, v in (("met", True), ("missed", False), ("unknown", None))}
    lines.append("  targets: %d met, %d missed, %d unknown%s"
                 % (count["met"], count["missed"], count["unknown"],
                    " (a single round has no spread: the figures are indicative only)"
                    if rounds == 1 else ""))

    complete = not problems and done.get("failed") == "0"
    for c in cases:
        for t in targets:
            if len(data[c][t]) != rounds:
                complete = False
    if not complete:
        lines.append("")
        lines.append("INCOMPLETE RUN:%s" % ("" if done else " the guest did not finish"))
        for p in problems:
            lines.append("  " + p)
        for c in cases:
            for t in targets:
                if len(data[c][t]) != rounds and not any(
                        (" %s %s:" % (t, c)) in p for p in problems):
                    lines.append("  %s %s: %d of %d rounds" % (t, c, len(data[c][t]), rounds))

    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(os.path.join(top, "table.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(top, "results.json"), "w") as f:
        json.dump({"meta": meta, "host": host, "complete": complete, "problems": problems,
                   "cases": summary, "goals": goals}, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
