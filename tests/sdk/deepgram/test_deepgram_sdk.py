"""The official Deepgram Python SDK (pinned in requirements.txt) against the
real transcription-server binary, changing nothing but the base URL and the
key: a live session with interim and final Results, Finalize, KeepAlive over
a silence longer than the server's idle timeout, CloseStream; and a
pre-recorded request.

Run by scripts/test-sdk-deepgram.sh, which passes the binary in
TRANSCRIPTION_SERVER_BIN. Every wait is bounded; no assertion is about speed.
"""

import os
import queue
import subprocess
import threading
import time
import wave
from pathlib import Path

import pytest
from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from websockets.exceptions import InvalidStatus
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
KEY = "sdk-test-key"
# Bounds for "eventually": generous, never a speed claim.
WAIT_S = 30.0
IDLE_TIMEOUT_S = 1


def pcm(name):
    with wave.open(str(FIXTURES / name)) as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


class Server:
    """The real binary on an ephemeral port, with an API key and a short
    idle timeout."""

    def __init__(self):
        binary = os.environ["TRANSCRIPTION_SERVER_BIN"]
        self.process = subprocess.Popen(
            [
                binary,
                "--host", "127.0.0.1",
                "--port", "0",
                "--api-key", KEY,
                "--session-idle-timeout-seconds", str(IDLE_TIMEOUT_S),
                "--session-cleanup-interval-seconds", "1",
                "--interim-interval-ms", "200",
                "--log-level", "warn",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.process.stdout], daemon=True).start()
        deadline = time.monotonic() + WAIT_S
        self.addr = None
        while time.monotonic() < deadline and self.addr is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("listening on "):
                self.addr = line.split()[-1]
        if self.addr is None:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {self.process.stderr.read()}")

    def client(self, key=KEY):
        environment = DeepgramClientEnvironment(
            base=f"http://{self.addr}",
            production=f"ws://{self.addr}",
            agent=f"ws://{self.addr}",
            agent_rest=f"http://{self.addr}",
        )
        return DeepgramClient(api_key=key, environment=environment)

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def server():
    server = Server()
    yield server
    server.stop()


class Receiver:
    """Reads a live socket on a thread; messages land in a queue."""

    def __init__(self, socket):
        self.messages = queue.Queue()
        self.error = None

        def run():
            try:
                for message in socket:
                    self.messages.put(message)
            except Exception as error:  # the close code, for the idle test
                self.error = error
            finally:
                self.messages.put(None)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def until(self, predicate):
        """Messages up to and including the first one `predicate` accepts."""
        seen = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.5)
            except queue.Empty:
                continue
            if message is None:
                raise AssertionError(f"the socket closed first (error {self.error!r}); got {seen!r}")
            seen.append(message)
            if predicate(message):
                return seen
        raise AssertionError(f"not received within {WAIT_S} s; got {seen!r}")

    def rest(self):
        """Every message until the server closes."""
        seen = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.5)
            except queue.Empty:
                continue
            if message is None:
                return seen
            seen.append(message)
        raise AssertionError(f"the socket did not close; got {seen!r}")


def stream(socket, audio, frame_bytes=3200):
    for start in range(0, len(audio), frame_bytes):
        socket.send_media(audio[start:start + frame_bytes])


def finals(messages):
    return [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]


