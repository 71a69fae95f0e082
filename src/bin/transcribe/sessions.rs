//! `transcribe sessions`: the operators' view of the server, from
//! `GET /v1/sessions` and `GET /v1/sessions/metrics` (admin key), as a table
//! and a summary; `--watch` redraws it every second; `--delete ID` ends a
//! session (`DELETE /v1/sessions/{id}`).
//!
//! Rendering ([`render_table`], [`render_metrics`]) is pure, on the JSON the
//! server answers, so that a field the server adds later is ignored and one it
//! leaves out shows as `-`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{Client, KeyRole};
use crate::error::{output_error, CliError, FailureKind};

/// Clear the screen and put the cursor home.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// What `transcribe sessions` was asked to do.
pub struct SessionsRequest {
    pub watch: bool,
    pub interval: Duration,
    pub json: bool,
    pub state: Option<String>,
    pub cluster: bool,
    pub delete: Option<String>,
}

/// Show the sessions once, or until interrupted with `--watch`, or delete one.
///
/// # Errors
/// Connect, auth and server failures (with `--watch`, a server that goes away
/// is shown in the view and retried instead).
pub fn run(client: &Client, request: &SessionsRequest) -> Result<(), CliError> {
    if let Some(id) = &request.delete {
        return delete(client, id);
    }
    if !request.watch {
        let frame = snapshot(client, request)?;
        return print(&frame);
    }
    let terminal = std::io::stdout().is_terminal();
    loop {
        let started = Instant::now();
        let body = match snapshot(client, request) {
            Ok(frame) => frame,
            Err(error) if error.kind == FailureKind::Connect => {
                format!("{} (retrying)\n", error.message)
            }
            Err(error) => return Err(error),
        };
        let header = format!(
            "{} sessions at {}, every {} s (Ctrl-C to stop)\n\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            client.endpoint.base,
            request.interval.as_secs_f64()
        );
        let frame = if terminal {
            format!("{CLEAR_SCREEN}{header}{body}")
        } else {
            format!("{header}{body}\n")
        };
        print(&frame)?;
        std::thread::sleep(request.interval.saturating_sub(started.elapsed()));
    }
}

/// One rendering of the sessions and the metrics.
fn snapshot(client: &Client, request: &SessionsRequest) -> Result<String, CliError> {
    let mut list_path = String::from("/v1/sessions");
    let mut query = Vec::new();
    if let Some(state) = &request.state {
        query.push(format!("state={state}"));
    }
    if request.cluster {
        query.push("scope=cluster".to_string());
    }
    if !query.is_empty() {
        list_path.push('?');
        list_path.push_str(&query.join("&"));
    }
    let metrics_path = if request.cluster {
        "/v1/sessions/metrics?scope=cluster"
    } else {
        "/v1/sessions/metrics"
    };
    let list = get_json(client, &list_path)?;
    let metrics = get_json(client, metrics_path)?;
    if request.json {
        let both = serde_json::json!({"sessions": list, "metrics": metrics});
        return Ok(format!("{both}\n"));
    }
    Ok(format!(
        "{}\n{}",
        render_table(&list),
        render_metrics(&metrics)
    ))
}

fn get_json(client: &Client, path: &str) -> Result<Value, CliError> {
    let request = client.request("GET", path, KeyRole::Admin);
    let body = client.call(request, None, KeyRole::Admin)?;
    serde_json::from_str(&body)
        .map_err(|error| CliError::server(format!("the answer to GET {path} is not JSON: {error}")))
}

fn delete(client: &Client, id: &str) -> Result<(), CliError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(CliError::usage(format!(
            "--delete {id:?}: a session id is letters, digits and dashes"
        )));
    }
    let path = format!("/v1/sessions/{id}");
    let request = client.request("DELETE", &path, KeyRole::Admin);
    let body = client.call(request, None, KeyRole::Admin)?;
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let state = answer["state"].as_str().unwrap_or("closed");
    print(&format!("session {id}: {state}\n"))
}

fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(output_error)
}

/// One column of the table: its heading, how to get a cell from a session
/// object, and whether it is a number (right-aligned).
struct Column {
    heading: &'static str,
    cell: fn(&Value) -> String,
    numeric: bool,
}

