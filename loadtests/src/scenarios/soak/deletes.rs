//! Operator DELETEs during a soak (`--delete-fraction`).
//!
//! A fraction of the stream sessions is planned (by the soak's schedule) to
//! be deleted by the operator at a random 20–80% of its length. Such a
//! session, once it has its `session_id` (from `session_start`), enters it
//! in the shared [`DeleteBook`] with the time of its DELETE and of its own
//! `end`. The deleter thread ([`run_deleter`]) takes each due entry, marks it
//! sent *before* writing `DELETE /v1/sessions/{id}` (so the client, which
//! may see `session_end` `terminated` before the answer is read, knows a
//! DELETE is out), and records the answer. A DELETE is not sent within
//! [`DELETE_MARGIN`] of the session's own `end` (it would race it); those
//! are counted as skipped.
//!
//! When a session whose DELETE was sent ends, its client reports what it
//! saw ([`ClientOutcome`]); [`reconcile`] then matches answers with
//! outcomes:
//!
//! * 200 and the client got `session_end` `terminated` and close 1000:
//!   observed (the expected case);
//! * 200 and the client got `session_end` `client_end` having sent `end`
//!   before the answer came: the two raced (counted, not a failure);
//! * 200 and anything else (no `session_end`, another reason, another close
//!   code, the client failed): a failure;
//! * 404: the session ended on its own just before (counted apart); a
//!   failure only if its client was nevertheless terminated;
//! * any other status, or no answer: a failure.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::{build_request, HttpClient};
use crate::target::Target;

/// How often the deleter looks for due DELETEs.
pub const DELETE_POLL: Duration = Duration::from_millis(10);

/// No DELETE is sent this close to the session's own `end`.
pub const DELETE_MARGIN: Duration = Duration::from_millis(250);

/// How a DELETE was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteAnswer {
    /// An HTTP status.
    Status(u16),
    /// No response: `error_<kind>` and a description.
    Failed(String, String),
}

/// One DELETE sent.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRecord {
    pub sent_at: Instant,
    pub answered_at: Option<Instant>,
    pub answer: Option<DeleteAnswer>,
}

/// What the client of a deleted session saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOutcome {
    /// The `session_end` reason, if one came.
    pub end_reason: Option<String>,
    /// The close code received, if a close frame came.
    pub close_code: Option<u16>,
    /// The session failed (I/O, timeout, fatal error message, a close code
    /// other than 1000, …).
    pub failed: bool,
    /// When the client sent `end`, if it did.
    pub end_sent_at: Option<Instant>,
}

impl ClientOutcome {
    /// `session_end` `terminated`, then close 1000, no failure.
    pub fn terminated(&self) -> bool {
        !self.failed
            && self.end_reason.as_deref() == Some("terminated")
            && self.close_code == Some(1000)
    }
}

/// A session waiting for its DELETE.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Planned {
    delete_at: Instant,
    end_at: Instant,
}

#[derive(Debug, Default)]
struct BookInner {
    planned: HashMap<String, Planned>,
    sent: HashMap<String, DeleteRecord>,
    outcomes: HashMap<String, ClientOutcome>,
    /// Sessions entered with a planned DELETE.
    entered: u64,
    /// DELETEs not sent: too close to the session's `end` when due.
    skipped_near_end: u64,
    /// DELETEs not sent: the session was over before its time.
    not_reached: u64,
    /// Slowest answer, ms.
    max_ms: f64,
}

/// The sessions planned to be deleted, the DELETEs sent, and what their
/// clients saw; shared by the stream workers and the deleter.
#[derive(Debug, Default)]
pub struct DeleteBook {
    inner: Mutex<BookInner>,
}

impl DeleteBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookInner> {
        // A panicking holder leaves consistent data behind (plain inserts).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Session `id` is to be deleted at `delete_at`; it sends `end` at
    /// `end_at`.
    pub fn enter(&self, id: &str, delete_at: Instant, end_at: Instant) {
        let mut b = self.lock();
        b.entered += 1;
        b.planned
            .insert(id.to_string(), Planned { delete_at, end_at });
    }

    /// The next session whose DELETE is due at `now`, marked as sent at
    /// `now`; due sessions within [`DELETE_MARGIN`] of their `end` are
    /// dropped (skipped) on the way.
    pub fn take_due(&self, now: Instant) -> Option<String> {
        let mut b = self.lock();
        loop {
            let (id, p) = b
                .planned
                .iter()
                .filter(|(_, p)| p.delete_at <= now)
                .min_by_key(|(_, p)| p.delete_at)
                .map(|(id, p)| (id.clone(), *p))?;
            b.planned.remove(&id);
            if now + DELETE_MARGIN >= p.end_at {
                b.skipped_near_end += 1;
                continue;
            }
            b.sent.insert(
                id.clone(),
                DeleteRecord {
                    sent_at: now,
                    answered_at: None,
                    answer: None,
                },
            );
            return Some(id);
        }
    }

