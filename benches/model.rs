//! Model-side micro-benchmarks: the fixed costs around the engine, not the
//! engine itself.
//!
//! - `mock_transcript/2s`: [`mock_transcript`] on 2 s of 16 kHz speech (hash,
//!   PRNG, word strings). This is the whole compute of the mock engine the load
//!   tests run against, so it bounds how much of a load-test result is mock
//!   overhead rather than server.
//! - `pool_round_trip/*`: one empty [`Job`] through a [`ModelPool`] with one
//!   worker running `MockModel { latency: 0, rtf: 0.0 }`: `Job::new` (oneshot
//!   allocation), `try_submit` into the bounded crossbeam queue, waking the
//!   idle worker thread, the worker's bookkeeping, and the reply back over the
//!   `futures` oneshot. This is the cross-thread hand-off every batch request
//!   and every streamed segment pays on top of inference. `spin_try_recv` busy
//!   polls the receiver (the hand-off alone, submitter never sleeps);
//!   `park_block_on` awaits it with a thread-parking waker, so it also pays the
//!   wake-up of the submitting thread, closer to a core whose runtime sleeps
//!   while it waits.
//!
//! The spinning variant needs a second idle core for the worker: on the 2-core
//! VM it measured ~1.0 µs when idle but 15-22 µs while a build ran, because
//! the spinner then competes with the worker for CPU. `park_block_on`
//! (~12 µs) is the steadier figure.
//!
//! Run with `cargo bench --bench model`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use transcription_service::audio::{decode, AudioFormat};
use transcription_service::model::mock::{mock_transcript, MockModel};
use transcription_service::model::pool::{Job, JobKind, JobOutcome, ModelPool, ReplyReceiver};

const HELLO_WAV: &[u8] = include_bytes!("../tests/fixtures/hello.wav");
const RATE_HZ: u32 = 16_000;

fn bench_mock_transcript(c: &mut Criterion) {
    let pcm = decode(AudioFormat::Wav, HELLO_WAV).expect("fixture hello.wav decodes");
    let two_seconds = pcm
        .samples
        .get(..2 * RATE_HZ as usize)
        .expect("hello.wav is longer than 2 s");
    assert_eq!(mock_transcript(two_seconds, RATE_HZ).words.len(), 5);

    let mut group = c.benchmark_group("mock_transcript");
    group.throughput(Throughput::Elements(two_seconds.len() as u64));
    group.bench_function("2s", |b| {
        b.iter(|| mock_transcript(black_box(two_seconds), RATE_HZ));
    });
    group.finish();
}

/// Wakes the thread blocked in [`block_on`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Busy-polls the receiver until the outcome arrives.
fn spin_recv(mut receiver: ReplyReceiver) -> JobOutcome {
    loop {
        match receiver.try_recv() {
            Ok(Some(outcome)) => return outcome,
            Ok(None) => std::hint::spin_loop(),
            Err(_) => panic!("the pool dropped the job"),
        }
    }
}

fn bench_pool_round_trip(c: &mut Criterion) {
    let model = Arc::new(MockModel {
        latency: Duration::ZERO,
        rtf: 0.0,
    });
    let pool = ModelPool::start(model, 1, 64).expect("the model pool starts");
    let to_pool = pool.to_pool();
    // An empty job: mock_transcript returns at once, so what is left is the
    // hand-off itself.
    let submit = || {
        let (job, receiver) = Job::new(0, JobKind::Batch, Vec::new(), RATE_HZ, Default::default());
        to_pool
            .try_submit(job)
            .expect("the pool accepts a job into an empty queue");
        receiver
    };
    let outcome = block_on(submit()).expect("the pool answers");
    assert!(outcome.result.is_ok());

    let mut group = c.benchmark_group("pool_round_trip");
    group.bench_function("spin_try_recv", |b| {
        b.iter(|| spin_recv(submit()));
    });
    group.bench_function("park_block_on", |b| {
        b.iter(|| block_on(submit()).expect("the pool answers"));
    });
    group.finish();

    drop(to_pool);
    pool.join();
}

criterion_group!(benches, bench_mock_transcript, bench_pool_round_trip);
criterion_main!(benches);
