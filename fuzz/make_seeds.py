#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (each file < 4 KiB).

The layouts (control bytes first) are documented in fuzz/src/lib.rs. Audio
seeds are cut from tests/fixtures with sox (apt-get install sox
libsox-fmt-all); without sox only the WAV seeds written here are made.

Run from anywhere: python3 fuzz/make_seeds.py
"""

import io
import os
import shutil
import struct
import subprocess
import tempfile
import wave

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SEEDS = os.path.join(FUZZ, "seeds")
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def write(target, name, data):
    assert len(data) < 4096, (target, name, len(data))
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def fixture_pcm(name, start_s, seconds):
    """Mono PCM16 bytes of a fixture, from start_s for seconds."""
    with wave.open(os.path.join(FIXTURES, name)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        rate = w.getframerate()
        w.setpos(int(start_s * rate))
        return w.readframes(int(seconds * rate)), rate


def tiny_wav(pcm, rate):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def frame(opcode, payload, fin=True):
    """A masked client WebSocket frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def http_head_body():
    control = bytes([1, 1]) + struct.pack("<H", 17)
    seeds = {
        "get_health": b"GET /v1/health HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n\r\n",
        "post_length_pipelined": b"POST /v1/transcribe?vad_mode=1&language=en HTTP/1.1\r\nHost: a\r\nContent-Type: audio/pcm;rate=16000\r\nContent-Length: 8\r\n\r\n\x00\x00\x01\x00\xff\xff\x10\x00GET /v1/ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "post_chunked": b"POST /v1/transcribe HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Type: audio/wav\r\n\r\n5\r\nRIFF\x00\r\n7;ext=1\r\n\x00\x00WAVEf\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        "expect_continue": b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\nAuthorization: Bearer x\r\n\r\nabc",
        "http10_keepalive": b"GET /v1/sessions?state=active HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /metrics HTTP/1.0\r\n\r\n",
        "ws_upgrade": b"GET /v1/transcribe/stream?sample_rate=16000&encoding=pcm_s16le HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "chunked_body_only": b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n",
        "multipart_post": b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 75\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ--\r\n",
    }
    for name, stream in seeds.items():
        write("http_head_body", name, control + stream)


def ws_config(mode):
    # mode, vad mode, hangover (u16), max segment, interim, finals waiting,
    # message max (KiB - 1), outbound max.
    return bytes([mode, 2]) + struct.pack("<H", 470) + bytes([14, 31, 7, 63, 24])