    /// When the next planned DELETE is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().planned.values().map(|p| p.delete_at).min()
    }

    /// The DELETE of `id` was answered at `at`.
    pub fn answered(&self, id: &str, answer: DeleteAnswer, at: Instant) {
        let mut b = self.lock();
        if let Some(r) = b.sent.get_mut(id) {
            let ms = at.saturating_duration_since(r.sent_at).as_secs_f64() * 1000.0;
            r.answer = Some(answer);
            r.answered_at = Some(at);
            b.max_ms = b.max_ms.max(ms);
        }
    }

    /// True once a DELETE of `id` has been (or is being) sent.
    pub fn delete_sent(&self, id: &str) -> bool {
        self.lock().sent.contains_key(id)
    }

    /// Session `id` is over: a DELETE not sent yet never will be; for one
    /// sent, `outcome` is what its client saw.
    pub fn session_over(&self, id: &str, outcome: ClientOutcome) {
        let mut b = self.lock();
        if b.planned.remove(id).is_some() {
            b.not_reached += 1;
        } else if b.sent.contains_key(id) {
            b.outcomes.insert(id.to_string(), outcome);
        }
    }

    /// Matches the answers with the clients' outcomes.
    pub fn summary(&self) -> DeleteSummary {
        let b = self.lock();
        let mut s = reconcile(&b.sent, &b.outcomes);
        s.planned = b.entered;
        s.skipped_near_end = b.skipped_near_end;
        // Entries never due (the soak ended first) are not reached either.
        s.not_reached = b.not_reached + b.planned.len() as u64;
        s.max_ms = (b.max_ms * 1000.0).round() / 1000.0;
        s
    }
}

/// What the DELETEs did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeleteSummary {
    /// Sessions that entered the book with a planned DELETE.
    pub planned: u64,
    /// DELETEs sent.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 404 (the session had ended on its own).
    pub not_found: u64,
    /// Other answers by status, and `error_<kind>` for none.
    pub other: BTreeMap<String, u64>,
    /// 200, and the client got `session_end` `terminated` and close 1000.
    pub observed: u64,
    /// 200, but the client saw something else: a failure.
    pub unobserved: u64,
    /// 200 while the client's own `end` was under way and it got
    /// `client_end`: the two raced (not a failure).
    pub raced_end: u64,
    /// 404, yet the client was terminated: a failure.
    pub terminated_after_404: u64,
    /// Not sent: due within [`DELETE_MARGIN`] of the session's `end`.
    pub skipped_near_end: u64,
    /// Not sent: the session was over before its DELETE was due.
    pub not_reached: u64,
    /// Slowest answer, ms.
    pub max_ms: f64,
    /// The first failure, described.
    pub first_failure: Option<String>,
}

impl DeleteSummary {
    /// DELETEs that went wrong: another status or none, a 200 whose client
    /// was not terminated, a 404 whose client was.
    pub fn failures(&self) -> u64 {
        self.other.values().sum::<u64>() + self.unobserved + self.terminated_after_404
    }
}

