#!/usr/bin/env python3
"""summarise.py OUT_DIR — the markdown tables of a compare.sh run (stdout).

Reads what compare.sh wrote into OUT_DIR: run.txt, meeting.wav/.txt,
server-N/{info.tsv,walls.tsv,single-1-0.json,wer-clean.tsv,wer-hard.tsv},
fw.jsonl and fw-wer-{int8,float32}-{clean,hard}.tsv. Standard library only.
"""

import json
import os
import statistics
import sys
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wer  # noqa: E402  (loadtests/engine/wer.py)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def read_kv(path):
    values = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                values[key] = value
    return values


def rate_cell(rates):
    if not rates:
        return "—"
    median = statistics.median(rates)
    if len(rates) == 1:
        return f"{median:.1f} (1 run)"
    return f"**{median:.1f}** ({min(rates):.1f}–{max(rates):.1f}, {len(rates)} runs)"


def mb(kb):
    try:
        return f"{int(kb) / 1024:.0f}"
    except (TypeError, ValueError):
        return "?"


def pct(result):
    if result is None:
        return "—"
    return f"{100 * result['wer']:.1f} % ({result['edits']}/{result['words']})"


def fw_per_cpu(row, audio_s):
    cpus = row.get("cpus_s")
    if not cpus or sum(cpus) <= 0:
        return "—"
    return f"{row['requests'] * len(cpus) * audio_s / sum(cpus):.1f}"


