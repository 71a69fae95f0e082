// The live page: the microphone to /v1/transcribe/stream, transcripts back,
// and a file to POST /v1/transcribe. Plain JS, no build step (docs/WEB.md).

const TARGET_RATE = 16000;
const CHUNK_MS = 20;
/** How long after `end` we wait for the finals and `session_end`. */
const END_TIMEOUT_MS = 10000;
/** Send times kept for the lag: the last 60 s of chunks. */
const SENT_TIMES_KEPT = (60 * 1000) / CHUNK_MS;

const $ = (id) => document.getElementById(id);
const keyInput = $('api-key');
const startButton = $('start');
const stopButton = $('stop');
const transcript = $('transcript');

/** The running stream, or null. */
let live = null;

// The key: from `?access_token=` (then out of the address bar), else from this
// tab's sessionStorage; it never goes into localStorage or a cookie.
(function restoreKey() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('access_token');
  if (fromUrl) {
    sessionStorage.setItem('apiKey', fromUrl);
    url.searchParams.delete('access_token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  keyInput.value = sessionStorage.getItem('apiKey') || '';
})();
keyInput.addEventListener('change', () => sessionStorage.setItem('apiKey', keyInput.value.trim()));

function apiKey() {
  return keyInput.value.trim();
}

function setState(state, text) {
  document.body.dataset.state = state;
  $('state').textContent = text || state;
}

function showError(element, message) {
  element.textContent = message;
  element.hidden = !message;
}

// ---------------------------------------------------------------------------
// Streaming

startButton.addEventListener('click', () => {
  start().catch((error) => {
    showError($('live-error'), `Could not start: ${error.message || error}`);
    teardownAudio();
    setState('error', 'error');
    startButton.disabled = false;
    stopButton.disabled = true;
  });
});
stopButton.addEventListener('click', () => stop());

async function start() {
  if (live) return;
  startButton.disabled = true;
  showError($('live-error'), '');
  $('session-end').hidden = true;
  resetTranscript();
  setState('connecting', 'starting microphone');

  const media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule('/assets/pcm-worklet.js');
  const source = context.createMediaStreamSource(media);
  const node = new AudioWorkletNode(context, 'pcm16-resampler', {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    channelCount: 1,
    channelCountMode: 'explicit',
    processorOptions: { targetRate: TARGET_RATE, chunkMs: CHUNK_MS },
  });
  // The node's output is silence; connecting it keeps the graph pulling it.
  source.connect(node).connect(context.destination);
  $('input-rate').textContent = `${context.sampleRate} Hz → ${TARGET_RATE} Hz`;

  live = {
    media, context, source, node, socket: null,
    sentSamples: 0,
    sentTimes: new Float64Array(SENT_TIMES_KEPT), // performance.now() by chunk index, a ring
    sentChunks: 0,
    socketOpened: false, ended: false, sessionEnd: null, endTimer: null, audioClosed: false,
  };
  node.port.onmessage = (event) => onWorkletMessage(live, event.data);
  await context.resume();
  openSocket(live);
}

function openSocket(stream) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams({ sample_rate: String(TARGET_RATE), encoding: 'pcm_s16le', interim_results: 'true' });
  if (apiKey()) query.set('access_token', apiKey());
  const socket = new WebSocket(`${scheme}//${window.location.host}/v1/transcribe/stream?${query}`);
  socket.binaryType = 'arraybuffer';
  stream.socket = socket;
  setState('connecting', 'connecting');
  socket.onopen = () => {
    stream.socketOpened = true;
    setState('streaming', 'streaming');
    stopButton.disabled = false;
  };
  socket.onmessage = (event) => {
    if (typeof event.data !== 'string') return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    onServerMessage(stream, message);
  };
  socket.onclose = (event) => onSocketClose(stream, event);
}

