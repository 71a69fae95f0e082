// What the browser test files share: Chromium with a fake microphone playing
// a WAV, tabs whose console errors are collected, a watch on the page's
// WebSocket, screenshots, and a retry helper.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS_DIR = resolve(process.env.ARTIFACTS_DIR || join(here, '../../target/browser-artifacts'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/test-browser.sh)`);
  return value;
}

/**
 * Headless Chromium whose fake microphone loops `microphoneWav`, and one
 * context with the microphone allowed. `problems` collects console errors
 * (except those matching `expectedErrors`) and uncaught exceptions of every
 * tab opened with `newPage`.
 */
export async function launch(microphoneWav, expectedErrors = []) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives the browser a fresh --user-data-dir of its own.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${microphoneWav}`,
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1120, height: 860 }, permissions: ['microphone'] });
  const problems = [];
  return {
    problems,
    /** A new tab whose console errors and uncaught exceptions are collected. */
    async newPage(label) {
      const page = await context.newPage();
      page.on('console', (message) => {
        if (message.type() !== 'error') return;
        const text = message.text();
        if (!expectedErrors.some((pattern) => pattern.test(text))) problems.push(`${label}: console: ${text}`);
      });
      page.on('pageerror', (error) => problems.push(`${label}: uncaught: ${error.message}`));
      return page;
    },
    async close() {
      await context.close();
      await browser.close();
    },
  };
}

/** The JSON messages the server sends on the page's stream, and what the page sends. */
export function watchStream(page) {
  const stream = { messages: [], sent: [], closed: false, url: null };
  page.on('websocket', (socket) => {
    if (!socket.url().includes('/v1/transcribe/stream')) return;
    stream.url = socket.url();
    socket.on('framereceived', ({ payload }) => {
      if (typeof payload === 'string') stream.messages.push(JSON.parse(payload));
    });
    socket.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') stream.sent.push(JSON.parse(payload));
    });
    socket.on('close', () => {
      stream.closed = true;
    });
  });
  stream.finals = () => stream.messages.filter((m) => m.type === 'transcript' && m.is_final);
  stream.interims = () => stream.messages.filter((m) => m.type === 'transcript' && !m.is_final);
  stream.find = (type) => stream.messages.find((m) => m.type === type);
  return stream;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS_DIR, name), fullPage: true });
}

/** Retry `check` (which throws when not yet true) until it passes or `timeoutMs` is over. */
export async function eventually(check, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((done) => setTimeout(done, 100));
    }
  }
}
