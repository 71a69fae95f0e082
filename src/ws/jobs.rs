//! The model jobs of a streaming session: [`StreamCtx::submit_jobs`] offers
//! the session's jobs to the pool (interims are shed while finals would wait
//! behind them), [`await_job_result`] hands each result back to its session,
//! and one task per core ([`retry_waiting_finals`]) offers the finals a full
//! queue refused again.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::stream::{pump, FinalsQueue, StreamCtx};
use crate::core::task::watched;
use crate::core::CoreContext;
use crate::metrics::record_duration;
use crate::model::pool::{Job, JobKind, ReplyReceiver, SubmitError, ToPool};
use crate::model::{EngineError, TranscribeOptions};
use crate::rt::Latch;
use crate::session::JobRequest;

/// How often finals refused by a full model queue are offered again.
const FINAL_RETRY_MS: u64 = 2;

impl StreamCtx {
    /// Submit the jobs the session asks for, each with a task that awaits
    /// its result ([`await_job_result`]); a full model queue keeps the
    /// session's finals for the core's retry task.
    pub(super) fn submit_jobs(self: &Rc<Self>) {
        let ctx = self;
        loop {
            let Some(request) = ctx.session.borrow_mut().next_job() else {
                return;
            };
            if request.kind == JobKind::Interim
                && interims_would_delay_finals(&ctx.core.shared.to_pool)
            {
                // Shed like a refused interim; the next one is due after another
                // interval of speech. Finals are offered before interims, so none
                // is waiting behind this one.
                ctx.session.borrow_mut().job_refused(request);
                return;
            }
            let (sample_rate, language, prompt) = {
                let session = ctx.session.borrow();
                let params = session.params();
                (
                    params.sample_rate,
                    params.language.clone(),
                    params.prompt.clone(),
                )
            };
            let JobRequest {
                kind,
                segment_id,
                start_sample,
                end_sample,
                samples,
            } = request;
            let (job, receiver) = Job::new(
                ctx.core.core_id,
                kind,
                samples,
                sample_rate,
                TranscribeOptions {
                    language,
                    prompt,
                    ..TranscribeOptions::default()
                },
            );
            let audio_s = samples_len_s(&job);
            match ctx.core.shared.to_pool.try_submit(job) {
                Ok(()) => {
                    ctx.core.metrics.count(|c| c.model_jobs += 1);
                    let superseded = ctx.track_interim(kind, segment_id, audio_s);
                    let job = JobInFlight {
                        kind,
                        segment_id,
                        start_sample,
                        end_sample,
                        submitted_at: Instant::now(),
                    };
                    monoio::spawn(watched(
                        &ctx.core,
                        "session job result",
                        await_job_result(Rc::clone(ctx), job, receiver, superseded),
                    ));
                }
                Err(SubmitError::Full(job) | SubmitError::Closed(job)) => {
                    ctx.core.metrics.count(|c| c.model_queue_full += 1);
                    ctx.session.borrow_mut().job_refused(JobRequest {
                        kind,
                        segment_id,
                        start_sample,
                        end_sample,
                        samples: job.samples,
                    });
                    schedule_retry(ctx);
                    return;
                }
            }
        }
    }
}

impl StreamCtx {
    /// After a job was queued: a final counts towards the session's demand
    /// on the engine and supersedes an interim of its segment (or an
    /// earlier one) still in flight; an interim gets the latch that tells
    /// its result task it has been superseded.
    fn track_interim(&self, kind: JobKind, segment_id: u64, audio_s: f64) -> Option<Latch> {
        match kind {
            JobKind::Final => {
                self.demand.borrow_mut().add_work(audio_s, Instant::now());
                let mut in_flight = self.interim_superseded.borrow_mut();
                if in_flight
                    .as_ref()
                    .is_some_and(|(interim_segment, _)| *interim_segment <= segment_id)
                {
                    if let Some((_, latch)) = in_flight.take() {
                        latch.trigger();
                    }
                }
                None
            }
            JobKind::Interim => {
                let latch = Latch::default();
                *self.interim_superseded.borrow_mut() = Some((segment_id, latch.clone()));
                Some(latch)
            }
            JobKind::Batch => None,
        }
    }
}