function onWorkletMessage(stream, data) {
  if (data.type === 'chunk') {
    $('level-bar').style.width = `${Math.min(100, Math.round(data.peak * 140))}%`;
    const socket = stream.socket;
    // Audio before the socket opens is dropped rather than queued: the stream
    // time starts with the first chunk sent, so the lag stays honest.
    if (!socket || socket.readyState !== WebSocket.OPEN || stream.ended) return;
    socket.send(data.samples.buffer);
    stream.sentTimes[stream.sentChunks % SENT_TIMES_KEPT] = performance.now();
    stream.sentChunks += 1;
    stream.sentSamples += data.samples.length;
    $('audio-sent').textContent = `${(stream.sentSamples / TARGET_RATE).toFixed(1)} s`;
  } else if (data.type === 'flushed') {
    sendEnd(stream);
  }
}

/** The lag of a transcript: now minus when the audio up to its `end` was sent. */
function lagMs(stream, endSeconds) {
  const chunk = Math.max(0, Math.ceil((endSeconds * 1000) / CHUNK_MS) - 1);
  if (chunk >= stream.sentChunks || stream.sentChunks - chunk > SENT_TIMES_KEPT) return null;
  return performance.now() - stream.sentTimes[chunk % SENT_TIMES_KEPT];
}

function onServerMessage(stream, message) {
  switch (message.type) {
    case 'session_start':
      $('session-id').textContent = message.session_id;
      document.body.dataset.sessionId = message.session_id;
      break;
    case 'transcript':
      showTranscript(message);
      if (typeof message.end === 'number') {
        const lag = lagMs(stream, message.end);
        if (lag !== null) {
          $('lag').textContent = `${Math.round(lag)} ms`;
          $('lag').dataset.ms = String(Math.round(lag));
        }
      }
      break;
    case 'session_end':
      stream.sessionEnd = message;
      showSessionEnd(message);
      break;
    case 'error':
      showError($('live-error'), `Server: ${message.code}: ${message.message}`);
      break;
    default:
      break; // speech_start and anything newer
  }
}

function resetTranscript() {
  transcript.replaceChildren();
  transcript.dataset.finalText = '';
  transcript.dataset.finalCount = '0';
  transcript.dataset.interimCount = '0';
  $('session-id').textContent = '–';
  delete document.body.dataset.sessionId;
  delete document.body.dataset.endReason;
  $('lag').textContent = '–';
  $('audio-sent').textContent = '0.0 s';
}

/** Interims replace the segment's interim span; a final replaces it for good. */
function showTranscript(message) {
  const id = String(message.segment_id);
  let span = transcript.querySelector(`span[data-segment="${CSS.escape(id)}"]`);
  if (span && span.classList.contains('final')) return; // never after the final
  if (!span) {
    span = document.createElement('span');
    span.dataset.segment = id;
    transcript.append(span, ' ');
  }
  if (message.is_final) {
    span.className = message.text ? 'final' : 'final empty';
    span.textContent = message.text;
    const finals = [...transcript.querySelectorAll('span.final')].map((s) => s.textContent).filter(Boolean);
    transcript.dataset.finalText = finals.join(' ');
    transcript.dataset.finalCount = String(Number(transcript.dataset.finalCount) + 1);
  } else {
    span.className = 'interim';
    span.textContent = message.text;
    transcript.dataset.interimCount = String(Number(transcript.dataset.interimCount) + 1);
  }
}

function showSessionEnd(message) {
  document.body.dataset.endReason = message.reason;
  const metrics = message.metrics || {};
  const parts = [`Session ended: ${message.reason}`];
  if (typeof metrics.audio_seconds === 'number') parts.push(`${metrics.audio_seconds.toFixed(1)} s of audio`);
  if (typeof metrics.segments === 'number') parts.push(`${metrics.segments} segment${metrics.segments === 1 ? '' : 's'}`);
  $('session-end').textContent = parts.join(' · ');
  $('session-end').hidden = false;
}

