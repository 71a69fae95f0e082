#!/usr/bin/env python3
"""The table of runs.jsonl, and server CPU per stream-second by dialect."""
import collections, json, sys

path = sys.argv[1] if len(sys.argv) > 1 else "loadtests/results/2026-12-03-dialects/runs.jsonl"
runs = [json.loads(line) for line in open(path)]
print("| sessions | round | dialect | completed | failed | violations | final p50 ms | final p99 ms | send late p99 ms | load (1 min) | loadgen CPU s | server CPU s | server CPU ms per stream-s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
per = collections.defaultdict(lambda: [0.0, 0.0])
for r in runs:
    ms = 1000 * r["server_cpu_s"] / r["audio_seconds"]
    per[(r["sessions"], r["dialect"])][0] += r["server_cpu_s"]
    per[(r["sessions"], r["dialect"])][1] += r["audio_seconds"]
    print(f"| {r['sessions']} | {r['round']} | {r['dialect']} | {r['completed']} | {r['failed']} | {r['violations']} | "
          f"{r['final_lag_ms']['p50']:.1f} | {r['final_lag_ms']['p99']:.1f} | {r['send_late_ms']['p99']:.1f} | "
          f"{r['load1']} | {r['loadgen_cpu_s']:.2f} | {r['server_cpu_s']:.2f} | {ms:.3f} |")
print()
print("| sessions | native ms per stream-s | Deepgram | OpenAI | Deepgram / native | OpenAI / native |")
print("|---|---|---|---|---|---|")
for level in sorted({s for s, _ in per}):
    v = {d: 1000 * per[(level, d)][0] / per[(level, d)][1] for d in ("native", "deepgram", "openai") if (level, d) in per}
    print(f"| {level} | {v.get('native', 0):.3f} | {v.get('deepgram', 0):.3f} | {v.get('openai', 0):.3f} | "
          f"{v.get('deepgram', 0) / v['native']:.2f} | {v.get('openai', 0) / v['native']:.2f} |")
