//! Every fixed bound of the server in one place, units last.
//!
//! Bounds that operators tune are settings in [`crate::config`]; the ones here
//! are structural (array sizes, buffer sizes, intervals) and change only with
//! the code. Relations between them are asserted at compile time.

/// Headers parsed per request. `httparse` parses into a fixed array of this
/// size; a request with more headers is answered `431 headers_too_large`.
pub const HEADERS_COUNT_MAX: usize = 64;

/// The initial size of a connection's read buffer. Most requests (health
/// checks, small uploads' heads) fit; larger bodies grow it on demand.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// A connection's read buffer is shrunk back to [`READ_BUFFER_BYTES`] after a
/// request that grew it beyond this, so an idle keep-alive connection stays
/// cheap after one large upload.
pub const READ_BUFFER_RETAINED_BYTES_MAX: usize = 256 * 1024;

/// The longest chunk-size line (hex size plus extensions) of a chunked body.
pub const CHUNK_LINE_BYTES_MAX: usize = 1024;

/// The longest trailer section of a chunked body.
pub const CHUNK_TRAILER_BYTES_MAX: usize = 8 * 1024;

/// A request body must arrive completely within this time, however steadily it
/// trickles in: a client sending one byte per second cannot hold a connection
/// for hours.
pub const BODY_DEADLINE_MS: u64 = 120_000;

/// The seconds a client is told to wait in `Retry-After` when the model queue
/// is full.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// How often a core publishes its metric deltas to the aggregator.
pub const METRICS_PUBLISH_INTERVAL_MS: u64 = 250;

/// Capacity of the channel carrying metric snapshots to the aggregator. Cores
/// drop a snapshot (and keep accumulating) rather than block when it is full.
pub const METRICS_CHANNEL_CAPACITY: usize = 1024;

/// Histograms record microseconds from 1 µs up to this bound (one hour), with
/// three significant digits.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// The listen backlog of each core's socket.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Connections a single core serves at once; beyond it the core stops
/// accepting until one closes, and the kernel queues (then refuses) the rest.
pub const CORE_CONNECTIONS_MAX: usize = 16_384;

/// Jobs (segments, or windows of packed segments) one batch request may keep
/// queued at the model pool at once. A long recording is fed through this
/// window, so one upload cannot take the whole queue from everybody else.
pub const BATCH_JOBS_IN_FLIGHT_MAX: usize = 8;

/// Silence between two segments packed into one engine window
/// (`batch_window_seconds`): enough for Whisper to end one sentence before
/// the next begins, small beside the window.
pub const BATCH_WINDOW_GAP_MS: u64 = 300;

/// The longest engine window `--batch-window-seconds` may ask for: Whisper's
/// encoder sees 30 s at most.
pub const BATCH_WINDOW_SECONDS_MAX: f64 = 30.0;

/// The shortest window a request's speech is split into to keep every model
/// worker busy: Whisper's batch context floor (768 positions of 20 ms), below
/// which a shorter window costs no less.
pub const BATCH_WINDOW_SECONDS_MIN: f64 = 15.36;

/// Bodies up to this size are decoded and segmented on the core itself (well
/// under a millisecond); larger ones go to the blocking pool so that a long
/// upload never stalls the other connections of its core.
pub const INLINE_DECODE_BYTES_MAX: usize = 128 * 1024;

/// A task poll that holds its core longer than this is a stall: counted
/// (`transcribe_reactor_stalls_total`) and logged with the task's name. A
/// 20 ms audio frame's work is ~2 µs of VAD, so 10 ms is far beyond any
/// healthy poll.
pub const STALL_BUDGET_MS: u64 = 10;

/// Parts a multipart form may have.
pub const MULTIPART_PARTS_MAX: usize = 64;

const _: () = assert!(READ_BUFFER_BYTES <= READ_BUFFER_RETAINED_BYTES_MAX);
const _: () = assert!(CHUNK_LINE_BYTES_MAX < READ_BUFFER_BYTES);
const _: () = assert!(METRICS_PUBLISH_INTERVAL_MS < 1_000);
const _: () = assert!(BATCH_JOBS_IN_FLIGHT_MAX >= 1);
