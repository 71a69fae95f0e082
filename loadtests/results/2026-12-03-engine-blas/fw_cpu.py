import sys, time, resource
from faster_whisper import WhisperModel
threads, ct, wt = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
m = WhisperModel("/work/wt-ct2/models/.cache/ct2-tiny.en", device="cpu", compute_type=ct, cpu_threads=threads)
def run():
    segs, _ = m.transcribe("/tmp/eng-blas2/meeting.wav", beam_size=1, best_of=1, temperature=0, language="en", condition_on_previous_text=False, word_timestamps=wt)
    return " ".join(s.text for s in segs)
run()
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.time()
for _ in range(2): text = run()
c1, t1 = cpu(), time.time()
a = 98.370375 * 2
print(f"FW {ct} {threads}t words={wt}: {a/(c1-c0):.1f} audio s per CPU s; wall {a/(t1-t0):.1f}")
