#!/usr/bin/env python3
"""fw_bench.py — faster-whisper on the same files, weights and CPUs as the server.

Run it with the venv of setup.sh (loadtests/engine/.venv/bin/python).

  fw_bench.py speed --model DIR --audio FILE [--runs 3] [--configs a,b,...]
                    [--word-timestamps on|off|both] [--out FILE.jsonl]
      Every configuration in a fresh process (so load time and peak RSS are
      its own): load the model, one warm-up request, then --runs measured runs;
      a run is `requests` concurrent transcriptions of FILE from threads, every
      segment and word consumed. Prints one JSON object a line (and appends it
      to --out): audio seconds per wall second of every run and their median,
      the process's CPU seconds of every run,
      model load time (after `import faster_whisper`, timed apart), RSS after the
      import and before loading, after loading and at the peak.

  fw_bench.py wer --model DIR --fixtures DIR [--compute-type int8]
                  [--out FILE.tsv]
      Transcribes every NAME of DIR/wer.txt (NAME<TAB>REFERENCE) with the
      greedy settings below and writes NAME<TAB>HYPOTHESIS lines (wer.py scores
      them).

Decoding settings, as the server's whisper.cpp path: greedy (beam_size=1,
best_of=1, temperature=0 with no fallback), language en,
condition_on_previous_text=False, word_timestamps as asked; everything else at
faster-whisper's defaults (so without_timestamps=False and no VAD for
WhisperModel.transcribe; without_timestamps=True and its Silero VAD for
BatchedInferencePipeline). The file is passed by path: decoding it is part of
each request, as it is for the server.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import wave

# name -> (compute_type, cpu_threads, num_workers, concurrent requests, batch size or 0)
CONFIGS = {
    "int8-2t": ("int8", 2, 1, 1, 0),
    "f32-2t": ("float32", 2, 1, 1, 0),
    "int8-2w1t-x2": ("int8", 1, 2, 2, 0),
    "int8-2w1t-x4": ("int8", 1, 2, 4, 0),
    "batched-int8-b8": ("int8", 2, 1, 1, 8),
}
DEFAULT_CONFIGS = "int8-2t,f32-2t,int8-2w1t-x2,int8-2w1t-x4,batched-int8-b8"

GREEDY = dict(
    language="en",
    beam_size=1,
    best_of=1,
    temperature=0.0,
    condition_on_previous_text=False,
)


def describe(name):
    compute, threads, workers, requests, batch = CONFIGS[name]
    text = f"{compute}, cpu_threads={threads}"
    if workers > 1:
        text = f"{compute}, {workers} workers x {threads} thread" + ("s" if threads > 1 else "")
    if batch:
        text = f"BatchedInferencePipeline {compute}, batch {batch}, cpu_threads={threads}"
    return text


def status_kb(field):
    """VmRSS / VmHWM of this process in kB, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wav_seconds(path):
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


def load(model_dir, compute, threads, workers, batch):
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        model_dir,
        device="cpu",
        compute_type=compute,
        cpu_threads=threads,
        num_workers=workers,
        local_files_only=True,
    )
    if batch:
        pipeline = BatchedInferencePipeline(model=model)
        return lambda path, words: pipeline.transcribe(
            path, batch_size=batch, word_timestamps=words, **GREEDY
        )
    return lambda path, words: model.transcribe(path, word_timestamps=words, **GREEDY)


def transcribe_text(run, path, words):
    """One request: every segment (and word) consumed; the text joined."""
    segments, _info = run(path, words)
    texts = []
    for segment in segments:
        texts.append(segment.text)
        if words and segment.words is not None:
            for _word in segment.words:
                pass
    return " ".join(t.strip() for t in texts).strip()


