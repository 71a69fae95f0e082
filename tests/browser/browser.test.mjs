// End-to-end tests of the live page (/) and the operators' dashboard
// (/dashboard) in real headless Chromium, driven by playwright-core.
//
// scripts/test-browser.sh starts the server (with an API key and an admin
// key) and runs this file with:
//   BASE_URL      the server, http://127.0.0.1:PORT
//   API_KEY       the server's --api-key
//   ADMIN_KEY     the server's --admin-key
//   ARTIFACTS_DIR where the screenshots go
// Chromium's fake microphone plays tests/fixtures/two_utterances.wav in a loop.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, launch, required, screenshot, watchStream } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const BASE_URL = required('BASE_URL');
const API_KEY = required('API_KEY');
const ADMIN_KEY = required('ADMIN_KEY');
const MICROPHONE_WAV = resolve(here, '../fixtures/two_utterances.wav');
const UPLOAD_WAV = resolve(here, '../fixtures/hello.wav');
/** Long enough for a final on a slow machine: the fixture's first one comes after about 2 s. */
const FINAL_TIMEOUT_MS = 20000;

/** Console errors a test expects (a refused key), by pattern. */
const expectedErrors = [/status of 401/, /WebSocket connection to .* failed/];
/** The browser; its `problems` (console errors, uncaught exceptions) are checked at the end. */
let chrome;
const newPage = (label) => chrome.newPage(label);

before(async () => {
  chrome = await launch(MICROPHONE_WAV, expectedErrors);
});

after(async () => {
  await chrome?.close();
});

async function adminGet(path) {
  const response = await fetch(`${BASE_URL}${path}`, { headers: { Authorization: `Bearer ${ADMIN_KEY}` } });
  assert.equal(response.status, 200, `GET ${path}`);
  return response.json();
}

/** Open / with the API key typed in, press Start, wait for the session. */
async function startStreaming(label) {
  const page = await newPage(label);
  const stream = watchStream(page);
  await page.goto(`${BASE_URL}/`);
  await page.fill('#api-key', API_KEY);
  await page.click('#start');
  await page.waitForFunction(() => document.body.dataset.sessionId, null, { timeout: 10000 });
  return { page, stream };
}

/** The page streaming into test 1 and terminated in test 2. */
let live;

test('the live page streams the microphone and shows the server\'s finals', async () => {
  live = await startStreaming('live page');
  const { page, stream } = live;

  // The key travels as access_token on the WebSocket URL (browsers cannot set headers there).
  assert.ok(stream.url.includes(`access_token=${API_KEY}`), 'the stream URL carries the key');
  assert.ok(stream.url.includes('sample_rate=16000'), 'the page declares 16 kHz');

  // The session id shown is the server's, and the server lists it.
  const sessionId = await page.textContent('#session-id');
  assert.equal(sessionId, stream.find('session_start').session_id);
  const listed = await adminGet('/v1/sessions');
  const session = listed.sessions.find((s) => s.session_id === sessionId);
  assert.ok(session, `session ${sessionId} is in /v1/sessions`);

  // An interim appears greyed (before its final replaces it).
  const interim = await page.waitForSelector('#transcript span.interim', { timeout: FINAL_TIMEOUT_MS });
  const interimLook = await interim.evaluate((span) => ({
    segment: span.dataset.segment,
    color: getComputedStyle(span).color,
    fontStyle: getComputedStyle(span).fontStyle,
  }));

  // Finals appear solid, in place of their segment's interim.
  await page.waitForFunction(
    () => Number(document.getElementById('transcript').dataset.finalCount) >= 2,
    null,
    { timeout: FINAL_TIMEOUT_MS },
  );
  const finalSpan = page.locator(`#transcript span[data-segment="${interimLook.segment}"]`);
  await eventually(async () => assert.match(await finalSpan.getAttribute('class'), /\bfinal\b/));
  const finalColor = await finalSpan.evaluate((span) => getComputedStyle(span).color);
  assert.notEqual(interimLook.color, finalColor, 'interims and finals look different');
  assert.equal(interimLook.color, 'rgb(154, 164, 177)', 'interims are grey');
  assert.equal(finalColor, 'rgb(27, 31, 36)', 'finals are solid');
  assert.equal(await finalSpan.count(), 1, 'one span per segment: the final replaced the interim');
  assert.ok(stream.interims().length >= 1, 'the server sent interims');

  // The text shown is exactly the text of the finals the server sent.
  await eventually(async () => {
    const shown = await page.getAttribute('#transcript', 'data-final-text');
    const sent = stream.finals().map((m) => m.text).filter(Boolean).join(' ');
    const finalsShown = await page.$$eval('#transcript span.final', (spans) => spans.length);
    assert.equal(finalsShown, stream.finals().length);
    assert.equal(shown, sent);
    assert.ok(sent.length > 0, 'some final has words');
  });
  const visible = await page.$$eval('#transcript span.final', (spans) => spans.map((s) => s.textContent).filter(Boolean).join(' '));
  assert.equal(visible, stream.finals().map((m) => m.text).filter(Boolean).join(' '));

  // The lag is shown, in whole milliseconds (how large it is depends on the
  // machine's load, so no bound is asserted).
  const lag = await page.textContent('#lag');
  assert.match(lag, /^\d+ ms$/);
  assert.match(await page.textContent('#audio-sent'), /^\d+\.\d s$/);
  assert.equal(await page.getAttribute('body', 'data-state'), 'streaming');
  await screenshot(page, 'page-streaming.png');
});

