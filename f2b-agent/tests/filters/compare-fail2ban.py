#!/usr/bin/env python3
"""Cross-check: run fail2ban-regex (Debian's fail2ban) on every NAME[@MODE].log here with
fail2ban's filter of the same name and mode, and compare the addresses it finds with the
.expect file (which tests/filters.rs holds f2b's engine to). Prints one table row per file. When a built f2b-ctl is found (target/debug or $F2B_CTL), the
timestamps are compared too: `f2b-ctl regex --json` against fail2ban-regex's, per address.

    python3 f2b-agent/tests/filters/compare-fail2ban.py [FILTER_DIR]
"""
import ast, datetime, glob, ipaddress, json, os, subprocess, sys


def norm(ip):
    a = ipaddress.ip_address(ip)
    if a.version == 6 and a.ipv4_mapped:
        a = a.ipv4_mapped
    return str(a)


here = os.path.dirname(os.path.abspath(__file__))
ctl = os.environ.get("F2B_CTL") or os.path.join(here, "../../../target/debug/f2b-ctl")
times_ok = True
fdir = sys.argv[1] if len(sys.argv) > 1 else "/etc/fail2ban/filter.d"
# fail2ban's defaults differ from ours for these: name the mode we test explicitly.
rows = []
for log in sorted(glob.glob(os.path.join(here, "*.log"))):
    stem = os.path.basename(log)[:-4]
    name, _, mode = stem.partition("@")
    flt = os.path.join(fdir, name + ".conf")
    if mode:
        flt += "[mode=%s]" % mode
    elif name == "postfix":
        flt += "[mode=more]"
    out = subprocess.run(["fail2ban-regex", "-o", "row", log, flt],
                         capture_output=True, text=True, timeout=120).stdout
    theirs = []
    their_times = set()
    for line in out.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("["):
            try:
                row = ast.literal_eval(line)
                theirs.append(norm(row[0]))
                their_times.add((norm(row[0]), int(row[1])))
            except Exception:
                pass
    ours = []
    with open(log[:-4] + ".expect") as f:
        for l in f:
            l = l.strip()
            if l and not l.startswith("#") and l != "-":
                ours.append(str(ipaddress.ip_address(l)))
    if os.access(ctl, os.X_OK):
        args = [ctl, "regex", log, name, "--json"] + (["--mode", mode] if mode else [])
        if name == "postfix" and not mode:
            args += ["--mode", "more"]
        our_times = set()
        for l in subprocess.run(args, capture_output=True, text=True).stdout.splitlines():
            v = json.loads(l)
            t = datetime.datetime.fromisoformat(v["time"].replace("Z", "+00:00"))
            our_times.add((norm(v["host"]), int(t.timestamp())))
        common = {ip for ip, _ in our_times} & {ip for ip, _ in their_times}
        if {x for x in our_times if x[0] in common} != {x for x in their_times if x[0] in common}:
            times_ok = False
            print("  times differ for %s" % stem, file=sys.stderr)
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    same = not only_ours and not only_theirs and len(ours) == len(theirs)
    rows.append((stem, len(ours), len(theirs), same, only_ours, only_theirs))
    print("| %s | %d | %d | %s | %s | %s |" % (stem, len(ours), len(theirs),
          "yes" if same else "no", " ".join(only_ours) or "-", " ".join(only_theirs) or "-"),
          flush=True)
print("timestamps: %s" % ("same for every address both found" if times_ok else "DIFFER"))
sys.exit(0 if all(r[3] for r in rows) and times_ok else 1)