def process_cpu_s():
    """CPU seconds this process has used (every thread, user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one(args):
    """Child process: one configuration, JSON lines on stdout."""
    compute, threads, workers, requests, batch = CONFIGS[args.config]
    audio_s = wav_seconds(args.audio)
    started = time.monotonic()
    import faster_whisper  # noqa: F401  (its libraries are in the baseline, not in the load time)

    import_s = time.monotonic() - started
    rss_base = status_kb("VmRSS")
    started = time.monotonic()
    run = load(args.model, compute, threads, workers, batch)
    load_s = time.monotonic() - started
    rss_loaded = status_kb("VmRSS")
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.word_timestamps]
    for words in modes:
        texts = [None] * requests
        errors = []

        def request(slot):
            try:
                texts[slot] = transcribe_text(run, args.audio, words)
            except Exception as error:  # reported, and the run fails
                errors.append(repr(error))

        walls, cpus = [], []
        for index in range(1 + args.runs):  # the first is the warm-up
            cpu_begin = process_cpu_s()
            threads_ = [threading.Thread(target=request, args=(slot,), daemon=True) for slot in range(requests)]
            begin = time.monotonic()
            for thread in threads_:
                thread.start()
            for thread in threads_:
                thread.join(timeout=600)
            wall = time.monotonic() - begin
            cpu = process_cpu_s() - cpu_begin
            if errors or any(t.is_alive() for t in threads_):
                raise SystemExit(f"fw_bench: {args.config}: {errors or 'a request took over 600 s'}")
            if index > 0:
                walls.append(wall)
                cpus.append(cpu)
        rates = [requests * audio_s / wall for wall in walls]
        print(
            json.dumps(
                {
                    "engine": "faster-whisper",
                    "config": args.config,
                    "description": describe(args.config),
                    "requests": requests,
                    "word_timestamps": words,
                    "audio_s": round(audio_s, 3),
                    "walls_s": [round(w, 4) for w in walls],
                    "rates": [round(r, 3) for r in rates],
                    "median_rate": round(statistics.median(rates), 3),
                    "cpus_s": [round(c, 4) for c in cpus],
                    "import_s": round(import_s, 3),
                    "load_s": round(load_s, 3),
                    "rss_base_mb": round(rss_base / 1024, 1),
                    "rss_loaded_mb": round(rss_loaded / 1024, 1),
                    "rss_peak_mb": round(
                        max(status_kb("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024, 1
                    ),
                    "text": texts[0],
                }
            ),
            flush=True,
        )


def speed(args):
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    for name in names:
        if name not in CONFIGS:
            raise SystemExit(f"fw_bench: unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    for name in names:
        command = [
            sys.executable, os.path.abspath(__file__), "_one",
            "--config", name, "--model", args.model, "--audio", args.audio,
            "--runs", str(args.runs), "--word-timestamps", args.word_timestamps,
        ]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        if done.returncode != 0:
            raise SystemExit(f"fw_bench: configuration {name} failed ({done.returncode})")
        for line in done.stdout.splitlines():
            row = json.loads(line)
            summary = dict(row)
            summary.pop("text")
            print(json.dumps(summary), flush=True)
            if args.out:
                with open(args.out, "a") as out:
                    out.write(line + "\n")


def wer(args):
    run = load(args.model, args.compute_type, args.threads, 1, 0)
    listing = os.path.join(args.fixtures, "wer.txt")
    lines = []
    with open(listing) as f:
        for line in f:
            if not line.strip():
                continue
            name = line.split("\t", 1)[0]
            text = transcribe_text(run, os.path.join(args.fixtures, name), True)
            lines.append(f"{name}\t{text}\n")
    if args.out:
        with open(args.out, "w") as out:
            out.writelines(lines)
    else:
        sys.stdout.writelines(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)

    p = sub.add_parser("speed", help="throughput, load time and memory per configuration")
    p.add_argument("--model", required=True, help="CTranslate2 model directory")
    p.add_argument("--audio", required=True, help="a WAV file")
    p.add_argument("--runs", type=int, default=3, help="measured runs after one warm-up (default 3)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--word-timestamps", choices=["on", "off", "both"], default="both")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per configuration")
    p.add_argument("--out", help="append the full JSON lines (with the text) here")

    p = sub.add_parser("_one")  # internal: one configuration in this process
    p.add_argument("--config", required=True, choices=sorted(CONFIGS))
    p.add_argument("--model", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--word-timestamps", choices=["on", "off", "both"], default="both")

    p = sub.add_parser("wer", help="transcripts of a fixtures directory for wer.py")
    p.add_argument("--model", required=True)
    p.add_argument("--fixtures", required=True, help="a directory with wer.txt")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="NAME<TAB>HYPOTHESIS lines (default stdout)")

    args = parser.parse_args()
    if getattr(args, "runs", 1) < 1:
        raise SystemExit("fw_bench: --runs must be at least 1")
    {"speed": speed, "_one": one, "wer": wer}[args.mode](args)


if __name__ == "__main__":
    main()