def test_live_session_interims_finals_finalize_keepalive_and_close(server):
    client = server.client()
    with client.listen.v1.connect(
        model="nova-3",
        encoding="linear16",
        sample_rate=16000,
        channels=1,
        interim_results="true",
        endpointing=500,
        utterance_end_ms=1000,
        vad_events="true",
        smart_format="true",
    ) as socket:
        receiver = Receiver(socket)
        audio = pcm("two_utterances.wav")
        # Into the first utterance (speech from 0.3 s): an interim comes
        # while it is open (audio sent faster than real time could end it
        # before one was due, so wait for it).
        stream(socket, audio[: 16000 * 2])
        seen = receiver.until(lambda m: isinstance(m, ListenV1Results))
        # The rest of it and the silence after it: a final the endpointer
        # closed, then the utterance's end.
        stream(socket, audio[16000 * 2: 16000 * 2 * 3])
        seen += receiver.until(lambda m: isinstance(m, ListenV1UtteranceEnd))
        assert any(isinstance(m, ListenV1SpeechStarted) for m in seen), seen
        interims = [m for m in seen if isinstance(m, ListenV1Results) and not m.is_final]
        assert interims, f"no interim Results: {seen!r}"
        first = finals(seen)
        assert len(first) == 1, seen
        assert first[0].speech_final is True and not first[0].from_finalize
        alternative = first[0].channel.alternatives[0]
        assert alternative.transcript and alternative.words
        assert all(first[0].start <= w.start <= w.end <= first[0].start + first[0].duration + 0.001
                   for w in alternative.words)
        assert first[0].metadata.request_id
        assert seen.index(first[0]) < len(seen) - 1, "UtteranceEnd comes after the final"

        # Silence longer than the idle timeout, kept alive with KeepAlive.
        for _ in range(int(IDLE_TIMEOUT_S * 3 / 0.25)):
            socket.send_keep_alive()
            time.sleep(0.25)
        assert receiver.thread.is_alive(), f"closed while kept alive: {receiver.error!r}"

        # The second utterance, cut short by Finalize: its final says so.
        second = audio[16000 * 2 * 3:]
        stream(socket, second[: len(second) * 2 // 3])
        receiver.until(lambda m: isinstance(m, ListenV1SpeechStarted))
        socket.send_finalize()
        seen = receiver.until(lambda m: isinstance(m, ListenV1Results) and m.is_final)
        assert seen[-1].from_finalize is True and seen[-1].speech_final is False, seen[-1]

        # Finalize with nothing left to finish is answered all the same.
        socket.send_finalize()
        seen = receiver.until(lambda m: isinstance(m, ListenV1Results) and m.from_finalize)
        assert seen[-1].channel.alternatives[0].transcript == ""

        socket.send_close_stream()
        rest = receiver.rest()
        metadata = [m for m in rest if isinstance(m, ListenV1Metadata)]
        assert len(metadata) == 1, rest
        assert metadata[0].request_id == first[0].metadata.request_id
        assert metadata[0].channels == 1 and metadata[0].duration > 4.0
        assert receiver.error is None, receiver.error


def test_an_idle_live_session_is_closed_like_deepgram(server):
    client = server.client()
    with client.listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate=16000
    ) as socket:
        receiver = Receiver(socket)
        socket.send_media(pcm("silence.wav")[:3200])
        # No audio and no KeepAlive: the server closes, 1011 NET-0001.
        assert receiver.rest() == []
        assert receiver.error is not None and "1011" in str(receiver.error), receiver.error


def refusal_status(connect):
    """The HTTP status a refused upgrade got, as the SDK reports it: its
    ApiError, or (with websockets >= 14, whose exception the SDK's check
    does not name) the handshake's InvalidStatus."""
    try:
        with connect():
            pass
    except ApiError as error:
        return error.status_code
    except InvalidStatus as error:
        return error.response.status_code
    raise AssertionError("the upgrade was accepted")


def test_unsupported_parameters_and_a_wrong_key_are_refused_before_the_upgrade(server):
    for refused in [{"diarize": "true"}, {"multichannel": "true"}, {"channels": 2},
                    {"encoding": "mulaw"}, {"sample_rate": 44100}]:
        params = {"model": "nova-3", "encoding": "linear16", "sample_rate": 16000, **refused}
        status = refusal_status(lambda: server.client().listen.v1.connect(**params))
        assert status == 400, refused
    status = refusal_status(lambda: server.client(key="wrong").listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate=16000))
    assert status == 401


def test_prerecorded_file(server):
    client = server.client()
    response = client.listen.v1.media.transcribe_file(
        request=(FIXTURES / "two_utterances.wav").read_bytes(),
        model="nova-3",
        smart_format=True,
        utterances=True,
    )
    assert response.metadata.request_id
    assert response.metadata.channels == 1
    assert abs(response.metadata.duration - 4.992) < 0.01
    alternative = response.results.channels[0].alternatives[0]
    assert alternative.transcript
    assert alternative.words and all(w.start <= w.end for w in alternative.words)
    assert [w.punctuated_word for w in alternative.words][0]
    assert len(response.results.utterances) == 2
    text = " ".join(u.transcript for u in response.results.utterances)
    assert text == alternative.transcript


def test_prerecorded_url_is_refused(server):
    with pytest.raises(ApiError) as refused:
        server.client().listen.v1.media.transcribe_url(url="https://example.com/a.wav", model="nova-3")
    assert refused.value.status_code == 400
    assert "URL" in refused.value.body["err_msg"]
