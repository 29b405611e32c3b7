#!/usr/bin/env python3
"""Collects the raw results of benches/load/run.sh into a table and results.json (stdlib only)."""

import argparse
import json
import os
import platform
import socket
import sys

WORKLOADS = [("distinct-1", 1), ("distinct-100", 100), ("same-1", 1)]
TARGETS = [("tocsin_sqlite", "tocsin (SQLite)"), ("alertmanager", "Alertmanager"),
           ("tocsin_postgres", "tocsin (PostgreSQL)"), ("http_ceiling", "HTTP ceiling")]
# issue 8: tocsin/Alertmanager alerts/s
RATIO_TARGETS = {("tocsin_sqlite", "distinct-1"): 2.0, ("tocsin_sqlite", "distinct-100"): 1.5,
                 ("tocsin_sqlite", "same-1"): 2.0, ("tocsin_postgres", "distinct-1"): 1.0}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wrk_figures(w, batch):
    if w is None:
        return None
    secs = w["duration_us"] / 1e6
    e = w["errors"]
    ok = w["requests"] - e["status"]
    return {
        "requests": w["requests"],
        "errors": {k: v for k, v in e.items() if v},
        "seconds": round(secs, 2),
        "requests_per_s": round(ok / secs, 1) if secs else None,
        "alerts_per_s": round(ok * batch / secs, 1) if secs else None,
        "p50_ms": round(w["latency_us"]["p50"] / 1000, 2),
        "p99_ms": round(w["latency_us"]["p99"] / 1000, 2),
        "max_ms": round(w["latency_us"]["max"] / 1000, 2),
    }


def mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    osname = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": osname,
            "kernel": platform.release(), "host": socket.gethostname(),
            "load_avg_at_end": list(os.getloadavg())}


def delivered_pct(lat, p):
    """A percentile over every probe sent, counting the undelivered ones as slower than any."""
    if not lat or not lat.get("sent"):
        return None
    sent, delivered = lat["sent"], lat["delivered"]
    if delivered >= sent * p / 100:
        return lat.get(f"p{p}_ms")
    return float("inf")