def subset(references, hypotheses, prefix):
    refs = {name: text for name, text in references.items() if name.startswith(prefix)}
    return wer.score(refs, hypotheses) if refs else None


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: summarise.py OUT_DIR")
    out = sys.argv[1]
    with wave.open(os.path.join(out, "meeting.wav"), "rb") as w:
        audio_s = w.getnframes() / w.getframerate()
    with open(os.path.join(out, "meeting.tsv")) as f:
        utterances = sum(1 for line in f if line.strip())
    with open(os.path.join(out, "meeting.txt")) as f:
        meeting_ref = f.read().strip()

    def meeting_wer(text):
        if text is None:
            return "—"
        ref = wer.normalise(meeting_ref)
        edits = wer.edit_distance(ref, wer.normalise(text))
        return f"{100 * edits / len(ref):.1f} %"

    print(f"## Engine comparison: {audio_s:.1f} s file of {utterances} utterances (flite slt, 16 kHz)\n")
    with open(os.path.join(out, "run.txt")) as f:
        for line in f:
            print(f"- {line.strip()}")
    print()
    print("Throughput is audio seconds per wall second: requests x file length / wall time of the")
    print("round, measured by the client; median of the runs after a warm-up (min–max).")
    print("Server start-up: launch to `GET /v1/ready` 200. faster-whisper load: `WhisperModel(...)`.")
    print("Audio s per CPU s: the same audio over the CPU seconds the process used in those runs")
    print("(all threads, user + system): the cost of the work, which a busy machine changes far less.\n")
    print("| engine | configuration | concurrent requests | word times | audio s per wall s | audio s per CPU s | start-up / load s | RSS MB (ready / after / peak) | WER on the file |")
    print("|---|---|---|---|---|---|---|---|---|")

    best = {}  # (engine, word_times) -> (rate, label)

    def note_best(engine, word_times, rate, label):
        key = (engine, word_times)
        if rate is not None and (key not in best or rate > best[key][0]):
            best[key] = (rate, label)

    servers = sorted(
        (d for d in os.listdir(out) if d.startswith("server-") and d[7:].isdigit()), key=lambda d: int(d[7:])
    )
    server_wer = []
    for name in servers:
        d = os.path.join(out, name)
        info = read_kv(os.path.join(d, "info.tsv"))
        flags = info.get("flags", "?")
        if "--model " in f" {flags} ":
            label = f"`{flags}`"  # the flags name the engine (`--model ct2`)
        else:
            label = "`--model whisper`" + ("" if flags == "default" else f" `{flags}`")
        if "bin" in info:
            label += f" (binary `{os.path.basename(info['bin'])}`)"
        if "failed" in info:
            print(f"| this server | {label} | — | — | failed: {info['failed']} | — | — | — | — |")
            continue
        walls = {}
        path = os.path.join(d, "walls.tsv")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    n, wall = line.split()
                    walls.setdefault(int(n), []).append(float(wall))
        cpu = {}
        path = os.path.join(d, "cpu.tsv")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    n, seconds, runs = line.split()
                    cpu[int(n)] = (float(seconds), int(runs))
        text = None
        response = os.path.join(d, "single-1-0.json")
        if os.path.exists(response):
            with open(response) as f:
                text = json.load(f).get("text")
        for n in sorted(walls):
            rates = [n * audio_s / w for w in walls[n]]
            median = statistics.median(rates)
            note_best("this server", True, median, f"{label}, {n} concurrent")
            per_cpu = "—"
            if n in cpu and cpu[n][0] > 0:
                per_cpu = f"{n * cpu[n][1] * audio_s / cpu[n][0]:.1f}"
            print(
                f"| this server | {label} | {n} | yes | {rate_cell(rates)} | {per_cpu} | {float(info.get('startup_s', 'nan')):.2f} | "
                f"{mb(info.get('rss_ready_kb'))} / {mb(info.get('rss_kb'))} / {mb(info.get('hwm_kb'))} | "
                f"{meeting_wer(text) if n == min(walls) else ''} |"
            )
        server_wer.append((label, d))

    fw_rows = []
    path = os.path.join(out, "fw.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            fw_rows = [json.loads(line) for line in f if line.strip()]
    for row in fw_rows:
        label = f"faster-whisper {row['description']}"
        note_best("faster-whisper", row["word_timestamps"], row["median_rate"], label + f", {row['requests']} concurrent")
        print(
            f"| faster-whisper | {row['description']} | {row['requests']} | {'yes' if row['word_timestamps'] else 'no'} | "
            f"{rate_cell(row['rates'])} | {fw_per_cpu(row, audio_s)} | {row['load_s']:.2f} | "
            f"{row['rss_loaded_mb']:.0f} (before the model {row['rss_base_mb']:.0f}) / — / {row['rss_peak_mb']:.0f} | "
            f"{meeting_wer(row.get('text'))} |"
        )
    print()
    ours = best.get(("this server", True))
    for word_times in (True, False):
        theirs = best.get(("faster-whisper", word_times))
        if ours and theirs:
            print(
                f"- Best of this server: {ours[0]:.1f} ({ours[1]}); best faster-whisper with word times "
                f"{'on' if word_times else 'off'}: {theirs[0]:.1f} ({theirs[1]}): ratio **{ours[0] / theirs[0]:.2f}x** "
                f"(target >= 1.25x)."
            )
    print()

    # Accuracy.
    clean_refs = wer.read_tsv(os.path.join(ROOT, "tests/fixtures/whisper/wer.txt"))
    hard_refs = wer.read_tsv(os.path.join(ROOT, "tests/fixtures/whisper-hard/wer.txt"))
    rows = []
    for label, d in server_wer:
        rows.append((f"this server {label}", os.path.join(d, "wer-clean.tsv"), os.path.join(d, "wer-hard.tsv")))
    for compute in ("int8", "float32"):
        rows.append(
            (
                f"faster-whisper {compute}, greedy",
                os.path.join(out, f"fw-wer-{compute}-clean.tsv"),
                os.path.join(out, f"fw-wer-{compute}-hard.tsv"),
            )
        )
    rows = [r for r in rows if os.path.exists(r[1])]
    if rows:
        print("Word error rate (wer.py: lower case, punctuation out, numerals 0–20 spelled out; edits/words):\n")
        print("| engine | clean (tests/fixtures/whisper) | noisy, 15 dB SNR | telephone, 8 kHz | all hard |")
        print("|---|---|---|---|---|")
        for label, clean_path, hard_path in rows:
            clean = wer.score(clean_refs, wer.read_tsv(clean_path))
            hard_h = wer.read_tsv(hard_path) if os.path.exists(hard_path) else {}
            noisy = subset(hard_refs, hard_h, "noisy_") if hard_h else None
            tel = subset(hard_refs, hard_h, "tel_") if hard_h else None
            hard = wer.score(hard_refs, hard_h) if hard_h else None
            print(f"| {label} | {pct(clean)} | {pct(noisy)} | {pct(tel)} | {pct(hard)} |")
        print()


if __name__ == "__main__":
    main()