/// The length of a job's audio, in seconds.
fn samples_len_s(job: &Job) -> f64 {
    job.samples.len() as f64 / f64::from(job.sample_rate.max(1))
}

/// A job the pool accepted, as its result task remembers it.
struct JobInFlight {
    kind: JobKind,
    segment_id: u64,
    start_sample: u64,
    end_sample: u64,
    submitted_at: Instant,
}

/// The task spawned for each accepted job: await the worker's answer,
/// record its latencies, hand the result to the session and act on it.
async fn await_job_result(
    ctx: Rc<StreamCtx>,
    job: JobInFlight,
    receiver: ReplyReceiver,
    superseded: Option<Latch>,
) {
    let JobInFlight {
        kind,
        segment_id,
        start_sample,
        end_sample,
        submitted_at,
    } = job;
    // Once the connection is over nobody can take this result: drop the
    // receiver, and the worker drops the job unrun if it has not begun it.
    let over = ctx.over.wait();
    let superseded = superseded.unwrap_or_default();
    let answer = monoio::select! {
        answer = receiver => answer,
        () = over => return,
        () = superseded.wait() => {
            // Its final went to the engine: the result could only be dropped.
            ctx.session.borrow_mut().interim_superseded();
            pump(&ctx);
            return;
        },
    };
    if kind == JobKind::Interim {
        ctx.interim_superseded.borrow_mut().take();
    }
    let result = match answer {
        Ok(outcome) => {
            ctx.core.metrics.record(|h| {
                record_duration(&mut h.model_latency_us, outcome.model_time);
                record_duration(&mut h.queue_wait_us, outcome.queue_wait);
            });
            outcome.result
        }
        Err(_) => Err(EngineError::Failed(
            "the model worker dropped the job".into(),
        )),
    };
    if result.is_err() {
        ctx.core.metrics.count(|c| c.model_job_failures += 1);
    }
    let now = Instant::now();
    ctx.session
        .borrow_mut()
        .on_result(kind, segment_id, start_sample, end_sample, result, now);
    if kind == JobKind::Interim {
        ctx.core
            .metrics
            .record(|h| record_duration(&mut h.interim_latency_us, submitted_at.elapsed()));
    }
    pump(&ctx);
}

/// Whether the model queue is deep enough that an interim would delay
/// finals: at least one job already waits for every worker. A real engine's
/// interim costs as much as a final, so under load only finals are sent.
fn interims_would_delay_finals(to_pool: &ToPool) -> bool {
    to_pool.queue_depth() >= to_pool.workers()
}

/// Put the session on its core's list of sessions whose finals wait for room
/// in the model queue (once). One task per core retries the whole list, so a
/// full queue costs one wake-up per retry interval, not one per session.
fn schedule_retry(ctx: &Rc<StreamCtx>) {
    if !ctx.session.borrow().has_finals_ready() || ctx.retry_scheduled.replace(true) {
        return;
    }
    ctx.finals.waiting.borrow_mut().push(Rc::clone(ctx));
    ctx.finals.wake.notify();
}

/// The core's retry task: while sessions wait, offer their finals to the
/// queue every [`FINAL_RETRY_MS`], in the order they started waiting.
pub async fn retry_waiting_finals(core: Rc<CoreContext>, finals: Rc<FinalsQueue>) {
    loop {
        let wake = finals.wake.notified();
        let drained = core.drain.wait();
        monoio::select! {
            _ = wake => {},
            // After the drain the list is still served until it is empty.
            _ = drained => if finals.waiting.borrow().is_empty() { return },
        }
        while !finals.waiting.borrow().is_empty() {
            monoio::time::sleep(Duration::from_millis(FINAL_RETRY_MS)).await;
            let waiting = std::mem::take(&mut *finals.waiting.borrow_mut());
            for ctx in waiting {
                if ctx.link().kill.is_triggered() && !ctx.resume.borrow().is_detached() {
                    ctx.retry_scheduled.set(false);
                    continue;
                }
                ctx.submit_jobs();
                if ctx.session.borrow().has_finals_ready() {
                    finals.waiting.borrow_mut().push(ctx);
                } else {
                    ctx.retry_scheduled.set(false);
                    pump(&ctx);
                }
            }
        }
    }
}
