#![no_main]

use std::collections::BTreeSet;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

/// Panic locations already reported.
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fuzz_target!(
    init: {
        // `audio::decode` runs symphonia under `catch_unwind` on purpose (a
        // panic there reads as "cannot decode"), but libFuzzer's hook aborts
        // at the panic, before the catch. This hook only reports each panic
        // location once; a panic that escapes `decode` still reaches the
        // `catch_unwind` of libfuzzer-sys, which aborts: a finding as usual.
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map_or_else(|| "unknown".to_string(), ToString::to_string);
            let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.insert(location.clone()) {
                eprintln!("PANIC (caught inside the code under test, or escaping: see below) at {location}: {info}");
            }
        }));
    },
    |data: &[u8]| fuzz_harness::audio_decode(data)
);