def ws_session():
    pcm, rate = fixture_pcm("hello.wav", 0.5, 0.09)
    assert rate == 16000
    stream = (
        frame(0x1, b'{"type":"config","sample_rate":16000,"encoding":"pcm_s16le","interim_results":true}')
        + frame(0x2, pcm[:1500])
        + frame(0x9, b"ping")
        + frame(0x2, pcm[1500:])
        + frame(0x1, b'{"type":"finalize"}')
        + frame(0x1, b'{"type":"end"}')
        + frame(0x8, struct.pack(">H", 1000))
    )
    raw = ws_config(0) + struct.pack("<HHH", 40, 700, 1900) + bytes([0x21])
    write("ws_session", "raw_config_audio_end", raw + stream)
    fragmented = (
        frame(0x1, b'{"type":"conf', fin=False)
        + frame(0xA, b"")
        + frame(0x0, b'ig","vad_mode":3}')
        + frame(0x2, pcm[:801])
        + frame(0x2, pcm[801:1600])
        + frame(0x1, b'{"type":"keepalive"}')
        + frame(0x8, b"")
    )
    write("ws_session", "raw_fragmented_disconnect", ws_config(2) + struct.pack("<HHH", 3, 30, 300) + bytes([0x10]) + fragmented)
    write("ws_session", "raw_bad_frames", ws_config(0) + bytes(7) + frame(0x1, b"\xff\xfe") + b"\x82\x05hello" + frame(0x3, b"x"))

    # Structured: ops of fuzz/src/lib.rs::ws_session.
    CONFIG16, CONFIG8, FINALIZE, END = 0x04, 0x14, 0x44, 0x64
    speech = lambda blocks, seed: bytes([0x10, blocks, seed])
    silence = lambda blocks: bytes([0x00, blocks, 0])
    flush = lambda cut: bytes([0x08]) + struct.pack("<H", cut)
    answer = lambda count, pick: bytes([0x09 | (count << 4), pick])
    ops = (
        bytes([CONFIG16]) + speech(63, 5) * 3 + flush(333) + silence(63) + answer(2, 1)
        + speech(63, 9) * 2 + bytes([0x80 | 0x10, 10, 3]) + flush(77) + bytes([FINALIZE]) + answer(3, 0)
        + speech(40, 2) + bytes([0x0A | (2 << 4)]) + silence(63) * 2 + flush(5) + answer(1, 0)
        + bytes([END]) + flush(0)
    )
    write("ws_session", "ops_speech_finalize_end", ws_config(1) + ops)
    ops = (
        bytes([CONFIG8]) + speech(63, 1) * 4 + silence(30) + flush(9)
        + bytes([0x26, 2]) + b"\x03\xe8" + bytes([0x07 | 0x30, 10]) + b'{"type":"k'
        + answer(1, 0x1F) + speech(63, 2) * 2 + bytes([0x05, 3]) + b"\xc3\x28x" + flush(50)
    )
    write("ws_session", "ops_8k_fail_disconnect", ws_config(3) + ops)
    ops = bytes([0x04 | 0x30]) + bytes([0x01 | 0x20, 20, 1]) + flush(0) + bytes([0x0B, 4]) + b"\x88\x80\x00\x00" + flush(0)
    write("ws_session", "ops_bad_config_eof", ws_config(5) + ops)


def audio_decode():
    pcm, rate = fixture_pcm("hello.wav", 0.55, 0.06)
    wav16 = tiny_wav(pcm, rate)
    write("audio_decode", "wav_16k_mono", b"\x00" + wav16)
    write("audio_decode", "raw_16k", b"\x02\x01" + pcm[:1200])
    write("audio_decode", "raw_44k", b"\x02\x06" + pcm[:1000])
    write("audio_decode", "raw_rate_u32", b"\x02\xff" + struct.pack("<I", 12345) + pcm[:600])
    boundary = b"------------------------d74496d66958873e"
    form = (
        b"multipart/form-data; boundary=" + boundary + b"\r\n--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + tiny_wav(pcm[:1400], rate)
        + b"\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1'
        + b"\r\n--" + boundary + b"--\r\n"
    )
    write("audio_decode", "multipart_wav", b"\x03" + form)
    if not shutil.which("sox"):
        print("sox not found: skipping the compressed and odd WAV seeds")
        return
    hello = os.path.join(FIXTURES, "hello.wav")
    with tempfile.TemporaryDirectory() as tmp:
        for name, selector, args, trim in [
            ("wav_8bit_stereo", 0, ["-r", "8000", "-b", "8", "-c", "2"], "0.1"),
            ("wav_f32", 1, ["-r", "8000", "-e", "float", "-b", "32", "-c", "1"], "0.06"),
            ("wav_24bit_11k", 0, ["-r", "11025", "-b", "24", "-c", "1"], "0.05"),
            ("wav_ulaw", 1, ["-r", "8000", "-e", "u-law", "-c", "1"], "0.2"),
            ("flac", 1, ["-r", "8000", "-c", "1"], "0.15"),
            ("ogg_vorbis", 1, ["-r", "8000", "-c", "1", "-C", "0"], "0.3"),
            ("mp3", 1, ["-r", "8000", "-c", "1", "-C", "8"], "0.4"),
        ]:
            extension = {"flac": "flac", "ogg_vorbis": "ogg", "mp3": "mp3"}.get(name, "wav")
            out = os.path.join(tmp, f"{name}.{extension}")
            subprocess.run(["sox", hello, *args, out, "trim", "0.55", trim], check=True)
            with open(out, "rb") as f:
                write("audio_decode", name, bytes([selector]) + f.read())


