//! `GET /metrics`: strict parsing of the Prometheus text format 0.0.4, and
//! counters that move.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::support::{eventually, fixture, fixture_pcm, get, post, Raw, Server, Ws};

/// One sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse the exposition strictly; panics with the offending line.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, tail) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line}"));
            assert!(is_metric_name(name), "bad name in {line}");
            match keyword {
                Some("HELP") => assert!(tail.is_some_and(|t| !t.is_empty()), "empty HELP: {line}"),
                Some("TYPE") => {
                    let kind = tail.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(is_metric_name(name), "bad name: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        if kind == "counter" {
            assert!(family.ends_with("_total"), "counters end in _total: {line}");
            assert!(value >= 0.0);
        }
        assert!(name.starts_with("transcribe_"), "{line}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label: {line}"));
        assert!(
            is_metric_name(key) && !key.contains(':'),
            "bad label name: {line}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape: {line}"),
                },
                Some((index, '"')) => break index,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        assert!(
            labels.insert(key.to_string(), value).is_none(),
            "label twice: {line}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// A series' labels other than `le`.
type LabelSet = Vec<(String, String)>;

/// Buckets ascend in `le`, counts never fall, `+Inf` equals `_count`.
fn assert_histograms_consistent(types: &HashMap<String, String>, samples: &[Sample]) {
    for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
        let bucket_name = format!("{family}_bucket");
        let mut series: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples.iter().filter(|s| s.name == bucket_name) {
            let le = sample.labels.get("le").expect("le label");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("numeric le")
            };
            let key: LabelSet = sample
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, sample.value));
        }
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} {key:?}: {buckets:?}"
            );
            let inf = buckets.last().expect("buckets");
            assert!(inf.0.is_infinite());
            let labels: Vec<(&str, &str)> =
                key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(
                value(samples, &format!("{family}_count"), &labels),
                Some(inf.1),
                "{family} {key:?}"
            );
        }
    }
}

#[test]
fn metrics_parse_strictly_and_counters_move() {
    let server = Server::start(&["--cores", "2"]);
    let reply = get(&server, "/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (types, _) = parse(&reply.text());
    for family in [
        "transcribe_http_requests_total",
        "transcribe_sessions_closed_total",
        "transcribe_transcripts_total",
        "transcribe_reactor_stalls_total",
        "transcribe_model_queue_depth",
        "transcribe_sessions",
        "transcribe_final_latency_seconds",
        "transcribe_model_latency_seconds",
        "transcribe_model_queue_wait_seconds",
        "transcribe_interim_latency_seconds",
        "transcribe_http_request_duration_seconds",
    ] {
        assert!(types.contains_key(family), "{family} missing");
    }

    assert_eq!(
        post(
            &server,
            "/v1/transcribe",
            "audio/wav",
            &fixture("two_utterances.wav"),
            &[]
        )
        .status,
        200
    );
    let mut ws = Ws::connect(&server, "");
    ws.stream_audio(&fixture_pcm("two_utterances.wav"), 640);
    ws.send_text(r#"{"type":"end"}"#);
    ws.read_to_close();

    let moved = eventually(Duration::from_secs(10), || {
        let (types, samples) = parse(&get(&server, "/metrics").text());
        assert_histograms_consistent(&types, &samples);
        value(
            &samples,
            "transcribe_http_requests_total",
            &[("route", "transcribe"), ("status", "200")],
        ) == Some(1.0)
            && value(
                &samples,
                "transcribe_sessions_closed_total",
                &[("reason", "client_end")],
            ) == Some(1.0)
            && value(
                &samples,
                "transcribe_transcripts_total",
                &[("kind", "final")],
            ) == Some(2.0)
            && value(&samples, "transcribe_model_jobs_total", &[]) >= Some(4.0)
            && value(&samples, "transcribe_stream_audio_seconds_total", &[]) > Some(4.9)
            && value(&samples, "transcribe_model_latency_seconds_count", &[]) >= Some(4.0)
            && value(&samples, "transcribe_final_latency_seconds_count", &[]) == Some(2.0)
            && value(
                &samples,
                "transcribe_http_request_duration_seconds_count",
                &[("route", "transcribe")],
            ) == Some(1.0)
    });
    assert!(moved, "{}", get(&server, "/metrics").text());
}

#[test]
fn metrics_need_the_admin_key_when_one_is_set() {
    let server = Server::start(&["--admin-key", "adm"]);
    assert_eq!(get(&server, "/metrics").status, 401);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer adm\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 200);
}
