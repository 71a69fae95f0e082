// The operators' dashboard: the session list and four charts, polled from the
// JSON endpoints once a second with the admin key (docs/WEB.md).

import { drawLineChart } from './charts.js';

const POLL_MS = 1000;
/** The charts show this much history at most... */
const WINDOW_MS = 5 * 60 * 1000;
/** ...and at least this much, growing from it as history accumulates. */
const WINDOW_MIN_MS = 60 * 1000;

const $ = (id) => document.getElementById(id);

// The key: from `?access_token=` on the first load (then out of the address
// bar and the history), else from this tab's sessionStorage.
const key = (function takeKey() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('access_token');
  if (fromUrl !== null) {
    sessionStorage.setItem('adminKey', fromUrl);
    url.searchParams.delete('access_token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem('adminKey') || '';
})();

/** What the charts draw, kept for the last `WINDOW_MS` (the tests read it). */
const series = { active: [], throughput: [], p99: [], utilisation: [] };
const state = { polls: 0, failures: 0, previous: null, terminating: new Set() };
window.dashboard = { series, state };

async function api(method, path) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch(path, { method, headers, cache: 'no-store' });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showError(message) {
  const element = $('dash-error');
  element.replaceChildren();
  element.hidden = !message;
  if (!message) return;
  element.append(message);
  if (/^unauthorized/.test(message)) {
    const link = document.createElement('a');
    link.href = '/dashboard';
    link.textContent = 'enter the admin key';
    sessionStorage.removeItem('adminKey');
    element.append(' — ', link);
  }
}

async function poll() {
  try {
    const [list, metrics] = await Promise.all([api('GET', '/v1/sessions'), api('GET', '/v1/sessions/metrics')]);
    const now = Date.now();
    record(now, metrics);
    renderSessions(list.sessions);
    renderCharts(now);
    state.polls += 1;
    document.body.dataset.state = 'live';
    document.body.dataset.polls = String(state.polls);
    showError('');
  } catch (error) {
    state.failures += 1;
    document.body.dataset.state = 'error';
    showError(error.message || String(error));
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function record(now, metrics) {
  const previous = state.previous;
  let throughput = null;
  if (previous && now > previous.t) {
    throughput = Math.max(0, (metrics.audio_seconds - previous.audioSeconds) / ((now - previous.t) / 1000));
  }
  state.previous = { t: now, audioSeconds: metrics.audio_seconds };
  const final = metrics.latency_ms && metrics.latency_ms.final;
  const p99 = final && typeof final.p99 === 'number' ? final.p99 : null;
  series.active.push({ t: now, v: metrics.active_sessions });
  if (throughput !== null) series.throughput.push({ t: now, v: throughput });
  series.p99.push({ t: now, v: p99 });
  // Admission by engine capacity (docs/API.md): the streams' demand over the
  // live capacity, and what was refused for it.
  const engine = metrics.engine || {};
  const utilisation = typeof engine.live_capacity === 'number' && engine.live_capacity > 0
    ? (100 * engine.stream_demand) / engine.live_capacity : null;
  series.utilisation.push({ t: now, v: utilisation });
  for (const points of Object.values(series)) {
    while (points.length && points[0].t < now - WINDOW_MS) points.shift();
  }
  $('now-active').textContent = `${metrics.active_sessions} / ${metrics.max_sessions}`;
  $('now-throughput').textContent = throughput === null ? '' : throughput.toFixed(2);
  $('now-p99').textContent = p99 === null ? '–' : `${p99.toFixed(1)} ms`;
  $('now-utilisation').textContent = utilisation === null ? '–' : `${utilisation.toFixed(0)} %`;
  $('now-refused').textContent = String((engine.refused_streams || 0) + (engine.refused_batch || 0));
}

function renderCharts(now) {
  const oldest = series.active.length ? series.active[0].t : now;
  const windowMs = Math.min(WINDOW_MS, Math.max(WINDOW_MIN_MS, Math.ceil((now - oldest) / 30000) * 30000));
  drawLineChart($('chart-active'), series.active, { nowMs: now, windowMs, color: '#1f5fbf', integer: true });
  drawLineChart($('chart-throughput'), series.throughput, { nowMs: now, windowMs, color: '#1a7f37' });
  drawLineChart($('chart-p99'), series.p99, { nowMs: now, windowMs, color: '#b35900' });
  drawLineChart($('chart-utilisation'), series.utilisation, { nowMs: now, windowMs, color: '#8250df' });
}

/** Update the table in place (rows keyed by session id), so a button being clicked survives a refresh. */
function renderSessions(sessions) {
  const body = $('sessions').tBodies[0];
  const seen = new Set();
  for (const session of sessions) {
    seen.add(session.session_id);
    let row = body.querySelector(`tr[data-session-id="${CSS.escape(session.session_id)}"]`);
    if (!row) row = newRow(body, session.session_id);
    const cells = row.cells;
    const badge = cells[1].firstChild;
    badge.textContent = session.state;
    badge.className = `state state-${session.state}`;
    cells[2].textContent = String(session.core);
    cells[3].textContent = session.audio_seconds.toFixed(1);
    cells[4].textContent = session.idle_s.toFixed(1);
    cells[5].textContent = session.peer || '';
    cells[6].textContent = new Date(session.created_at).toLocaleTimeString();
    row.dataset.state = session.state;
  }
  for (const row of [...body.rows]) {
    if (!seen.has(row.dataset.sessionId)) row.remove();
  }
  $('session-count').textContent = `(${sessions.length})`;
  $('no-sessions').hidden = sessions.length > 0;
}

function newRow(body, id) {
  const row = body.insertRow();
  row.dataset.sessionId = id;
  for (let index = 0; index < 8; index++) row.insertCell();
  row.cells[0].className = 'mono';
  row.cells[0].textContent = id;
  row.cells[0].title = id;
  row.cells[1].append(document.createElement('span'));
  for (const index of [2, 3, 4]) row.cells[index].className = 'num';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'danger terminate';
  button.textContent = 'Terminate';
  button.addEventListener('click', () => terminate(id, button));
  row.cells[7].append(button);
  return row;
}

async function terminate(id, button) {
  button.disabled = true;
  button.textContent = 'Terminating…';
  try {
    await api('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
  } catch (error) {
    // 404: it ended on its own meanwhile; the next poll removes the row.
    if (error.status !== 404) {
      showError(`Could not terminate ${id}: ${error.message}`);
      button.disabled = false;
      button.textContent = 'Terminate';
    }
  }
}

async function serverInfo() {
  try {
    const health = await api('GET', '/v1/health');
    const minutes = Math.floor(health.uptime_s / 60);
    $('server-info').textContent = `v${health.version} · ${health.cores} cores · model ${health.model} · up ${minutes} min`;
  } catch {
    // Informational only.
  }
}

window.addEventListener('resize', () => renderCharts(Date.now()));
serverInfo();
poll();
