// The live page against the real engine: Chromium's fake microphone plays
// flite saying "hello world this is a test"; the page's AudioWorklet resamples
// it to 16 kHz PCM16 and streams it; Whisper must hear those words. With the
// mock engine any audio gives words, so only this test shows that the audio
// the page sends is speech a recogniser can read.
//
// scripts/test-browser.sh --whisper starts a server with --model whisper (and
// an API key) and runs this file with BASE_URL, API_KEY and ARTIFACTS_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, required, screenshot, watchStream } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const BASE_URL = required('BASE_URL');
const API_KEY = required('API_KEY');
const MICROPHONE_WAV = resolve(here, '../fixtures/whisper/hello_world.wav');
/** The fixture loops: its first final comes after about 2.5 s of audio. */
const FINAL_TIMEOUT_MS = 30000;

/** Lower case, no punctuation, single spaces. */
const normalise = (text) => text.toLowerCase().replace(/[^a-z0-9' ]+/g, ' ').trim().split(/\s+/).join(' ');

let chrome;

before(async () => {
  chrome = await launch(MICROPHONE_WAV);
});

after(async () => {
  await chrome?.close();
});

test('Whisper hears the words the page streams from the microphone', async () => {
  const page = await chrome.newPage('whisper page');
  const stream = watchStream(page);
  await page.goto(`${BASE_URL}/`);
  await page.fill('#api-key', API_KEY);
  await page.click('#start');
  await page.waitForFunction(
    () => Number(document.getElementById('transcript').dataset.finalCount) >= 1,
    null,
    { timeout: FINAL_TIMEOUT_MS },
  );
  const [first] = stream.finals();
  assert.ok(first, 'a final arrived on the stream');
  assert.equal(normalise(first.text), 'hello world this is a test', `heard ${JSON.stringify(first.text)}`);
  const shown = await page.textContent('#transcript span.final');
  assert.equal(shown, first.text, 'the page shows the final the server sent');
  await screenshot(page, 'page-whisper.png');
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'ended', null, { timeout: FINAL_TIMEOUT_MS });
  assert.deepEqual(chrome.problems, []);
});
