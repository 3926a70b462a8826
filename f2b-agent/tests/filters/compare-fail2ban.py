#!/usr/bin/env python3
"""Cross-check: run fail2ban-regex (Debian's fail2ban) on every NAME[@MODE].log here with
fail2ban's filter of the same name and mode, and compare the addresses it finds with the
.expect file (which tests/filters.rs holds f2b's engine to). Prints one table row per file.

    python3 f2b-agent/tests/filters/compare-fail2ban.py [FILTER_DIR]
"""
import ast, glob, ipaddress, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
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
    for line in out.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("["):
            try:
                theirs.append(str(ipaddress.ip_address(ast.literal_eval(line)[0])))
            except Exception:
                pass
    ours = []
    with open(log[:-4] + ".expect") as f:
        for l in f:
            l = l.strip()
            if l and not l.startswith("#") and l != "-":
                ours.append(str(ipaddress.ip_address(l)))
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    same = not only_ours and not only_theirs and len(ours) == len(theirs)
    rows.append((stem, len(ours), len(theirs), same, only_ours, only_theirs))
    print("| %s | %d | %d | %s | %s | %s |" % (stem, len(ours), len(theirs),
          "yes" if same else "no", " ".join(only_ours) or "-", " ".join(only_theirs) or "-"),
          flush=True)
sys.exit(0 if all(r[3] for r in rows) else 1)
