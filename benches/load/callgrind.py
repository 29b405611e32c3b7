#!/usr/bin/env python3
"""Instructions per alert from a callgrind dump, by crate: the report of benches/load/profile.sh.

    callgrind.py DUMP ALERTS [--top N] [--json OUT]
    callgrind.py --compare OLD.json NEW.json


Reads a callgrind output file (events `Ir`), attributes every instruction to the source file it
came from, inlined code included (`fi=`/`fe=`: with one optimisation unit across the workspace
most of diesel, serde and hyper is inlined into tocsin's functions, so the function a sample is
in says less than the file its code came from), and the file to its crate. Prints the total and
each crate's share per alert, then the functions with most instructions of their own; with
--json, writes the same figures. --compare sets two of benches/load/profile.sh's results side by
side: each workload's instructions per alert, and the crates that moved most.

Instruction counts do not vary from run to run the way rates do on a shared two-core machine,
which makes them the figure to compare two builds by; they count user-space instructions only
(the kernel's work for a system call is not in them), and an instruction is not a fixed time.
"""

import json
import re
import signal
import sys
from collections import defaultdict

REGISTRY = re.compile(r"/registry/src/[^/]+/([A-Za-z0-9_.\-]+?)-\d+\.\d+\.\d+[^/]*/")
GIT_CHECKOUT = re.compile(r"/git/checkouts/([A-Za-z0-9_\-]+?)-[0-9a-f]+/")
# C code a build script compiled (jemalloc), under target/<profile>/build/<crate>-<hash>/out/.
BUILD_OUT = re.compile(r"/build/([A-Za-z0-9_\-]+?)-[0-9a-f]{16}/out/")
STD = re.compile(r"/library/(std|core|alloc|proc_macro)/")
# The workspace's directories, named as their crates (see the root Cargo.toml).
WORKSPACE = [
    ("/core/", "tocsin-core"),
    ("/drivers/ingest/", "tocsin-ingest"),
    ("/drivers/notify/", "tocsin-notify"),
    ("/checkers/", "tocsin-checkers"),
    ("/providers/", "tocsin-providers"),
    ("/adapters-http/", "tocsin-http"),
    ("/examples/", "tocsin-cli"),
    ("/benches/", "tocsin-benches"),
]


def crate_of(path, obj):
    """The crate (or library) a source file belongs to; the object file when there is no path."""
    if path in ("", "???"):
        name = obj.rsplit("/", 1)[-1]
        if name.startswith("libc.so") or name.startswith("libc-"):
            return "libc"
        if name.startswith("ld-linux") or name.startswith("ld-"):
            return "ld.so"
        return name or "unknown"
    if path.endswith("sqlite3.c"):
        return "SQLite (libsqlite3-sys)"
    m = REGISTRY.search(path) or GIT_CHECKOUT.search(path) or BUILD_OUT.search(path)
    if m:
        return m.group(1)
    m = STD.search(path)
    if m:
        return "Rust " + m.group(1)
    if "/rustc/" in path:
        return "Rust std"
    for part, crate in WORKSPACE:
        if part in path:
            return crate
    if path.startswith("./") or "/sysdeps/" in path:  # glibc's own sources, as its debug info names them
        return "libc malloc" if path.startswith("./malloc/") else "libc"
    return path.rsplit("/", 1)[-1]


def parse(path):
    """Self instructions by (crate) and by function name, and the dump's total."""
    names = {}  # (kind, id) -> name, for callgrind's compressed "(id) name" strings

    def name(kind, value):
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        key = (kind, m.group(1))
        if m.group(2) is not None:
            names[key] = m.group(2)
        return names.get(key, "???")

    by_crate = defaultdict(int)
    by_fn = defaultdict(int)
    total = None
    events = None
    obj = ""
    file_ = ""
    inline = None
    fn = ""
    skip_next = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:  # the inclusive cost of the call above, not this function's own
                    skip_next = False
                    continue
                fields = line.split()
                if len(fields) < 2:
                    continue
                ir = int(fields[1])
                by_crate[crate_of(inline if inline is not None else file_, obj)] += ir
                by_fn[fn] += ir
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                obj = name("ob", value)
            elif key == "fl":
                file_ = name("fl", value)
                inline = None
            elif key in ("fi", "fe"):
                inline = name("fl", value)  # fi/fe share fl's name table
            elif key == "fn":
                fn = name("fn", value)
                inline = None
            elif key == "calls":
                skip_next = True
            elif key in ("cfl", "cfi"):
                name("fl", value)
            elif key == "cfn":
                name("fn", value)
            elif key == "cob":
                name("ob", value)
            elif line.startswith("events:"):
                events = line.split(":", 1)[1].split()
            elif line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split(":", 1)[1].split()[0])
    if events and events[0] != "Ir":
        sys.exit(f"{path}: the first event is {events[0]}, not Ir")
    counted = sum(by_crate.values())
    return total if total is not None else counted, counted, by_crate, by_fn


def compare(old_path, new_path, top=6):
    """Prints each workload of two profile.sh results: per alert before and after, and the crates
    whose count moved most."""
    old, new = (json.load(open(p))["workloads"] for p in (old_path, new_path))
    for name in [w for w in new if w in old]:
        a, b = old[name], new[name]
        change = (b["per_alert"] - a["per_alert"]) / a["per_alert"]
        print(f"{name}: {a['per_alert']:,} -> {b['per_alert']:,} instructions per alert ({change:+.1%})")
        crates = set(a["by_crate"]) | set(b["by_crate"])
        moved = sorted(crates, key=lambda c: -abs(b["by_crate"].get(c, 0) - a["by_crate"].get(c, 0)))
        for c in moved[:top]:
            x, y = a["by_crate"].get(c, 0), b["by_crate"].get(c, 0)
            if x != y:
                print(f"  {c:<32} {x:>10,} -> {y:>10,} ({y - x:+,})")


def main():
    # Piped into `head`, stop quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = sys.argv[1:]
    if args[:1] == ["--compare"] and len(args) == 3:
        compare(args[1], args[2])
        return
    top, out = 15, None
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i : i + 2]
    if "--json" in args:
        i = args.index("--json")
        out = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    dump, alerts = args[0], int(args[1])
    total, counted, by_crate, by_fn = parse(dump)
    if counted != total:
        print(f"warning: the cost lines add up to {counted:,}, the dump says {total:,}", file=sys.stderr)
    per = lambda n: n / alerts
    print(f"{total:,} instructions for {alerts:,} alerts: {per(total):,.0f} per alert")
    print(f"  {'crate':<32} {'per alert':>12} {'share':>7}")
    for crate, ir in sorted(by_crate.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {crate:<32} {per(ir):>12,.0f} {ir / total:>7.1%}")
    print(f"  functions with most instructions of their own (inlined code counts where it landed):")
    for fn, ir in sorted(by_fn.items(), key=lambda kv: -kv[1])[:top]:
        shown = fn if len(fn) <= 90 else fn[:87] + "..."
        print(f"  {per(ir):>10,.0f} {ir / total:>6.1%}  {shown}")
    if out:
        with open(out, "w") as f:
            json.dump(
                {
                    "alerts": alerts,
                    "instructions": total,
                    "per_alert": round(per(total)),
                    "by_crate": {k: round(per(v)) for k, v in sorted(by_crate.items(), key=lambda kv: -kv[1])},
                    "top_functions": [
                        {"function": k, "per_alert": round(per(v))}
                        for k, v in sorted(by_fn.items(), key=lambda kv: -kv[1])[:top]
                    ],
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