test('the dashboard lists the live session and terminating it ends the stream', async () => {
  assert.ok(live, 'the live page of the previous test');
  const sessionId = await live.page.textContent('#session-id');
  const dash = await newPage('dashboard');

  // Without the key: 401 and a form asking for it.
  const refused = await dash.goto(`${BASE_URL}/dashboard`);
  assert.equal(refused.status(), 401);
  await screenshot(dash, 'dashboard-key-form.png');
  await dash.fill('#access_token', ADMIN_KEY);
  const [served] = await Promise.all([dash.waitForNavigation(), dash.click('#key-form button[type=submit]')]);
  assert.equal(served.status(), 200);
  // The key leaves the address bar at once.
  await dash.waitForFunction(() => !window.location.search.includes('access_token'));
  assert.equal(new URL(dash.url()).pathname, '/dashboard');

  // The live session's row: state, core, audio seconds, idle time.
  const row = dash.locator(`tr[data-session-id="${sessionId}"]`);
  await row.waitFor({ timeout: 5000 });
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[0], sessionId);
  assert.equal(cells[1], 'active');
  assert.match(cells[2], /^\d+$/, 'core');
  assert.ok(Number(cells[3]) > 0, `audio seconds ${cells[3]}`);
  assert.match(cells[4], /^\d+\.\d$/, 'idle seconds');
  const session = (await adminGet(`/v1/sessions/${sessionId}`));
  assert.equal(Number(cells[2]), session.core);

  // The charts have points and ink.
  await dash.waitForFunction(() => Number(document.body.dataset.polls) >= 4, null, { timeout: 10000 });
  const charts = await dash.evaluate(() => {
    const inked = (id) => {
      const canvas = document.getElementById(id);
      const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let count = 0;
      for (let index = 3; index < pixels.length; index += 4) if (pixels[index] > 0) count++;
      return count;
    };
    const { series } = window.dashboard;
    return {
      points: {
        active: series.active.length,
        throughput: series.throughput.length,
        p99: series.p99.length,
        utilisation: series.utilisation.length,
      },
      lastUtilisation: series.utilisation.at(-1).v,
      lastActive: series.active.at(-1).v,
      lastThroughput: series.throughput.at(-1).v,
      ink: {
        active: inked('chart-active'),
        throughput: inked('chart-throughput'),
        p99: inked('chart-p99'),
        utilisation: inked('chart-utilisation'),
      },
    };
  });
  for (const [name, points] of Object.entries(charts.points)) assert.ok(points >= 3, `${name}: ${points} points`);
  for (const [name, ink] of Object.entries(charts.ink)) assert.ok(ink > 500, `${name} chart drew (${ink} pixels)`);
  assert.ok(charts.lastActive >= 1, 'active sessions counted');
  // The live stream holds a share of the engine (the mock runs with a cost).
  assert.ok(charts.lastUtilisation > 0, `engine utilisation ${charts.lastUtilisation} % while streaming`);
  // Some audio was counted while the page streamed; the rate itself is speed.
  assert.ok(charts.lastThroughput > 0, `throughput ${charts.lastThroughput} audio s/s while streaming`);
  await screenshot(dash, 'dashboard.png');

  // Terminate: the page's stream ends with `terminated`, close 1000, and the row goes.
  await row.locator('button.terminate').click();
  await live.page.waitForFunction(() => document.body.dataset.endReason, null, { timeout: 5000 });
  assert.equal(await live.page.getAttribute('body', 'data-end-reason'), 'terminated');
  await live.page.waitForFunction(() => document.body.dataset.closeCode, null, { timeout: 5000 });
  assert.equal(await live.page.getAttribute('body', 'data-close-code'), '1000');
  assert.equal(live.stream.find('session_end').reason, 'terminated');
  assert.match(await live.page.textContent('#state'), /ended \(terminated\)/);
  assert.match(await live.page.textContent('#session-end'), /Session ended: terminated/);
  await row.waitFor({ state: 'detached', timeout: 5000 });
  await screenshot(live.page, 'page-terminated.png');
  await screenshot(dash, 'dashboard-after-terminate.png');
  await dash.close();
  await live.page.close();
});

