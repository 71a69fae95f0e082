"""One row per run of the JSON lines in a directory (argument; default:
this one) named <dialect>-<round>.jsonl: sessions, completed, failed,
violations, interim p50/p99, final p99, chunk send late p99, server CPU s;
then each dialect's server CPU per stream-second at each level."""
import glob, json, os, sys
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rows = []
for path in sorted(glob.glob(os.path.join(here, "*.jsonl"))):
    dialect, rnd = os.path.basename(path)[:-6].rsplit("-", 1)
    for line in open(path):
        r = json.loads(line)
        rows.append((r["sessions"], int(rnd), dialect, r))
print("| sessions | round | dialect | completed | failed | violations | interim p50 ms | interim p99 ms | final p99 ms | send late p99 ms | server CPU s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for sessions, rnd, dialect, r in sorted(rows, key=lambda x: (x[0], x[1], x[2] != "native")):
    print(f"| {sessions} | {rnd} | {dialect} | {r['completed']} | {r['failed']} | {r['violations']} | "
          f"{r['interim_lag_ms']['p50']:.2f} | {r['interim_lag_ms']['p99']:.2f} | {r['final_lag_ms']['p99']:.1f} | "
          f"{r['send_late_ms']['p99']:.1f} | {r['server_cpu_s']} |")

print()
print("| sessions | dialect | runs | server CPU ms per stream-second |")
print("|---|---|---|---|")
totals = {}
for sessions, rnd, dialect, r in rows:
    t = totals.setdefault((sessions, dialect), [0.0, 0.0, 0])
    t[0] += r["server_cpu_s"] or 0.0
    t[1] += r["audio_seconds"]
    t[2] += 1
for (sessions, dialect), (cpu, audio, runs) in sorted(totals.items(), key=lambda x: (x[0][0], x[0][1] != "native")):
    print(f"| {sessions} | {dialect} | {runs} | {cpu / audio * 1000:.3f} |")