/// Classifies every DELETE sent (`sent`, by session id) against what its
/// client saw (`outcomes`).
pub fn reconcile(
    sent: &HashMap<String, DeleteRecord>,
    outcomes: &HashMap<String, ClientOutcome>,
) -> DeleteSummary {
    let mut s = DeleteSummary {
        sent: sent.len() as u64,
        ..DeleteSummary::default()
    };
    // In send order, so the first failure is the earliest one.
    let mut records: Vec<(&String, &DeleteRecord)> = sent.iter().collect();
    records.sort_by_key(|(id, r)| (r.sent_at, (*id).clone()));
    let fail = |s: &mut DeleteSummary, what: String| {
        s.first_failure.get_or_insert(what);
    };
    for (id, r) in records {
        let outcome = outcomes.get(id);
        let seen = || {
            outcome.map_or_else(
                || "no report from its client".to_string(),
                |o| {
                    format!(
                        "session_end {}, close {}{}",
                        o.end_reason.as_deref().unwrap_or("none"),
                        o.close_code
                            .map_or_else(|| "none".into(), |c| c.to_string()),
                        if o.failed { ", client failed" } else { "" }
                    )
                },
            )
        };
        match &r.answer {
            Some(DeleteAnswer::Status(200)) => {
                let o = outcome.cloned().unwrap_or_default();
                let end_under_way = match (o.end_sent_at, r.answered_at) {
                    (Some(end), Some(answered)) => end <= answered,
                    _ => false,
                };
                if o.terminated() {
                    s.ok += 1;
                    s.observed += 1;
                } else if !o.failed
                    && end_under_way
                    && o.end_reason.as_deref() == Some("client_end")
                {
                    s.ok += 1;
                    s.raced_end += 1;
                } else {
                    s.ok += 1;
                    s.unobserved += 1;
                    fail(
                        &mut s,
                        format!("DELETE {id} answered 200 but its client saw {}", seen()),
                    );
                }
            }
            Some(DeleteAnswer::Status(404)) => {
                s.not_found += 1;
                if outcome.is_some_and(|o| o.end_reason.as_deref() == Some("terminated")) {
                    s.terminated_after_404 += 1;
                    fail(
                        &mut s,
                        format!("DELETE {id} answered 404 but its client saw {}", seen()),
                    );
                }
            }
            Some(DeleteAnswer::Status(code)) => {
                *s.other.entry(code.to_string()).or_insert(0) += 1;
                fail(&mut s, format!("DELETE {id} answered {code}"));
            }
            Some(DeleteAnswer::Failed(key, detail)) => {
                *s.other.entry(key.clone()).or_insert(0) += 1;
                fail(&mut s, format!("DELETE {id}: {detail}"));
            }
            None => {
                *s.other.entry("no_answer".into()).or_insert(0) += 1;
                fail(&mut s, format!("DELETE {id}: no answer recorded"));
            }
        }
    }
    s
}

/// `/v1/sessions/{id}` with `id` percent-encoded (beyond the unreserved
/// characters).
pub fn session_path(id: &str) -> String {
    let mut p = String::from("/v1/sessions/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            p.push(char::from(b));
        } else {
            p.push_str(&format!("%{b:02X}"));
        }
    }
    p
}

