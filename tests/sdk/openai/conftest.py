"""Starts the real transcription-server binary for the SDK tests.

The binary comes from SERVER_BIN (scripts/test-sdk-openai.sh builds it); the
server listens on an ephemeral port on 127.0.0.1 with a fresh API key, and
the tests reach it through the official `openai` client, changing only its
base URL and key.
"""

import os
import secrets
import subprocess
import threading

import openai
import pytest


class Server:
    def __init__(self, args=()):
        self.api_key = secrets.token_hex(16)
        env = dict(os.environ, TRANSCRIBE_API_KEY=self.api_key)
        self.process = subprocess.Popen(
            [os.environ["SERVER_BIN"], "--host", "127.0.0.1", "--port", "0",
             "--log-level", "warn", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        self.stderr = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.addr = None
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self.addr = line.split(" ", 2)[2].strip()
                break
        if self.addr is None:
            self.stop()
            raise RuntimeError("the server did not start: " + "".join(self.stderr))
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    def _drain_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line)

    def _drain_stdout(self):
        for _ in self.process.stdout:
            pass

    def client(self, **options):
        return openai.OpenAI(base_url=f"http://{self.addr}/v1", api_key=self.api_key, **options)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def server():
    server = Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(server):
    return server.client(max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def fixtures_dir():
    return os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