def fmt(v, unit=""):
    if v is None:
        return "-"
    if v == float("inf"):
        return "lost"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}" if v >= 10 else f"{v:.2f}{unit}"
    return f"{v:,}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("results")
    for k in ("duration", "connections", "threads", "alerts"):
        ap.add_argument("--" + k, type=float)
    ap.add_argument("--tocsin-version")
    ap.add_argument("--alertmanager-version")
    a = ap.parse_args()
    out = a.out

    res = {
        "machine": dict(machine(), disk=load(f"{out}/disk.json")),
        "tocsin_version": a.tocsin_version,
        "alertmanager_version": a.alertmanager_version,
        "settings": {"duration_s": a.duration, "connections": int(a.connections),
                     "wrk_threads": int(a.threads), "loopback": True},
        "load": [],
        "latency": {},
        "memory": {},
        "targets": [],
    }

    # load
    for wname, batch in WORKLOADS:
        entry = {"workload": wname, "alerts_per_request": batch, "servers": {}, "ratio": {}}
        for t, _ in TARGETS:
            fig = wrk_figures(load(f"{out}/load-{t}-{wname}.json"), batch)
            if fig is None:
                continue
            mem = load(f"{out}/load-{t}-{wname}.mem.json") or {}
            fig["rss_mib"] = mib(mem.get("rss_kib"))
            fig["peak_rss_mib"] = mib(mem.get("hwm_kib"))
            # the machine's 1-minute load average at the end: shows when something else was busy
            fig["loadavg_1m"] = mem.get("loadavg_1m")
            # tocsin's pipeline runs by status as the load ended (the rest wait in the queue)
            if mem.get("runs") is not None:
                fig["runs_at_end"] = mem["runs"]
            entry["servers"][t] = fig
        am = entry["servers"].get("alertmanager", {}).get("alerts_per_s")
        for t in ("tocsin_sqlite", "tocsin_postgres", "http_ceiling"):
            ts = entry["servers"].get(t, {}).get("alerts_per_s")
            if am and ts is not None:
                entry["ratio"][t] = round(ts / am, 3)
        # the share of the HTTP ceiling (no storage) each tocsin keeps
        ceiling = entry["servers"].get("http_ceiling", {}).get("alerts_per_s")
        if ceiling:
            entry["of_ceiling"] = {t: round(entry["servers"][t]["alerts_per_s"] / ceiling, 3)
                                   for t in ("tocsin_sqlite", "tocsin_postgres")
                                   if entry["servers"].get(t, {}).get("alerts_per_s") is not None}
        if entry["servers"]:
            res["load"].append(entry)

    # the storage floor (benches/src/bin/storage_floor.rs) beside what each distinct line leaves
    # for storage: at the line's rate the machine has cores/rate of CPU per alert, of which the
    # HTTP ceiling's work (both cores busy at its rate) takes cores/ceiling
    cores = res["machine"]["cores"]
    for backend, target, workloads in (("sqlite", "tocsin_sqlite", ("distinct-1", "distinct-100")),
                                       ("postgres", "tocsin_postgres", ("distinct-1",))):
        floor = load(f"{out}/storage-floor-{backend}.json")
        if not floor:
            continue
        floor["lines"] = {}
        for wname in workloads:
            e = next((x for x in res["load"] if x["workload"] == wname), None)
            am = e and e["servers"].get("alertmanager", {}).get("alerts_per_s")
            ceil = e and e["servers"].get("http_ceiling", {}).get("alerts_per_s")
            if not (am and ceil and cores):
                continue
            rate = RATIO_TARGETS[(target, wname)] * am
            left = cores * 1e6 / rate - cores * 1e6 / ceil
            floor["lines"][wname] = {
                "alerts_per_s_needed": round(rate, 1),
                "machine_us_per_alert": round(cores * 1e6 / rate, 1),
                "ceiling_us_per_alert": round(cores * 1e6 / ceil, 1),
                "left_for_storage_us": round(left, 1),
                "floor_over_left": round(floor["us_per_alert"] / left, 2) if left > 0 else None,
            }
        res.setdefault("storage_floor", {})[backend] = floor

    # latency
    for label in ("idle", "load", "pipeline"):
        lat = load(f"{out}/latency-{label}.json")
        if lat:
            res["latency"][label] = lat
    lw = wrk_figures(load(f"{out}/latency-load-wrk.json"), 1)
    if lw:
        res["latency"]["load_wrk"] = lw

    # memory
    for t in ("tocsin_sqlite", "alertmanager"):
        w = load(f"{out}/memory-{t}.json")
        m = load(f"{out}/memory-{t}.mem.json")
        if not m:
            continue
        fig = wrk_figures(w, 100) or {}
        alerts = None
        if w:
            alerts = (w["requests"] - w["errors"]["status"]) * 100
        res["memory"][t] = {
            "alerts_sent": alerts, "seconds": m["seconds"],
            "alerts_per_s": round(alerts / m["seconds"], 1) if alerts and m["seconds"] else None,
            "request_p50_ms": fig.get("p50_ms"), "request_p99_ms": fig.get("p99_ms"),
            "rss_mib": mib(m["rss_kib"]), "peak_rss_mib": mib(m["hwm_kib"]),
            "rss_after_5s_mib": mib(m["rss_after_5s_kib"]),
            "db_mib": None if m.get("db_bytes") is None else round(m["db_bytes"] / 2**20, 1),
        }
    res["memory"]["alerts_requested"] = int(a.alerts)

    # targets
    tg = res["targets"]
    for (t, wname), want in RATIO_TARGETS.items():
        e = next((x for x in res["load"] if x["workload"] == wname), None)
        got = e["ratio"].get(t) if e else None
        if got is not None:
            # A line whose storage floor (measured in this run) exceeds what it leaves beyond
            # the HTTP ceiling cannot be met on this machine by any path that writes those rows:
            # the reader of a miss should see which kind it is.
            backend = {"tocsin_sqlite": "sqlite", "tocsin_postgres": "postgres"}.get(t)
            line = res.get("storage_floor", {}).get(backend, {}).get("lines", {}).get(wname)
            over = line.get("floor_over_left") if line else None
            bound = got < want and line is not None and (over is None or over >= 1)
            tg.append({"target": f"{wname} {t}: alerts/s >= {want} x Alertmanager",
                       "measured": got, "met": got >= want,
                       "note": (f"the storage floor alone is "
                                + (f"{over:.2f}x" if over is not None else "more than all")
                                + " of what the line leaves: out of reach here while a new alert "
                                "writes these rows") if bound else None})
    mem = res["memory"].get("tocsin_sqlite")
    if mem:
        scaled = "" if int(a.alerts) >= 1_000_000 else f" (scaled down: {int(a.alerts):,} alerts)"
        tg.append({"target": f"tocsin RSS after 1,000,000 distinct alerts <= 64 MiB{scaled}",
                   "measured": mem["rss_mib"], "met": mem["rss_mib"] <= 64 and not scaled})
    for label, p, want in (("idle", 50, 2), ("idle", 99, 10), ("load", 99, 50)):
        lat = res["latency"].get(label)
        v = delivered_pct(lat, p)
        if v is not None:
            tg.append({"target": f"alert->notification {label} p{p} <= {want} ms",
                       "measured": None if v == float("inf") else v,
                       "note": None if v != float("inf") else
                       f"more than {100 - p}% not delivered within {lat['timeout_s']} s",
                       "met": v <= want})
    lat = res["latency"].get("pipeline")
    v = delivered_pct(lat, 99)
    if v is None:
        tg.append({"target": "default pipeline p99 <= 100 ms", "measured": None, "met": None,
                   "note": "not run (--only without pipeline)"})
    else:
        tg.append({"target": "default pipeline p99 <= 100 ms (alert -> notification)",
                   "measured": None if v == float("inf") else v,
                   "note": None if v != float("inf") else
                   f"more than 1% not delivered within {lat['timeout_s']} s",
                   "met": v <= 100})

    with open(a.results, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")

    # table
    p = print
    m = res["machine"]
    p(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
      f"kernel {m['kernel']}; load average at the end {m['load_avg_at_end'][0]:.2f}")
    disk = m.get("disk")
    if disk:
        f = disk["fsync_ms"]
        p(f"disk under the databases: fsync of a 4 KiB write p50 {f['p50']:.2f} ms, "
          f"p99 {f['p99']:.2f} ms, max {f['max']:.2f} ms ({disk['samples']} samples)")
    p(f"tocsin {res['tocsin_version']}; {res['alertmanager_version']}")
    p(f"wrk: {int(a.connections)} connections, {int(a.threads)} threads, {a.duration:g} s per workload, "
      "127.0.0.1\n")
    if res["load"]:
        hdr = f"{'workload':<14}{'server':<22}{'alerts/s':>12}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}" \
              f"{'RSS MiB':>9}{'load':>6}  errors"
        p(hdr)
        p("-" * len(hdr))
        for e in res["load"]:
            for t, name in TARGETS:
                s = e["servers"].get(t)
                if not s:
                    continue
                r = e["ratio"].get(t)
                p(f"{e['workload']:<14}{name:<22}{fmt(s['alerts_per_s']):>12}"
                  f"{(f'{r:.2f}x' if r is not None else ''):>8}{fmt(s['p50_ms']):>9}"
                  f"{fmt(s['p99_ms']):>9}{fmt(s['rss_mib']):>9}{fmt(s['loadavg_1m']):>6}  "
                  f"{json.dumps(s['errors']) if s['errors'] else ''}")
        p()
        backlog = [(e["workload"], name, e["servers"][t]["runs_at_end"]) for e in res["load"]
                   for t, name in TARGETS if "runs_at_end" in e["servers"].get(t, {})]
        if backlog:
            p("pipeline runs as each tocsin load ended (the intake stores every run; the workers "
              "drain the queue after):")
            for wname, name, runs in backlog:
                ended = sum(n for st, n in runs.items() if st != "open")
                p(f"  {wname:<14}{name:<22}{fmt(ended):>9} ended ({fmt(runs.get('failed', 0))} failed), "
                  f"{fmt(runs.get('open', 0))} queued or running")
            p()
        ceil = [e for e in res["load"] if e.get("of_ceiling")]
        if ceil:
            p("the HTTP ceiling is tocsin's HTTP stack decoding the same bodies and storing nothing; "
              "tocsin's share of it:")
            for e in ceil:
                shares = ", ".join(f"{name} {e['of_ceiling'][t]:.2f}" for t, name in TARGETS
                                   if t in e["of_ceiling"])
                p(f"  {e['workload']:<14}{shares}; the ceiling is "
                  f"{e['ratio'].get('http_ceiling', 0):.2f}x Alertmanager")
            p()
    for backend, name in (("sqlite", "tocsin (SQLite)"), ("postgres", "tocsin (PostgreSQL)")):
        fl = res.get("storage_floor", {}).get(backend)
        if not fl:
            continue
        p(f"storage floor, {name}: {fl['database']}'s own work on the rows of a new alert (the "
          f"distinct-1 load's rows copied in bulk, {fl['alerts_per_copy']:,} alerts per commit, "
          f"nothing prepared, bound or sent per alert): {fl['us_per_alert']:.1f} us of CPU per alert")
        for wname, x in fl["lines"].items():
            over = x["floor_over_left"]
            p(f"  {wname:<14}the line ({x['alerts_per_s_needed']:,.0f} alerts/s) leaves "
              f"{x['left_for_storage_us']:.1f} us of the machine's CPU per alert beyond the ceiling's "
              f"{x['ceiling_us_per_alert']:.1f}; the floor is "
              + (f"{over:.2f}x that" if over is not None else "more than all of it"))
        p()
    for label, lat in res["latency"].items():
        if label == "load_wrk":
            continue
        p(f"alert->notification ({label}): {lat['sent']} sent, {lat['delivered']} delivered, "
          f"{lat['timed_out']} timed out (>{lat['timeout_s']:g} s), {lat['rejected']} rejected; "
          f"p50 {fmt(lat['p50_ms'])} ms, p90 {fmt(lat['p90_ms'])} ms, p99 {fmt(lat['p99_ms'])} ms "
          f"(of those delivered); request ack p50 {fmt(lat['ack_p50_ms'])} ms")
    if "load_wrk" in res["latency"]:
        lw = res["latency"]["load_wrk"]
        p(f"  load during the probe: {fmt(lw['alerts_per_s'])} alerts/s, request p99 {fmt(lw['p99_ms'])} ms")
    for t, name in TARGETS:
        mm = res["memory"].get(t)
        if mm:
            db = f", database {fmt(mm['db_mib'])} MiB" if mm["db_mib"] is not None else ""
            p(f"memory ({name}): {fmt(mm['alerts_sent'])} distinct alerts in {mm['seconds']} s "
              f"({fmt(mm['alerts_per_s'])} alerts/s): RSS {fmt(mm['rss_mib'])} MiB "
              f"(peak {fmt(mm['peak_rss_mib'])}, 5 s later {fmt(mm['rss_after_5s_mib'])}){db}")
    p("\ntargets (issue 8):")
    for t in tg:
        met = {True: "met", False: "NOT met", None: "-"}[t["met"]]
        meas = t["measured"]
        meas = "-" if meas is None else (f"{meas:.2f}" if isinstance(meas, float) else str(meas))
        note = f" ({t['note']})" if t.get("note") else ""
        p(f"  {met:<8} {t['target']}: {meas}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