/// The deleter: sends each due DELETE (with `headers`) until `stop`.
pub fn run_deleter(
    target: &Target,
    headers: &[(String, String)],
    timeout: Duration,
    book: &DeleteBook,
    stop: &AtomicBool,
) {
    let mut client = HttpClient::new(target.clone(), timeout);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if let Some(id) = book.take_due(now) {
            let req = build_request("DELETE", target, &session_path(&id), headers, None);
            let answer = match client.send(&req, false) {
                Ok(info) => DeleteAnswer::Status(info.status),
                Err(e) => DeleteAnswer::Failed(format!("error_{}", e.kind.as_str()), e.to_string()),
            };
            book.answered(&id, answer, Instant::now());
            continue;
        }
        let wait = book
            .next_due()
            .map_or(DELETE_POLL, |at| at.saturating_duration_since(now))
            .min(DELETE_POLL);
        thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(reason: Option<&str>, close: Option<u16>) -> ClientOutcome {
        ClientOutcome {
            end_reason: reason.map(str::to_string),
            close_code: close,
            failed: false,
            end_sent_at: None,
        }
    }

    #[test]
    fn the_book_sends_due_deletes_once_and_skips_those_near_the_end() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let book = DeleteBook::new();
        book.enter("a", t + s(2), t + s(10));
        book.enter("b", t + s(1), t + s(10));
        book.enter("c", t + s(3), t + s(3) + DELETE_MARGIN / 2);
        book.enter("d", t + s(20), t + s(30));
        assert_eq!(book.next_due(), Some(t + s(1)));
        assert_eq!(book.take_due(t), None, "nothing due yet");
        assert!(!book.delete_sent("b"));
        // Earliest first, each once.
        assert_eq!(book.take_due(t + s(5)).as_deref(), Some("b"));
        assert!(book.delete_sent("b"));
        assert_eq!(book.take_due(t + s(5)).as_deref(), Some("a"));
        // "c" is due within the margin of its end: skipped.
        assert_eq!(book.take_due(t + s(5)), None);
        assert!(!book.delete_sent("c"));
        book.answered("b", DeleteAnswer::Status(200), t + s(5));
        book.answered("a", DeleteAnswer::Status(404), t + s(5));
        book.session_over("b", outcome(Some("terminated"), Some(1000)));
        book.session_over("a", outcome(Some("client_end"), Some(1000)));
        // "d" ends before its DELETE is due; "e" was never planned.
        book.session_over("d", outcome(Some("client_end"), Some(1000)));
        book.session_over("e", outcome(Some("client_end"), Some(1000)));
        assert_eq!(book.take_due(t + s(60)), None);
        book.enter("f", t + s(100), t + s(200));
        let sum = book.summary();
        assert_eq!(sum.planned, 5);
        assert_eq!(sum.sent, 2);
        assert_eq!((sum.ok, sum.observed, sum.not_found), (1, 1, 1));
        assert_eq!(sum.skipped_near_end, 1);
        // "d" (over first) and "f" (never due).
        assert_eq!(sum.not_reached, 2);
        assert_eq!(sum.failures(), 0);
        assert_eq!(sum.first_failure, None);
    }

    fn rec(sent_at: Instant, answer: Option<DeleteAnswer>) -> DeleteRecord {
        DeleteRecord {
            sent_at,
            answered_at: answer
                .is_some()
                .then_some(sent_at + Duration::from_millis(2)),
            answer,
        }
    }

    #[test]
    fn reconcile_classifies_answers_against_what_clients_saw() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let ok = || Some(DeleteAnswer::Status(200));
        let mut sent = HashMap::new();
        let mut seen = HashMap::new();
        let mut add =
            |id: &str, at: u64, answer: Option<DeleteAnswer>, o: Option<ClientOutcome>| {
                sent.insert(id.to_string(), rec(t + ms(at), answer));
                if let Some(o) = o {
                    seen.insert(id.to_string(), o);
                }
            };
        // 200 and terminated + close 1000: observed.
        add("t1", 0, ok(), Some(outcome(Some("terminated"), Some(1000))));
        add("t2", 1, ok(), Some(outcome(Some("terminated"), Some(1000))));
        // 200, the client had sent `end` before the answer: raced.
        let mut raced = outcome(Some("client_end"), Some(1000));
        raced.end_sent_at = Some(t + ms(2));
        add("r", 2, ok(), Some(raced));
        // 200, but no session_end (close only): failure.
        add("u1", 3, ok(), Some(outcome(None, Some(1000))));
        // 200, terminated but closed 1011: failure.
        add("u2", 4, ok(), Some(outcome(Some("terminated"), Some(1011))));
        // 200 and client_end, but `end` went out after the answer: failure.
        let mut late = outcome(Some("client_end"), Some(1000));
        late.end_sent_at = Some(t + ms(500));
        add("u3", 5, ok(), Some(late));
        // 200 and the client failed.
        let mut failed = outcome(Some("terminated"), Some(1000));
        failed.failed = true;
        add("u4", 6, ok(), Some(failed));
        // 404: ended on its own.
        add(
            "n",
            7,
            Some(DeleteAnswer::Status(404)),
            Some(outcome(Some("client_end"), Some(1000))),
        );
        // 404 yet terminated: failure.
        add(
            "n2",
            8,
            Some(DeleteAnswer::Status(404)),
            Some(outcome(Some("terminated"), Some(1000))),
        );
        // Other statuses, no answer at all.
        add("x", 9, Some(DeleteAnswer::Status(401)), None);
        add(
            "y",
            10,
            Some(DeleteAnswer::Failed(
                "error_timeout".into(),
                "timeout: read".into(),
            )),
            None,
        );
        add("z", 11, None, None);
        let s = reconcile(&sent, &seen);
        assert_eq!(s.sent, 12);
        assert_eq!(s.ok, 7);
        assert_eq!(s.observed, 2);
        assert_eq!(s.raced_end, 1);
        assert_eq!(s.unobserved, 4);
        assert_eq!(s.not_found, 2);
        assert_eq!(s.terminated_after_404, 1);
        let other: Vec<(&str, u64)> = s.other.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            other,
            vec![("401", 1), ("error_timeout", 1), ("no_answer", 1)]
        );
        assert_eq!(s.failures(), 4 + 1 + 3);
        // The earliest failure, described.
        assert_eq!(
            s.first_failure.as_deref(),
            Some("DELETE u1 answered 200 but its client saw session_end none, close 1000")
        );
        // Nothing sent: nothing wrong.
        let none = reconcile(&HashMap::new(), &HashMap::new());
        assert_eq!(none, DeleteSummary::default());
        assert_eq!(none.failures(), 0);
    }

    #[test]
    fn session_paths_are_encoded() {
        assert_eq!(session_path("0b7e-AZ_9.~"), "/v1/sessions/0b7e-AZ_9.~");
        assert_eq!(session_path("a b/c?"), "/v1/sessions/a%20b%2Fc%3F");
        assert_eq!(session_path(""), "/v1/sessions/");
    }
}
