// The AudioWorklet processor of the live page: it takes the microphone at the
// AudioContext's rate (usually 44.1 or 48 kHz), resamples it to 16 kHz with a
// windowed-sinc low-pass filter, converts it to PCM16 and posts chunks of
// `chunkMs` to the main thread, which sends them on the WebSocket.
//
// The resampler keeps its state across the 128-frame render quanta: the input
// samples the filter still needs and the fractional position of the next
// output sample. Nothing is allocated per quantum (docs/WEB.md).

/** Zero crossings of the sinc on each side of the centre. */
const ZERO_CROSSINGS = 12;
/** Steps of the kernel table per input sample (linear interpolation between). */
const TABLE_STEPS = 256;
/** Cutoff as a fraction of the output Nyquist frequency (room for the roll-off). */
const CUTOFF_FRACTION = 0.9;

class Pcm16Resampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, chunkMs = 20 } = options.processorOptions || {};
    // `sampleRate` is the AudioWorkletGlobalScope's: the context's rate.
    this.step = sampleRate / targetRate; // input samples per output sample
    // Cutoff in cycles per input sample: below both Nyquist frequencies.
    this.cutoff = (0.5 * CUTOFF_FRACTION) / Math.max(1, this.step);
    this.halfWidth = Math.ceil(ZERO_CROSSINGS / (2 * this.cutoff)); // input samples
    this.table = this.kernelTable();
    // Pending input: `halfWidth` zeros of history first, so that output 0 sits
    // at input time 0. Room for the filter span plus a few quanta.
    this.input = new Float32Array(2 * this.halfWidth + 4 * 128 + 8);
    this.inputLength = this.halfWidth;
    this.position = this.halfWidth; // the next output's centre, in `input`
    this.chunk = new Int16Array(Math.round((targetRate * chunkMs) / 1000));
    this.chunkLength = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === 'flush') this.flush();
    };
  }

  /** The kernel from 0 to `halfWidth` input samples, `TABLE_STEPS` per sample. */
  kernelTable() {
    const size = this.halfWidth * TABLE_STEPS + 2;
    const table = new Float32Array(size);
    for (let index = 0; index < size; index++) {
      const t = index / TABLE_STEPS; // input samples from the centre
      const x = 2 * this.cutoff * t;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const ratio = t / this.halfWidth;
      // Blackman window, zero at and beyond the edge.
      const window = ratio >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * ratio) + 0.08 * Math.cos(2 * Math.PI * ratio);
      table[index] = 2 * this.cutoff * sinc * window;
    }
    return table;
  }

  kernel(distance) {
    const scaled = Math.abs(distance) * TABLE_STEPS;
    const index = scaled | 0;
    const fraction = scaled - index;
    return this.table[index] + (this.table[index + 1] - this.table[index]) * fraction;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // not connected yet
    const frames = channels[0].length;
    if (this.inputLength + frames > this.input.length) this.compact();
    // Down-mix to mono as we append.
    for (let frame = 0; frame < frames; frame++) {
      let sum = 0;
      for (let channel = 0; channel < channels.length; channel++) sum += channels[channel][frame];
      const sample = sum / channels.length;
      this.input[this.inputLength + frame] = sample;
      const magnitude = Math.abs(sample);
      if (magnitude > this.peak) this.peak = magnitude;
    }
    this.inputLength += frames;
    this.resample();
    return true;
  }

  /** Produce every output sample whose filter span is fully in `input`. */
  resample() {
    while (this.position + this.halfWidth < this.inputLength) {
      const centre = this.position;
      const first = Math.ceil(centre - this.halfWidth);
      const last = Math.floor(centre + this.halfWidth);
      let sum = 0;
      for (let index = first; index <= last; index++) {
        sum += this.input[index] * this.kernel(index - centre);
      }
      this.push(sum);
      this.position += this.step;
    }
  }

  /** Drop the input no future output needs, keeping the filter's history. */
  compact() {
    const keepFrom = Math.max(0, Math.floor(this.position - this.halfWidth) - 1);
    this.input.copyWithin(0, keepFrom, this.inputLength);
    this.inputLength -= keepFrom;
    this.position -= keepFrom;
  }

  push(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.chunk[this.chunkLength++] = Math.round(clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff);
    if (this.chunkLength === this.chunk.length) this.post(this.chunk.length);
  }

  post(length) {
    // A copy goes to the main thread (transferred, not cloned); the chunk
    // buffer stays here for the next one.
    const samples = this.chunk.slice(0, length);
    this.port.postMessage({ type: 'chunk', samples, peak: this.peak }, [samples.buffer]);
    this.chunkLength = 0;
    this.peak = 0;
  }

  /** Post what is left (the last part of a chunk), then say so. */
  flush() {
    if (this.chunkLength > 0) this.post(this.chunkLength);
    this.port.postMessage({ type: 'flushed' });
  }
}

registerProcessor('pcm16-resampler', Pcm16Resampler);
