// Line charts on <canvas>, drawn by hand: a time axis over the last minutes,
// a value axis from zero to a round maximum, a line and a light fill.

/** A round number at or above `value` (1, 2, 2.5 or 5 times a power of ten). */
export function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function formatValue(value) {
  if (value === 0) return '0';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1).replace(/\.0$/, '');
  return value.toFixed(2).replace(/\.?0+$/, '');
}

/** Time-axis ticks: the first step that gives at most six labels. */
const TICK_STEPS_MS = [10000, 15000, 30000, 60000, 120000, 300000];

function tickLabel(ageMs, stepMs) {
  if (ageMs === 0) return 'now';
  return stepMs < 60000 ? `-${Math.round(ageMs / 1000)} s` : `-${Math.round(ageMs / 60000)} min`;
}

/**
 * Draw `points` ({t: epoch ms, v: number or null for a gap}) over the
 * `windowMs` ending at `nowMs`. `integer`: the values are counts (whole
 * grid lines).
 */
export function drawLineChart(canvas, points, { nowMs, windowMs, color, integer = false }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const left = 44;
  const right = width - 8;
  const top = 8;
  const bottom = height - 22;
  const start = nowMs - windowMs;
  const visible = points.filter((p) => p.t >= start && p.v !== null && Number.isFinite(p.v));
  const highest = Math.max(0, ...visible.map((p) => p.v));
  const maxValue = integer ? Math.max(4, 4 * Math.ceil(highest / 4)) : niceCeiling(highest * 1.1);
  const x = (t) => left + ((t - start) / windowMs) * (right - left);
  const y = (v) => bottom - (v / maxValue) * (bottom - top);

  // Grid and labels.
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#5f6b7a';
  g.strokeStyle = '#e6eaef';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let line = 0; line <= 4; line++) {
    const value = (maxValue * line) / 4;
    const py = Math.round(y(value)) + 0.5;
    g.beginPath();
    g.moveTo(left, py);
    g.lineTo(right, py);
    g.stroke();
    g.fillText(formatValue(value), left - 6, py);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  const stepMs = TICK_STEPS_MS.find((step) => windowMs / step <= 6) || TICK_STEPS_MS.at(-1);
  // From `now` leftwards, skipping a label that would touch the one drawn before.
  let lastLabelX = Infinity;
  for (let age = 0; age <= windowMs; age += stepMs) {
    const px = Math.min(Math.max(x(nowMs - age), left + 16), right - 14);
    if (lastLabelX - px < 32) continue;
    g.fillText(tickLabel(age, stepMs), px, bottom + 6);
    lastLabelX = px;
  }

  // The line, broken at gaps, and its fill.
  const runs = [];
  let run = [];
  for (const point of points.filter((p) => p.t >= start)) {
    if (point.v === null || !Number.isFinite(point.v)) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push(point);
    }
  }
  if (run.length) runs.push(run);
  for (const segment of runs) {
    g.beginPath();
    segment.forEach((p, index) => (index ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.lineJoin = 'round';
    g.stroke();
    g.lineTo(x(segment[segment.length - 1].t), bottom);
    g.lineTo(x(segment[0].t), bottom);
    g.closePath();
    g.globalAlpha = 0.12;
    g.fillStyle = color;
    g.fill();
    g.globalAlpha = 1;
    if (segment.length === 1) {
      g.beginPath();
      g.arc(x(segment[0].t), y(segment[0].v), 2.5, 0, 2 * Math.PI);
      g.fill();
    }
  }
  g.strokeStyle = '#c5ccd6';
  g.beginPath();
  g.moveTo(left, bottom + 0.5);
  g.lineTo(right, bottom + 0.5);
  g.stroke();
}
