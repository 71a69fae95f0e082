//! The shipping recipes of `deploy/` checked against what the server does:
//! the Kubernetes manifests (probes on the right endpoints, preStop and
//! termination grace covering the drain, resources, a disruption budget,
//! the cluster settings), the systemd unit (its fields, and
//! `systemd-analyze verify` where systemd is installed), and the container
//! recipe (stages, user, volume, health check). Every `TRANSCRIBE_*`
//! variable they set must be one the server's `--help` documents.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// The server's `--help`, where every variable is named.
fn help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_transcription-server"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_known_variables<'a>(names: impl IntoIterator<Item = &'a str>, what: &str) {
    let help = help();
    let mut checked = 0;
    for name in names.into_iter().filter(|n| n.starts_with("TRANSCRIBE_")) {
        // --help hides the values of secret variables but names them all.
        assert!(
            help.contains(&format!("env: {name}")) || help.contains(&format!("env: {name}=")),
            "{what} sets {name}, which the server does not read"
        );
        checked += 1;
    }
    assert!(checked > 3, "{what}: only {checked} TRANSCRIBE_ variables");
}

fn seconds(value: &str) -> f64 {
    value
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("not seconds: {value}"))
}

#[test]
fn the_kubernetes_manifests_probe_drain_and_bound_the_pods() {
    let list: Value =
        serde_json::from_str(&read("deploy/kubernetes/transcription-server.json")).expect("JSON");
    let items = list["items"].as_array().expect("a List");
    let of_kind = |kind: &str| {
        items
            .iter()
            .find(|item| item["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let deployment = of_kind("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = &pod["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/v1/ready",
        "readiness must follow /v1/ready (503 while loading and draining)"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/v1/health",
        "liveness must stay 200 while draining"
    );
    let env: HashMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|entry| (entry["name"].as_str().expect("name"), entry))
        .collect();
    let value = |name: &str| -> f64 {
        seconds(
            env.get(name)
                .and_then(|entry| entry["value"].as_str())
                .unwrap_or_else(|| panic!("no {name}")),
        )
    };
    // SIGTERM waits for preStop; then the drain delay and the grace; the
    // kubelet must not SIGKILL before.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("a preStop command");
    assert_eq!(pre_stop[0], "/bin/sleep");
    let pre_stop_s = seconds(pre_stop[1].as_str().expect("seconds"));
    let drain_s =
        value("TRANSCRIBE_DRAIN_DELAY_SECONDS") + value("TRANSCRIBE_SHUTDOWN_GRACE_SECONDS");
    let termination = pod["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("grace");
    assert!(
        termination > pre_stop_s + drain_s,
        "terminationGracePeriodSeconds {termination} <= preStop {pre_stop_s} + drain {drain_s}"
    );
    // Resources: requests per core the server runs.
    let cores = value("TRANSCRIBE_CORES");
    let cpu = seconds(
        container["resources"]["requests"]["cpu"]
            .as_str()
            .expect("a cpu request"),
    );
    assert!(cpu >= cores, "{cpu} CPUs requested for {cores} cores");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    // Non-root, as the image is built.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    // The scale-out tier: Redis (from a secret), a cluster bound, a node id
    // and URL per pod.
    assert!(env["TRANSCRIBE_REDIS_URL"]["valueFrom"]["secretKeyRef"].is_object());
    assert!(value("TRANSCRIBE_CLUSTER_MAX_SESSIONS") >= value("TRANSCRIBE_MAX_SESSIONS"));
    assert!(env["TRANSCRIBE_NODE_ID"]["value"]
        .as_str()
        .is_some_and(|id| id.contains("POD_NAME")));
    assert!(env.contains_key("TRANSCRIBE_ADVERTISE_URL"));
    assert_known_variables(env.keys().copied(), "the Deployment");
    // A disruption budget over the same pods.
    let budget = of_kind("PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
    assert!(
        budget["spec"]["maxUnavailable"].is_number() || budget["spec"]["minAvailable"].is_number()
    );
    assert_eq!(&of_kind("Service")["spec"]["selector"], labels);
}

/// `[Service]` keys of the unit (repeated keys keep every value).
fn unit_service_keys(unit: &str) -> HashMap<String, Vec<String>> {
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    let mut section = "";
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (key, value) = line.split_once('=').expect("key=value");
            keys.entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    keys
}

#[test]
fn the_systemd_unit_drains_within_its_stop_timeout_and_is_hardened() {
    let unit = read("deploy/systemd/transcription-server.service");
    let keys = unit_service_keys(&unit);
    let one = |key: &str| -> &str {
        keys.get(key)
            .and_then(|values| values.last())
            .unwrap_or_else(|| panic!("no {key}="))
    };
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_ne!(one("User"), "root");
    let environment: HashMap<&str, &str> = keys["Environment"]
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .collect();
    let drain_s = seconds(environment["TRANSCRIBE_DRAIN_DELAY_SECONDS"])
        + seconds(environment["TRANSCRIBE_SHUTDOWN_GRACE_SECONDS"]);
    let stop_s = seconds(one("TimeoutStopSec"));
    assert!(
        stop_s > drain_s,
        "TimeoutStopSec {stop_s} <= drain {drain_s}"
    );
    let max_sessions: u64 = environment["TRANSCRIBE_MAX_SESSIONS"]
        .parse()
        .expect("number");
    let files: u64 = one("LimitNOFILE").parse().expect("number");
    assert!(
        files >= 4 * max_sessions,
        "LimitNOFILE {files} for {max_sessions} sessions"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(one("RestrictAddressFamilies").contains("AF_INET6"));
    assert_known_variables(environment.keys().copied(), "the unit");
    // Where systemd is installed, its own parser reads the unit too.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|probe| probe.status.success())
    {
        systemd_analyze_verify();
    } else {
        eprintln!("systemd-analyze is not installed: the unit's fields were checked, not its syntax by systemd");
    }
}

/// `systemd-analyze verify` on the unit, with `ExecStart` pointed at the
/// binary just built (verify checks that it exists): no complaint may name
/// the unit.
fn systemd_analyze_verify() {
    let unit = read("deploy/systemd/transcription-server.service").replace(
        "ExecStart=/usr/local/bin/transcription-server",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_transcription-server")),
    );
    let dir = std::env::temp_dir().join(format!("transcription-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("transcription-server.service");
    std::fs::write(&path, unit).expect("write the unit");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify:\n{stderr}");
    // Lines about the host (no running systemd in a container, other units)
    // are not about this unit; everything naming it must be absent.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("transcription-server.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn the_container_recipe_builds_in_stages_and_runs_unprivileged() {
    let recipe = read("deploy/Containerfile");
    let lines: Vec<&str> = recipe
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    assert!(
        froms
            .last()
            .is_some_and(|from| from.contains("debian:bookworm-slim")),
        "runs on slim Debian: {froms:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("ARG FEATURES")));
    assert!(recipe.contains("--features \"${FEATURES}\""));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(
        !user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"),
        "{user}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("VOLUME") && l.contains("/models")));
    let health = recipe
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK")
        .lines()
        .take(2)
        .collect::<String>();
    assert!(health.contains("/v1/ready"), "{health}");
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"));
    let variables: Vec<&str> = recipe
        .split(|c: char| c.is_whitespace() || c == '=')
        .filter(|word| word.starts_with("TRANSCRIBE_"))
        .collect();
    assert_known_variables(
        variables.iter().copied().chain([
            "TRANSCRIBE_HOST",
            "TRANSCRIBE_PORT",
            "TRANSCRIBE_LOG_FORMAT",
            "TRANSCRIBE_SHUTDOWN_GRACE_SECONDS",
        ]),
        "the Containerfile",
    );
}