/** Stop: flush the worklet, send `end`, wait for the finals and `session_end`. */
function stop() {
  const stream = live;
  if (!stream || stream.ended) return;
  stopButton.disabled = true;
  setState('ending', 'finishing');
  // The worklet posts what it still holds, then `flushed`, then we send `end`.
  stream.node.port.postMessage({ type: 'flush' });
  stream.endTimer = setTimeout(() => sendEnd(stream), 1000); // if the worklet is gone
}

function sendEnd(stream) {
  if (stream.ended) return;
  stream.ended = true;
  clearTimeout(stream.endTimer);
  teardownAudio();
  const socket = stream.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: 'end' }));
    // The server closes after `session_end`; close ourselves if it does not.
    stream.endTimer = setTimeout(() => socket.close(1000, 'no session_end'), END_TIMEOUT_MS);
  }
}

function onSocketClose(stream, event) {
  clearTimeout(stream.endTimer);
  stream.ended = true;
  teardownAudio();
  document.body.dataset.closeCode = String(event.code);
  const reason = stream.sessionEnd ? stream.sessionEnd.reason : null;
  if (!stream.sessionEnd && !stream.socketOpened && event.code === 1006) {
    // A refused upgrade (a 401 for a wrong key, say) reaches script only as 1006.
    showError($('live-error'), 'The server refused the stream: check the API key.');
  } else if (!stream.sessionEnd) {
    showError($('live-error'), `The connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''}).`);
  }
  for (const span of transcript.querySelectorAll('span.interim')) span.remove();
  setState(reason ? 'ended' : 'error', reason ? `ended (${reason})` : 'disconnected');
  if (live === stream) live = null;
  startButton.disabled = false;
  stopButton.disabled = true;
}

function teardownAudio() {
  const stream = live;
  if (!stream || stream.audioClosed) return;
  stream.audioClosed = true;
  stream.media.getTracks().forEach((track) => track.stop());
  stream.source.disconnect();
  stream.node.disconnect();
  stream.node.port.onmessage = null;
  stream.context.close();
  $('level-bar').style.width = '0';
}

// ---------------------------------------------------------------------------
// Upload

$('upload').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = $('upload-file').files[0];
  if (!file) return;
  const submit = $('upload-submit');
  submit.disabled = true;
  showError($('upload-error'), '');
  $('upload-result').hidden = true;
  $('upload-status').hidden = false;
  $('upload-status').textContent = `Sending ${file.name} (${(file.size / 1024).toFixed(0)} KiB)…`;
  try {
    // multipart/form-data with a `file` part: the server finds the format.
    const form = new FormData();
    form.append('file', file, file.name);
    const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
    const response = await fetch('/v1/transcribe', { method: 'POST', headers, body: form });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`;
      throw new Error(error);
    }
    showUpload(file, body);
  } catch (error) {
    $('upload-status').hidden = true;
    showError($('upload-error'), `Transcription failed: ${error.message || error}`);
  } finally {
    submit.disabled = false;
  }
});

function showUpload(file, body) {
  const result = $('upload-result');
  result.replaceChildren();
  const text = document.createElement('p');
  text.id = 'upload-text';
  text.className = body.text ? 'final' : 'empty';
  text.textContent = body.text || '(no speech)';
  text.dataset.text = body.text;
  result.append(text);
  if (body.segments && body.segments.length) {
    const list = document.createElement('ul');
    list.className = 'segments';
    for (const segment of body.segments) {
      const item = document.createElement('li');
      const time = document.createElement('span');
      time.className = 'time';
      time.textContent = `${segment.start.toFixed(2)}–${segment.end.toFixed(2)} s`;
      item.append(time, segment.text);
      list.append(item);
    }
    result.append(list);
  }
  result.hidden = false;
  const count = body.segments ? body.segments.length : 0;
  $('upload-status').textContent = `${file.name}: ${body.duration.toFixed(2)} s of audio, ${count} segment${count === 1 ? '' : 's'}, processed in ${body.processing_ms.toFixed(1)} ms`;
}
