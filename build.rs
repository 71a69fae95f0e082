//! Feature `ct2`: compile our C shim over CTranslate2 (native/ct2_shim.cpp)
//! against CTranslate2's headers and link it to the prebuilt library that
//! scripts/fetch-ct2.sh takes out of the PyPI wheel. Without the feature,
//! nothing happens.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CT2_PREBUILT_DIR");
    if std::env::var_os("CARGO_FEATURE_CT2").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let prebuilt = std::env::var_os("CT2_PREBUILT_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                manifest.join(dir)
            }
        })
        .unwrap_or_else(|| manifest.join("native/ct2-prebuilt"));
    let include = prebuilt.join("include");
    let lib = prebuilt.join("lib");
    if !include.join("ctranslate2/models/whisper.h").is_file()
        || !lib.join("libctranslate2.so").exists()
    {
        panic!(
            "feature ct2: CTranslate2's library and headers are not in {} (run scripts/fetch-ct2.sh)",
            prebuilt.display()
        );
    }
    println!("cargo:rerun-if-changed=native/ct2_shim.cpp");
    println!("cargo:rerun-if-changed=native/ct2_shim.h");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("native/ct2_shim.cpp")
        .include(&include)
        .include("native")
        .warnings(false)
        .compile("ct2_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=ctranslate2");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    // Binaries and tests find the library where the script put it.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