fn text_field(session: &Value, name: &str) -> String {
    match &session[name] {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn seconds_field(session: &Value, name: &str) -> String {
    session[name]
        .as_f64()
        .map_or_else(|| "-".into(), |seconds| format!("{seconds:.1}"))
}

/// `HH:MM:SS` of an RFC 3339 time, or the time as given.
fn clock_time(session: &Value, name: &str) -> String {
    let text = text_field(session, name);
    match text.get(11..19) {
        Some(time) if text.as_bytes().get(10) == Some(&b'T') => time.to_string(),
        _ => text,
    }
}

const COLUMNS: [Column; 10] = [
    Column {
        heading: "SESSION",
        cell: |s| text_field(s, "session_id"),
        numeric: false,
    },
    Column {
        heading: "STATE",
        cell: |s| text_field(s, "state"),
        numeric: false,
    },
    Column {
        heading: "CORE",
        cell: |s| text_field(s, "core"),
        numeric: true,
    },
    Column {
        heading: "CREATED",
        cell: |s| clock_time(s, "created_at"),
        numeric: false,
    },
    Column {
        heading: "IDLE_S",
        cell: |s| seconds_field(s, "idle_s"),
        numeric: true,
    },
    Column {
        heading: "AUDIO_S",
        cell: |s| seconds_field(s, "audio_seconds"),
        numeric: true,
    },
    Column {
        heading: "CHUNKS",
        cell: |s| text_field(s, "chunks"),
        numeric: true,
    },
    Column {
        heading: "SEGMENTS",
        cell: |s| text_field(s, "segments"),
        numeric: true,
    },
    Column {
        heading: "TRANSCRIPTS",
        cell: |s| text_field(s, "transcripts"),
        numeric: true,
    },
    Column {
        heading: "PEER",
        cell: |s| text_field(s, "peer"),
        numeric: false,
    },
];

/// The node column, shown only in cluster mode (when sessions carry `node`).
const NODE_COLUMN: Column = Column {
    heading: "NODE",
    cell: |s| text_field(s, "node"),
    numeric: false,
};

/// The table of `GET /v1/sessions`, a row per session, columns aligned.
pub fn render_table(list: &Value) -> String {
    let empty = Vec::new();
    let sessions = list["sessions"].as_array().unwrap_or(&empty);
    let mut columns: Vec<&Column> = COLUMNS.iter().collect();
    if sessions.iter().any(|session| !session["node"].is_null()) {
        columns.insert(3, &NODE_COLUMN);
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|session| {
            columns
                .iter()
                .map(|column| (column.cell)(session))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            rows.iter()
                .map(|row| row[index].chars().count())
                .chain([column.heading.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let headings: Vec<String> = columns.iter().map(|c| c.heading.to_string()).collect();
    for row in std::iter::once(&headings).chain(rows.iter()) {
        let cells: Vec<String> = row
            .iter()
            .zip(&columns)
            .zip(&widths)
            .map(|((cell, column), &width)| {
                if column.numeric {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if sessions.is_empty() {
        out.push_str("(no sessions)\n");
    }
    out
}

/// The summary of `GET /v1/sessions/metrics`: sessions, then work and
/// latency.
pub fn render_metrics(metrics: &Value) -> String {
    let number = |value: &Value| match value {
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let by_state = &metrics["by_state"];
    let final_latency = &metrics["latency_ms"]["final"];
    let latency = |name: &str| {
        final_latency[name]
            .as_f64()
            .map_or_else(|| "-".into(), |ms| format!("{ms:.1}"))
    };
    format!(
        "sessions: {} live ({} created, {} active, {} closing) of {} max; {} opened, {} closed, {} rejected, {} idle timeouts\n\
         audio: {} s in {} chunks; {} segments, {} transcripts; final latency ms p50 {} p90 {} p99 {} max {}\n",
        number(&metrics["active_sessions"]),
        number(&by_state["created"]),
        number(&by_state["active"]),
        number(&by_state["closing"]),
        number(&metrics["max_sessions"]),
        number(&metrics["total_created"]),
        number(&metrics["total_closed"]),
        number(&metrics["rejected"]),
        number(&metrics["idle_timeouts"]),
        metrics["audio_seconds"]
            .as_f64()
            .map_or_else(|| "-".into(), |seconds| format!("{seconds:.1}")),
        number(&metrics["chunks"]),
        number(&metrics["segments"]),
        number(&metrics["transcripts"]),
        latency("p50"),
        latency("p90"),
        latency("p99"),
        latency("max"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Value {
        serde_json::json!({"count": 1, "sessions": [
            {"session_id": "0b7e", "state": "active", "core": 1,
             "created_at": "2026-11-24T10:00:00.000Z", "last_activity_at": "2026-11-24T10:00:04.980Z",
             "idle_s": 0.02, "audio_bytes": 160000, "audio_seconds": 5.0, "chunks": 250,
             "segments": 2, "transcripts": 5, "peer": "127.0.0.1:51234"}]})
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let table = render_table(&list());
        assert_eq!(
            table,
            "SESSION  STATE   CORE  CREATED   IDLE_S  AUDIO_S  CHUNKS  SEGMENTS  TRANSCRIPTS  PEER\n\
             0b7e     active     1  10:00:00     0.0      5.0     250         2            5  127.0.0.1:51234\n"
        );
    }

    #[test]
    fn an_empty_list_says_so_and_nodes_get_a_column() {
        let table = render_table(&serde_json::json!({"count": 0, "sessions": []}));
        assert!(table.ends_with("(no sessions)\n"), "{table}");
        let mut clustered = list();
        clustered["sessions"][0]["node"] = "a:8000".into();
        let table = render_table(&clustered);
        assert!(
            table.starts_with("SESSION  STATE   CORE  NODE    CREATED"),
            "{table}"
        );
    }

    #[test]
    fn missing_figures_show_as_dashes() {
        let summary = render_metrics(&serde_json::json!({"active_sessions": 3,
            "by_state": {"created": 1, "active": 2, "closing": 0}, "max_sessions": 1000,
            "audio_seconds": 12.34,
            "latency_ms": {"final": {"p50": 1.2, "p90": 2.0, "p99": 4.1, "max": 9.8}}}));
        assert_eq!(
            summary,
            "sessions: 3 live (1 created, 2 active, 0 closing) of 1000 max; - opened, - closed, - rejected, - idle timeouts\n\
             audio: 12.3 s in - chunks; - segments, - transcripts; final latency ms p50 1.2 p90 2.0 p99 4.1 max 9.8\n"
        );
    }
}
