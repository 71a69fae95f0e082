//! Safe wrappers over our C shim to CTranslate2's Whisper
//! (native/ct2_shim.{h,cpp}, compiled by build.rs with the `ct2` feature and
//! linked to the prebuilt libctranslate2 of the PyPI wheel).
//!
//! The shim catches every C++ exception and reports it as a NULL result and
//! a message in a buffer we pass; these wrappers turn that into `Err(String)`
//! and own every returned object (freed on drop).

use std::ffi::{c_char, c_int, c_long, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;

#[repr(C)]
struct RawModel {
    _private: [u8; 0],
}
#[repr(C)]
struct RawReplica {
    _private: [u8; 0],
}
#[repr(C)]
struct RawEncoded {
    _private: [u8; 0],
}
#[repr(C)]
struct RawResults {
    _private: [u8; 0],
}
#[repr(C)]
struct RawAlignment {
    _private: [u8; 0],
}

/// Decoding options (`ct2s_options`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub beam_size: usize,
    pub max_length: usize,
    pub sampling_temperature: f32,
    pub sampling_topk: usize,
}

extern "C" {
    fn ct2s_model_load(
        dir: *const c_char,
        compute_type: *const c_char,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawModel;
    fn ct2s_model_free(model: *mut RawModel);
    fn ct2s_set_num_threads(threads: usize);
    fn ct2s_replica_new(
        model: *const RawModel,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawReplica;
    fn ct2s_replica_free(replica: *mut RawReplica);
    fn ct2s_replica_multilingual(replica: *const RawReplica) -> c_int;
    fn ct2s_replica_n_mels(replica: *const RawReplica) -> usize;
    fn ct2s_encode(
        replica: *mut RawReplica,
        features: *const f32,
        batch: usize,
        n_mels: usize,
        frames: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawEncoded;
    fn ct2s_encoded_free(encoded: *mut RawEncoded);
    fn ct2s_detect_language(
        replica: *mut RawReplica,
        encoded: *const RawEncoded,
        out: *mut c_char,
        out_len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn ct2s_generate(
        replica: *mut RawReplica,
        encoded: *const RawEncoded,
        prompt: *const usize,
        prompt_len: usize,
        options: *const Options,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawResults;
    fn ct2s_results_count(results: *const RawResults) -> usize;
    fn ct2s_results_ids(results: *const RawResults, item: usize, ids: *mut *const usize) -> usize;
    fn ct2s_results_score(results: *const RawResults, item: usize) -> f32;
    fn ct2s_results_no_speech(results: *const RawResults, item: usize) -> f32;
    fn ct2s_results_free(results: *mut RawResults);
    #[allow(clippy::too_many_arguments)]
    fn ct2s_align(
        replica: *mut RawReplica,
        encoded: *const RawEncoded,
        start_sequence: *const usize,
        start_len: usize,
        tokens: *const usize,
        lengths: *const usize,
        num_frames: *const usize,
        batch: usize,
        median_filter_width: c_long,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut RawAlignment;
    fn ct2s_alignment_path(
        alignment: *const RawAlignment,
        item: usize,
        pairs: *mut *const c_long,
    ) -> usize;
    fn ct2s_alignment_free(alignment: *mut RawAlignment);
}

/// A buffer for the shim's error messages.
struct ErrorBuffer([c_char; 512]);

impl ErrorBuffer {
    fn new() -> ErrorBuffer {
        ErrorBuffer([0; 512])
    }

    fn ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr()
    }

    fn message(&self, what: &str) -> String {
        // SAFETY: the buffer starts zeroed and the shim writes at most
        // len - 1 bytes followed by a NUL, so it always holds a C string.
        let text = unsafe { CStr::from_ptr(self.0.as_ptr()) };
        let text = text.to_string_lossy();
        if text.is_empty() {
            format!("CTranslate2 {what} failed")
        } else {
            format!("CTranslate2 {what}: {text}")
        }
    }
}

/// Set the calling thread's CTranslate2 thread count (OpenMP, MKL).
pub fn set_num_threads(threads: usize) {
    // SAFETY: a plain call with a value; the shim catches exceptions.
    unsafe { ct2s_set_num_threads(threads.max(1)) }
}

/// A loaded CTranslate2 Whisper model on the CPU: the weights, shared by
/// every [`Replica`] made from it.
pub struct Model(NonNull<RawModel>);

// SAFETY: the shim's model is a `shared_ptr<const Model>`: immutable after
// load, and CTranslate2 shares it between replicas on several threads.
unsafe impl Send for Model {}
// SAFETY: as above; only const methods are reached through `&Model`.
unsafe impl Sync for Model {}

impl Model {
    /// Load the model directory `dir` with weights in `compute_type`
    /// (`int8`, `int8_float32`, `float32`, …).
    ///
    /// # Errors
    /// CTranslate2's message (a missing file, an unknown compute type, …).
    pub fn load(dir: &Path, compute_type: &str) -> Result<Model, String> {
        let dir = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| "the model path holds a NUL byte".to_string())?;
        let compute = CString::new(compute_type)
            .map_err(|_| "the compute type holds a NUL byte".to_string())?;
        let mut error = ErrorBuffer::new();
        // SAFETY: both strings are valid NUL-terminated C strings that live
        // across the call; the error buffer is 512 bytes, as passed.
        let raw = unsafe { ct2s_model_load(dir.as_ptr(), compute.as_ptr(), error.ptr(), 512) };
        NonNull::new(raw)
            .map(Model)
            .ok_or_else(|| error.message("load"))
    }

    /// A new replica (encoder and decoder state) over these weights.
    ///
    /// # Errors
    /// CTranslate2's message.
    pub fn replica(&self) -> Result<Replica, String> {
        let mut error = ErrorBuffer::new();
        // SAFETY: `self.0` is a live model; the buffer is 512 bytes.
        let raw = unsafe { ct2s_replica_new(self.0.as_ptr(), error.ptr(), 512) };
        NonNull::new(raw)
            .map(Replica)
            .ok_or_else(|| error.message("replica"))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: owned, freed once; replicas hold their own reference to
        // the weights (a shared_ptr), so they outlive this handle safely.
        unsafe { ct2s_model_free(self.0.as_ptr()) }
    }
}

/// One worker's Whisper: runs encode, generate and align on the calling
/// thread.
pub struct Replica(NonNull<RawReplica>);

// SAFETY: a replica is used by one thread at a time (`&mut self` for every
// computation); CTranslate2 replicas are moved between threads by its own
// pools too.
unsafe impl Send for Replica {}

/// A batch's encoder output, for [`Replica::generate`] and [`Replica::align`].
pub struct Encoded(NonNull<RawEncoded>);

impl Drop for Encoded {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { ct2s_encoded_free(self.0.as_ptr()) }
    }
}

/// One batch item's decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The best sequence's token ids (the prompt excluded).
    pub ids: Vec<usize>,
    /// Its log probability, normalised by length.
    pub score: f32,
    /// The probability of Whisper's "no speech" token.
    pub no_speech: f32,
}

impl Replica {
    /// Whether the model speaks more than English.
    pub fn is_multilingual(&self) -> bool {
        // SAFETY: `self.0` is a live replica.
        unsafe { ct2s_replica_multilingual(self.0.as_ptr()) != 0 }
    }

    /// Mel bands the model takes.
    pub fn n_mels(&self) -> usize {
        // SAFETY: `self.0` is a live replica.
        unsafe { ct2s_replica_n_mels(self.0.as_ptr()) }
    }

    /// Encode `batch` items of `n_mels × frames` features.
    ///
    /// # Errors
    /// A size mismatch, or CTranslate2's message.
    pub fn encode(
        &mut self,
        features: &[f32],
        batch: usize,
        n_mels: usize,
        frames: usize,
    ) -> Result<Encoded, String> {
        let expected = batch
            .checked_mul(n_mels)
            .and_then(|n| n.checked_mul(frames))
            .ok_or("features too large")?;
        if batch == 0 || features.len() != expected {
            return Err(format!(
                "features: {} values for {batch} × {n_mels} × {frames}",
                features.len()
            ));
        }
        let mut error = ErrorBuffer::new();
        // SAFETY: `features` holds exactly batch × n_mels × frames values
        // (checked above) and outlives the call; the shim only reads them.
        let raw = unsafe {
            ct2s_encode(
                self.0.as_ptr(),
                features.as_ptr(),
                batch,
                n_mels,
                frames,
                error.ptr(),
                512,
            )
        };
        NonNull::new(raw)
            .map(Encoded)
            .ok_or_else(|| error.message("encode"))
    }

    /// The most likely language token (`<|en|>`) of the first item.
    ///
    /// # Errors
    /// CTranslate2's message.
    pub fn detect_language(&mut self, encoded: &Encoded) -> Result<String, String> {
        let mut error = ErrorBuffer::new();
        let mut out = ErrorBuffer::new();
        // SAFETY: live replica and encoding; both buffers are 512 bytes.
        let status = unsafe {
            ct2s_detect_language(
                self.0.as_ptr(),
                encoded.0.as_ptr(),
                out.ptr(),
                512,
                error.ptr(),
                512,
            )
        };
        if status != 0 {
            return Err(error.message("language detection"));
        }
        // SAFETY: the shim wrote a NUL-terminated string (the buffer starts
        // zeroed).
        let text = unsafe { CStr::from_ptr(out.0.as_ptr()) };
        Ok(text.to_string_lossy().into_owned())
    }

    /// Decode every item of `encoded` after the same `prompt`.
    ///
    /// # Errors
    /// CTranslate2's message.
    pub fn generate(
        &mut self,
        encoded: &Encoded,
        prompt: &[usize],
        options: &Options,
    ) -> Result<Vec<Generated>, String> {
        let mut error = ErrorBuffer::new();
        // SAFETY: live replica and encoding; `prompt` has `prompt.len()`
        // ids and `options` is a valid struct, both read during the call.
        let raw = unsafe {
            ct2s_generate(
                self.0.as_ptr(),
                encoded.0.as_ptr(),
                prompt.as_ptr(),
                prompt.len(),
                options,
                error.ptr(),
                512,
            )
        };
        let results = NonNull::new(raw).ok_or_else(|| error.message("decode"))?;
        let mut out = Vec::new();
        // SAFETY: `results` is live until freed at the end; each id pointer
        // is valid for the count returned with it, and copied before free.
        unsafe {
            let count = ct2s_results_count(results.as_ptr());
            for item in 0..count {
                let mut ids: *const usize = std::ptr::null();
                let n = ct2s_results_ids(results.as_ptr(), item, &mut ids);
                let ids = if ids.is_null() || n == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(ids, n).to_vec()
                };
                out.push(Generated {
                    ids,
                    score: ct2s_results_score(results.as_ptr(), item),
                    no_speech: ct2s_results_no_speech(results.as_ptr(), item),
                });
            }
            ct2s_results_free(results.as_ptr());
        }
        Ok(out)
    }

    /// Align each item's `texts` tokens with its audio (`frames` mel frames
    /// of speech each): the (token index, encoder position) path.
    ///
    /// # Errors
    /// Mismatched lengths, or CTranslate2's message.
    pub fn align(
        &mut self,
        encoded: &Encoded,
        start_sequence: &[usize],
        texts: &[Vec<usize>],
        frames: &[usize],
        median_filter_width: i64,
    ) -> Result<Vec<Vec<(i64, i64)>>, String> {
        if texts.len() != frames.len() || texts.is_empty() {
            return Err("align: one frame count per text".into());
        }
        let tokens: Vec<usize> = texts.iter().flatten().copied().collect();
        let lengths: Vec<usize> = texts.iter().map(Vec::len).collect();
        let mut error = ErrorBuffer::new();
        // SAFETY: every slice is live for the call and sized as passed
        // (`lengths` sums to `tokens.len()`, one length and one frame count
        // per item).
        let raw = unsafe {
            ct2s_align(
                self.0.as_ptr(),
                encoded.0.as_ptr(),
                start_sequence.as_ptr(),
                start_sequence.len(),
                tokens.as_ptr(),
                lengths.as_ptr(),
                frames.as_ptr(),
                texts.len(),
                c_long::try_from(median_filter_width).unwrap_or(7),
                error.ptr(),
                512,
            )
        };
        let alignment = NonNull::new(raw).ok_or_else(|| error.message("align"))?;
        let mut out = Vec::with_capacity(texts.len());
        // SAFETY: `alignment` is live until freed at the end; each path
        // pointer is valid for 2 × count longs, copied before free.
        unsafe {
            for item in 0..texts.len() {
                let mut pairs: *const c_long = std::ptr::null();
                let n = ct2s_alignment_path(alignment.as_ptr(), item, &mut pairs);
                let path = if pairs.is_null() || n == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(pairs, 2 * n)
                        .chunks_exact(2)
                        .map(|pair| (pair[0], pair[1]))
                        .collect()
                };
                out.push(path);
            }
            ct2s_alignment_free(alignment.as_ptr());
        }
        Ok(out)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { ct2s_replica_free(self.0.as_ptr()) }
    }
}