test('Stop sends end, and the page waits for the finals and session_end', async () => {
  const { page, stream } = await startStreaming('stop');
  await page.waitForFunction(
    () => Number(document.getElementById('transcript').dataset.finalCount) >= 1,
    null,
    { timeout: FINAL_TIMEOUT_MS },
  );
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.closeCode, null, { timeout: 15000 });
  assert.deepEqual(stream.sent.at(-1), { type: 'end' });
  assert.equal(await page.getAttribute('body', 'data-end-reason'), 'client_end');
  assert.equal(await page.getAttribute('body', 'data-close-code'), '1000');
  const types = stream.messages.map((m) => m.type);
  assert.equal(types.at(-1), 'session_end', 'session_end is the last message');
  const end = stream.find('session_end');
  assert.equal(end.metrics.segments, stream.finals().length, 'a final for every segment before session_end');
  await eventually(async () => {
    assert.equal(
      await page.getAttribute('#transcript', 'data-final-text'),
      stream.finals().map((m) => m.text).filter(Boolean).join(' '),
    );
  });
  assert.equal(await page.locator('#transcript span.interim').count(), 0, 'no interim left after the end');
  await page.close();
});

test('the upload box shows what POST /v1/transcribe answers for the file', async () => {
  const direct = await fetch(`${BASE_URL}/v1/transcribe`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'audio/wav' },
    body: readFileSync(UPLOAD_WAV),
  });
  assert.equal(direct.status, 200);
  const expected = await direct.json();
  assert.ok(expected.text.length > 0, 'the fixture has words');

  const page = await newPage('upload');
  await page.goto(`${BASE_URL}/`);
  await page.fill('#api-key', API_KEY);
  await page.setInputFiles('#upload-file', UPLOAD_WAV);
  await page.click('#upload-submit');
  await page.waitForSelector('#upload-text', { timeout: 10000 });
  assert.equal(await page.getAttribute('#upload-text', 'data-text'), expected.text);
  assert.equal(await page.textContent('#upload-text'), expected.text);
  assert.match(await page.textContent('#upload-status'), /hello\.wav: 2\.15 s of audio, 1 segment/);
  await screenshot(page, 'page-upload.png');
  await page.close();
});

test('a wrong key is refused on the stream, the upload and the dashboard', async () => {
  const page = await newPage('wrong key');
  await page.goto(`${BASE_URL}/?access_token=wrong-key`);
  // The key moves from the URL into the field, and out of the address bar.
  assert.equal(await page.inputValue('#api-key'), 'wrong-key');
  assert.ok(!page.url().includes('access_token'));
  await page.click('#start');
  await page.waitForSelector('#live-error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#live-error'), /refused the stream: check the API key/);
  assert.equal(await page.getAttribute('body', 'data-state'), 'error');
  await page.setInputFiles('#upload-file', UPLOAD_WAV);
  await page.click('#upload-submit');
  await page.waitForSelector('#upload-error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#upload-error'), /unauthorized/);
  await screenshot(page, 'page-wrong-key.png');

  const refused = await page.goto(`${BASE_URL}/dashboard?access_token=wrong-key`);
  assert.equal(refused.status(), 401);
  assert.match(await page.textContent('.error'), /not accepted/);
  await page.close();
});

test('no page logged an error or broke its Content-Security-Policy', () => {
  assert.deepEqual(chrome.problems, []);
});
