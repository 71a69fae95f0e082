"""The official OpenAI Python SDK against the real server: only the base URL
and the key differ from a client of OpenAI itself."""

import array
import base64
import os
import signal
import wave

import openai
import pytest


def fixture(fixtures_dir, name):
    return os.path.join(fixtures_dir, name)


def test_models_list_and_retrieve(client):
    ids = [model.id for model in client.models.list()]
    assert "whisper-1" in ids and "mock" in ids
    model = client.models.retrieve("whisper-1")
    assert model.id == "whisper-1" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_wrong_key_is_refused(server):
    other = openai.OpenAI(base_url=f"http://{server.addr}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        other.models.list()


def transcribe(client, fixtures_dir, **options):
    with open(fixture(fixtures_dir, "two_utterances.wav"), "rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio, **options)


def test_transcription_in_every_format(client, fixtures_dir):
    json_answer = transcribe(client, fixtures_dir)
    text = json_answer.text
    assert text and len(text.split()) >= 4

    assert transcribe(client, fixtures_dir, response_format="text").strip() == text

    srt = transcribe(client, fixtures_dir, response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt

    vtt = transcribe(client, fixtures_dir, response_format="vtt")
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == 2

    verbose = transcribe(
        client, fixtures_dir, response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en",
    )
    assert verbose.text == text
    assert verbose.language == "en"
    assert len(verbose.segments) == 2
    assert verbose.segments[0].start < verbose.segments[0].end <= verbose.segments[1].start
    assert [word.word for word in verbose.words] == text.split()


def test_prompt_and_temperature_are_passed_on(client, fixtures_dir):
    plain = transcribe(client, fixtures_dir).text
    assert transcribe(client, fixtures_dir, temperature=0.0).text == plain
    # The mock picks other words when a prompt reaches it.
    assert transcribe(client, fixtures_dir, prompt="Zyxel, Qualcomm").text != plain


def test_word_timestamps_need_verbose_json(client, fixtures_dir):
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(client, fixtures_dir, timestamp_granularities=["word"])
    assert "verbose_json" in refused.value.message


def test_streamed_transcription_yields_deltas_then_done(client, fixtures_dir):
    whole = transcribe(client, fixtures_dir).text
    events = list(transcribe(client, fixtures_dir, stream=True))
    types = [event.type for event in events]
    assert types == ["transcript.text.delta"] * 2 + ["transcript.text.done"], types
    assert "".join(event.delta for event in events[:-1]) == whole
    assert events[-1].text == whole


def test_translation_is_refused_clearly_by_an_english_only_model(client, fixtures_dir):
    with open(fixture(fixtures_dir, "hello.wav"), "rb") as audio:
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.translations.create(model="whisper-1", file=audio)
    assert refused.value.code == "unsupported_model"
    assert "English-only" in refused.value.message


def pcm16_24k(path):
    """A 16 kHz mono WAV fixture as 24 kHz PCM16 (linear interpolation)."""
    with wave.open(path, "rb") as source:
        assert source.getframerate() == 16000 and source.getnchannels() == 1
        samples = array.array("h", source.readframes(source.getnframes()))
    count = len(samples) * 3 // 2
    out = array.array("h", bytes(2 * count))
    last = len(samples) - 1
    for index in range(count):
        position = index * 2 / 3
        left = int(position)
        right = min(left + 1, last)
        fraction = position - left
        out[index] = int(round(samples[left] * (1 - fraction) + samples[right] * fraction))
    return out.tobytes()


@pytest.fixture
def deadline():
    """Fail a realtime test that hangs instead of blocking the suite."""
    def expired(signum, frame):
        raise TimeoutError("no answer from the server within 60 s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_realtime_transcription_session(client, fixtures_dir, deadline):
    audio = pcm16_24k(fixture(fixtures_dir, "two_utterances.wav")) + bytes(2 * 24000)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session={
            "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }},
        })
        chunk = 4800  # 100 ms
        for start in range(0, len(audio), chunk):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[start:start + chunk]).decode())
        types, completed, started = [], [], []
        for event in connection:
            types.append(event.type)
            if event.type == "error":
                pytest.fail(f"error event: {event}")
            if event.type == "input_audio_buffer.speech_started":
                started.append(event.item_id)
            if event.type == "conversation.item.input_audio_transcription.completed":
                completed.append(event)
                if len(completed) == 2:
                    break
    assert types[0] == "session.created"
    assert "session.updated" in types
    assert [event.item_id for event in completed] == started
    assert all(event.transcript for event in completed)
    assert types.index("input_audio_buffer.committed") > types.index("input_audio_buffer.speech_stopped")


def test_realtime_bad_audio_is_an_error_event_and_the_session_goes_on(client, fixtures_dir, deadline):
    audio = pcm16_24k(fixture(fixtures_dir, "hello.wav")) + bytes(2 * 24000)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        connection.send({"type": "input_audio_buffer.append", "audio": "definitely not base64!"})
        errors = []
        for event in connection:
            if event.type == "error":
                errors.append(event)
                break
        assert errors[0].error.code == "invalid_value"
        assert errors[0].error.param == "audio"
        for start in range(0, len(audio), 4800):
            connection.input_audio_buffer.append(audio=base64.b64encode(audio[start:start + 4800]).decode())
        for event in connection:
            if event.type == "conversation.item.input_audio_transcription.completed":
                assert event.transcript
                break