def control_json():
    seeds = {
        "config_full": (0, '{"type":"config","sample_rate":16000,"encoding":"pcm_s16le","vad_mode":2,"interim_results":true,"language":"en-US"}'),
        "config_strings": (3, '{"type":"config","sample_rate":"8000","vad_mode":"3","interim_results":false}'),
        "config_bad_rate": (0, '{"type":"config","sample_rate":44100}'),
        "config_unknown_key": (0, '{"type":"config","colour":"red"}'),
        "end": (0, '{"type":"end"}'),
        "finalize": (6, '{"type":"finalize"}'),
        "keepalive": (0, ' {"type" : "keepalive"} '),
        "query": (1, "sample_rate=48000&encoding=pcm_s16le&vad_mode=0&interim_results=false&language=zh_Hant&access_token=x"),
        "query_escapes": (1, "language=en%2DGB&interim_results=&vad_mode=1+&x=%zz"),
        "query_then_config": (2, 'sample_rate=8000&vad_mode=1\n{"type":"config","sample_rate":32000,"vad_mode":1.0}'),
    }
    for name, (selector, text) in seeds.items():
        write("control_json", name, bytes([selector]) + text.encode())


def vad_header(mode, rate, frame_ms, start, hangover, max_ms, pre_roll, vad, cuts):
    return (
        bytes([mode, rate, frame_ms])
        + struct.pack("<HHHH", start, hangover, max_ms, pre_roll)
        + bytes([vad])
        + struct.pack("<HHH", *cuts)
    )


def vad_segmenter():
    # Rates index VAD_RATES_HZ = [8000, 16000, 32000, 48000]; frames [10, 20, 30].
    pcm8k, rate = fixture_pcm("hello_8k.wav", 0.5, 0.24)
    assert rate == 8000
    write("vad_segmenter", "pcm_8k_speech", vad_header(0, 0, 2, 60, 90, 180, 30, 2, (100, 700, 1500)) + pcm8k)
    pcm16, _ = fixture_pcm("two_utterances.wav", 0.8, 0.12)
    write("vad_segmenter", "pcm_16k_10ms", vad_header(0, 1, 0, 20, 30, 60, 10, 3, (7, 8, 900)) + pcm16)
    runs = bytes([0, 30, 0, 1, 150, 4, 0, 60, 0, 2, 255, 9, 3, 40, 77, 0, 90, 0])
    write("vad_segmenter", "synth_16k_defaults", vad_header(1, 1, 2, 90, 500, 15000, 90, 2, (16000, 40000, 60000)) + runs)
    runs = bytes([1, 255, 3, 1, 255, 3, 1, 255, 3, 0, 10, 0, 2, 200, 1])
    write("vad_segmenter", "synth_48k_max_cut", vad_header(1, 3, 1, 40, 300, 2000, 200, 1, (1000, 50000, 30000)) + runs)
    decisions = bytes([0x00, 0xF0, 0xFF, 0xFF, 0x0F, 0x00, 0xFF, 0xAA, 0x55, 0xFE, 0x00, 0x00, 0x7F, 0xFF])
    write("vad_segmenter", "decisions_32k", vad_header(2, 2, 2, 60, 60, 300, 60, 0, (0, 0, 0)) + decisions)
    write("vad_segmenter", "decisions_tiny_max", vad_header(2, 1, 0, 0, 0, 0, 999, 0, (0, 0, 0)) + bytes([0xFF, 0x3C, 0xFF, 0xC3] * 4))


if __name__ == "__main__":
    http_head_body()
    ws_session()
    audio_decode()
    control_json()
    vad_segmenter()
    for target in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, target))
        print(f"{target}: {len(files)} seeds")
