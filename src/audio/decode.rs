//! Decoding of a complete request body into mono PCM16 at a rate the VAD accepts.
//!
//! It receives the body bytes and the format the HTTP layer derived from the
//! `Content-Type` ([`AudioFormat`]), and hands on a [`Pcm`] for segmentation. WAV goes
//! through `hound` (PCM 8/16/24/32-bit, 32-bit float, WAVE_FORMAT_EXTENSIBLE); FLAC,
//! MP3 and Ogg Vorbis (and WAV encodings hound does not read) go through
//! `symphonia`. Every path down-mixes by averaging the channels and resamples rates
//! the VAD does not accept to [`RESAMPLE_TARGET_HZ`]. No input may panic: every length
//! and rate in a header is checked before it is used.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::default::formats::{FlacReader, MpaReader, OggReader, WavReader};

use super::resample::resample_i16;
use super::{AudioError, Pcm, VAD_RATES_HZ};

/// Rate that audio at a rate the VAD does not accept is resampled to.
pub const RESAMPLE_TARGET_HZ: u32 = 16_000;
/// Accepted rates for raw PCM16 bodies (the client states the rate).
pub const RAW_RATE_HZ_MIN: u32 = 8_000;
pub const RAW_RATE_HZ_MAX: u32 = 192_000;
/// Accepted rates in container headers; outside this range a header is lying or the
/// audio is not speech we can transcribe.
pub const CONTAINER_RATE_HZ_MIN: u32 = 1_000;
pub const CONTAINER_RATE_HZ_MAX: u32 = 384_000;
/// Longest audio a body may decode to. Compressed formats can expand without bound
/// (an hour of FLAC silence is a few hundred KiB), so the decoder stops here instead
/// of trusting the body size limit: one hour of 48 kHz mono is 330 MiB of PCM16.
pub const DECODED_DURATION_S_MAX: u64 = 3_600;
/// Consecutive undecodable packets after which a compressed stream is abandoned.
const DECODE_ERRORS_MAX: u32 = 64;

const _: () = assert!(RAW_RATE_HZ_MIN <= 8_000 && 48_000 <= RAW_RATE_HZ_MAX);
const _: () = assert!(CONTAINER_RATE_HZ_MIN <= RAW_RATE_HZ_MIN);
const _: () = assert!(RAW_RATE_HZ_MAX <= CONTAINER_RATE_HZ_MAX);

const ERROR_UNKNOWN: AudioError = AudioError::Unsupported(
    "unrecognised audio format; send WAV, FLAC, MP3, Ogg Vorbis or raw PCM16",
);
const ERROR_EMPTY: AudioError = AudioError::Invalid("the audio contains no samples");
const ERROR_TOO_LONG: AudioError = AudioError::Invalid(
    "the audio is longer than 3600 seconds (or 172.8 million samples above 48 kHz)",
);
const ERROR_RATE: AudioError = AudioError::Invalid("the audio has an unusable sample rate");

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE (`audio/wav`, `audio/x-wav`, `audio/wave`).
    Wav,
    /// Headerless little-endian PCM16 mono (`audio/pcm`, `audio/L16`).
    RawPcm16 { sample_rate: u32 },
    /// Unknown: decide from the magic bytes (multipart uploads, `audio/*`).
    Sniff,
}

/// Decode a whole body into mono PCM16 at a VAD rate: down-mix any channel count by
/// averaging; a source rate in VAD_RATES_HZ is kept, any other rate is resampled to
/// [`RESAMPLE_TARGET_HZ`].
///
/// # Errors
/// [`AudioError::Unsupported`] when the bytes are not a format we decode;
/// [`AudioError::Invalid`] when the container is recognised but the audio is unusable
/// (an empty body, zero channels, no samples, a zero or absurd sample rate, an odd byte count in raw
/// PCM16, longer than [`DECODED_DURATION_S_MAX`]).
pub fn decode(format: AudioFormat, bytes: &[u8]) -> Result<Pcm, AudioError> {
    // An empty body is empty audio whatever its declared format, not an unknown one.
    if bytes.is_empty() {
        return Err(ERROR_EMPTY);
    }
    let (samples, sample_rate) = match format {
        AudioFormat::Wav => decode_wav(bytes)?,
        AudioFormat::RawPcm16 { sample_rate } => decode_raw(bytes, sample_rate)?,
        AudioFormat::Sniff => match sniff(bytes) {
            Some(Container::Wav) => decode_wav(bytes)?,
            Some(Container::Compressed(extension)) => decode_symphonia(bytes, extension)?,
            None => return Err(ERROR_UNKNOWN),
        },
    };
    decode_finish(samples, sample_rate)
}

/// What the magic bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Wav,
    /// A format for symphonia, named by its usual file extension (a probe hint).
    Compressed(&'static str),
}

/// Recognises a container from its first bytes. Only the start of the body is
/// looked at: scanning further (as symphonia's probe does) finds MP3 frame-sync
/// patterns in arbitrary bytes and "decodes" garbage into noise.
fn sniff(bytes: &[u8]) -> Option<Container> {
    if is_wav(bytes) {
        return Some(Container::Wav);
    }
    if bytes.starts_with(b"fLaC") {
        return Some(Container::Compressed("flac"));
    }
    if bytes.starts_with(b"OggS") {
        return Some(Container::Compressed("ogg"));
    }
    let mp3_frame_sync = bytes.len() >= 4 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0;
    if bytes.starts_with(b"ID3") || mp3_frame_sync {
        return Some(Container::Compressed("mp3"));
    }
    None
}

/// The body without the metadata that symphonia 0.5 would size buffers
/// from before checking it against the bytes present (tags, pictures: a
/// 20-byte FLAC can claim a 4 GB comment, found by `fuzz/` target
/// `audio_decode`). We read none of it. FLAC keeps only its STREAMINFO block;
/// MP3 loses its leading ID3v2 tags; Ogg gets empty comment packets
/// ([`super::ogg`]). Lengths that run past the body are
/// refused here.
fn without_tags(bytes: &[u8]) -> Result<Vec<u8>, AudioError> {
    const CUT: AudioError = AudioError::Invalid("the file's metadata is cut off");
    if let Some(mut rest) = bytes.strip_prefix(b"fLaC") {
        const STREAMINFO: u8 = 0;
        let mut streaminfo: Option<&[u8]> = None;
        loop {
            let [header, l0, l1, l2, ..] = *rest else {
                return Err(CUT);
            };
            let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            let block = rest.get(..4 + len).ok_or(CUT)?;
            if header & 0x7F == STREAMINFO && streaminfo.is_none() {
                streaminfo = Some(block);
            }
            rest = &rest[4 + len..];
            if header & 0x80 != 0 {
                break;
            }
        }
        let streaminfo =
            streaminfo.ok_or(AudioError::Invalid("the FLAC file has no STREAMINFO block"))?;
        let mut out = Vec::with_capacity(4 + streaminfo.len() + rest.len());
        out.extend_from_slice(b"fLaC");
        // The only block left is the last one.
        out.push(streaminfo[0] | 0x80);
        out.extend_from_slice(&streaminfo[1..]);
        out.extend_from_slice(rest);
        return Ok(out);
    }
    if bytes.starts_with(b"OggS") {
        return super::ogg::without_comments(bytes);
    }
    let mut rest = bytes;
    // ID3v2: "ID3", version (2), flags, size (4 bytes of 7 bits), maybe a footer.
    while rest.len() >= 10 && rest.starts_with(b"ID3") {
        let size = rest[6..10]
            .iter()
            .fold(0usize, |size, byte| size << 7 | usize::from(byte & 0x7F));
        let footer = if rest[5] & 0x10 != 0 { 10 } else { 0 };
        rest = rest.get(10 + size + footer..).ok_or(CUT)?;
    }
    Ok(rest.to_vec())
}

fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// Checks the result of any path and brings it to a VAD rate.
fn decode_finish(samples: Vec<i16>, sample_rate: u32) -> Result<Pcm, AudioError> {
    if samples.is_empty() {
        return Err(ERROR_EMPTY);
    }
    if VAD_RATES_HZ.contains(&sample_rate) {
        return Ok(Pcm {
            samples,
            sample_rate,
        });
    }
    let samples = resample_i16(&samples, sample_rate, RESAMPLE_TARGET_HZ);
    // A handful of samples at a high rate resamples to none at all
    // (`fuzz/` target `audio_decode`, finding resampled-to-nothing).
    if samples.is_empty() {
        return Err(ERROR_EMPTY);
    }
    Ok(Pcm {
        samples,
        sample_rate: RESAMPLE_TARGET_HZ,
    })
}

/// Most mono samples at `sample_rate` a body may decode to: an hour, and
/// never more than an hour at 48 kHz (330 MiB of PCM16), whatever rate a
/// header claims.
fn decoded_samples_max(sample_rate: u32) -> usize {
    (u64::from(sample_rate.min(DECODED_RATE_HZ_BOUND)) * DECODED_DURATION_S_MAX) as usize
}

/// The rate that bounds decoded memory (see [`decoded_samples_max`]).
const DECODED_RATE_HZ_BOUND: u32 = 48_000;

fn decode_raw(bytes: &[u8], sample_rate: u32) -> Result<(Vec<i16>, u32), AudioError> {
    if !(RAW_RATE_HZ_MIN..=RAW_RATE_HZ_MAX).contains(&sample_rate) {
        return Err(AudioError::Invalid(
            "the sample rate of raw PCM16 must be 8000 to 192000 Hz",
        ));
    }
    if bytes.len() % 2 != 0 {
        return Err(AudioError::Invalid(
            "raw PCM16 audio has an odd number of bytes",
        ));
    }
    if bytes.len() / 2 > decoded_samples_max(sample_rate) {
        return Err(ERROR_TOO_LONG);
    }
    let samples = bytes
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Ok((samples, sample_rate))
}

fn decode_wav(bytes: &[u8]) -> Result<(Vec<i16>, u32), AudioError> {
    if !is_wav(bytes) {
        return Err(AudioError::Unsupported("the body is not a RIFF/WAVE file"));
    }
    let reader = match hound::WavReader::new(Cursor::new(bytes)) {
        Ok(reader) => reader,
        // Encodings hound does not read (A-law, µ-law, …) and headers it refuses
        // (a streamed file whose data length is 0xFFFFFFFF) may still be fine for
        // symphonia; only if it fails too is hound's verdict the answer.
        Err(error) => {
            return decode_symphonia(bytes, "wav").map_err(|_| decode_wav_error(error));
        }
    };
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(AudioError::Invalid("the WAV file has zero channels"));
    }
    check_container_rate(spec.sample_rate)?;
    let bytes_per_sample = usize::from(spec.bits_per_sample.div_ceil(8)).max(1);
    let frames_in_body = bytes.len() / (bytes_per_sample * channels);
    let frames_declared = reader.duration() as usize;
    let frames = frames_declared.min(frames_in_body);
    if frames > decoded_samples_max(spec.sample_rate) {
        return Err(ERROR_TOO_LONG);
    }
    let mut mono = Downmix::new(channels, frames);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => {
            // The common case, read straight from the body: going through
            // hound a sample at a time costs ~14 ns per sample (benches/audio.rs).
            // hound leaves its reader at the start of the data chunk.
            let offset = usize::try_from(reader.into_inner().position())
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let frame_bytes = 2 * channels;
            let data = &bytes[offset..];
            let data = &data[..(frames * frame_bytes).min(data.len() / frame_bytes * frame_bytes)];
            if channels == 1 {
                let samples = data
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                    .collect();
                return Ok((samples, spec.sample_rate));
            }
            for sample in data.chunks_exact(2) {
                mono.push(i32::from(i16::from_le_bytes([sample[0], sample[1]])));
            }
        }
        (hound::SampleFormat::Int, bits @ (8 | 24 | 32)) => {
            // hound returns integers at their own width; shift them to 16 bits.
            for sample in reader.into_samples::<i32>() {
                let Ok(sample) = sample else { break };
                let sample_i16 = match bits {
                    8 => sample << 8,
                    24 => sample >> 8,
                    _ => sample >> 16,
                };
                mono.push(sample_i16);
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for sample in reader.into_samples::<f32>() {
                let Ok(sample) = sample else { break };
                mono.push(f32_to_i16(sample).into());
            }
        }
        _ => {
            return Err(AudioError::Unsupported(
                "unsupported WAV sample format; send PCM 8/16/24/32-bit or 32-bit float",
            ))
        }
    }
    Ok((mono.into_samples(), spec.sample_rate))
}

/// The client-facing reason a WAV header was refused.
fn decode_wav_error(error: hound::Error) -> AudioError {
    match error {
        hound::Error::Unsupported => AudioError::Unsupported(
            "unsupported WAV encoding; send PCM 8/16/24/32-bit or 32-bit float",
        ),
        hound::Error::FormatError(reason) => AudioError::Invalid(reason),
        hound::Error::IoError(_) => AudioError::Invalid("the WAV header is truncated"),
        _ => AudioError::Invalid("the WAV header is malformed"),
    }
}

fn check_container_rate(sample_rate: u32) -> Result<(), AudioError> {
    if (CONTAINER_RATE_HZ_MIN..=CONTAINER_RATE_HZ_MAX).contains(&sample_rate) {
        Ok(())
    } else {
        Err(ERROR_RATE)
    }
}

fn f32_to_i16(sample: f32) -> i16 {
    // NaN becomes 0 (`as` saturates and maps NaN to zero).
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Averages interleaved samples (already scaled to the i16 range) into mono. A
/// trailing partial frame (a truncated file) is dropped.
struct Downmix {
    channels: usize,
    channel: usize,
    sum: i64,
    samples: Vec<i16>,
}

impl Downmix {
    fn new(channels: usize, frames: usize) -> Self {
        Self {
            channels,
            channel: 0,
            sum: 0,
            samples: Vec::with_capacity(frames),
        }
    }

    fn push(&mut self, sample: i32) {
        self.sum += i64::from(sample);
        self.channel += 1;
        if self.channel == self.channels {
            let mean = self.sum / self.channels as i64;
            self.samples
                .push(mean.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16);
            self.channel = 0;
            self.sum = 0;
        }
    }

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn into_samples(self) -> Vec<i16> {
        self.samples
    }
}

/// Decodes FLAC, MP3, Ogg Vorbis (or an odd WAV) with symphonia.
///
/// symphonia is a large decoder fed with client bytes; a panic inside it must not
/// take down the core, so it runs under `catch_unwind` and a panic reads as
/// "cannot decode". Nothing it touches outlives the call, so no state is left
/// half-updated.
fn decode_symphonia(bytes: &[u8], extension: &str) -> Result<(Vec<i16>, u32), AudioError> {
    let run = std::panic::AssertUnwindSafe(|| decode_symphonia_run(bytes, extension));
    std::panic::catch_unwind(run).unwrap_or(Err(AudioError::Unsupported(
        "the audio could not be decoded",
    )))
}

fn decode_symphonia_run(bytes: &[u8], extension: &str) -> Result<(Vec<i16>, u32), AudioError> {
    const UNDECODABLE: AudioError = AudioError::Unsupported("the audio could not be decoded");
    // symphonia wants an owned, 'static source: one copy of the body, made
    // without the tags we do not read.
    let source = Box::new(Cursor::new(without_tags(bytes)?));
    let stream = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    // The reader of the container we sniffed, never symphonia's probe: the
    // probe scans on past the start for any format's magic, and so parsed a
    // FLAC PICTURE block found two bytes into an "MP3" (`fuzz/` target
    // `audio_decode`, finding mp3-sync-then-flac-alloc).
    let options = FormatOptions::default();
    let opened: Result<Box<dyn FormatReader>, SymphoniaError> = match extension {
        "flac" => FlacReader::try_new(stream, &options).map(|r| Box::new(r) as _),
        "mp3" => MpaReader::try_new(stream, &options).map(|r| Box::new(r) as _),
        "ogg" => OggReader::try_new(stream, &options).map(|r| Box::new(r) as _),
        "wav" => WavReader::try_new(stream, &options).map(|r| Box::new(r) as _),
        _ => return Err(ERROR_UNKNOWN),
    };
    let mut reader = opened.map_err(|_| ERROR_UNKNOWN)?;
    let track = reader
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(AudioError::Invalid("the file contains no audio track"))?;
    let track_id = track.id;
    if track.codec_params.channels.is_some_and(|c| c.count() == 0) {
        return Err(AudioError::Invalid("the audio has zero channels"));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| UNDECODABLE)?;

    let mut mono: Option<Downmix> = None;
    let mut sample_rate = 0;
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut decode_errors = 0;
    // Any error from the reader (end of stream, a truncated file, a chained stream)
    // ends decoding and keeps what was decoded.
    while let Ok(packet) = reader.next_packet() {
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            Err(SymphoniaError::DecodeError(_)) if decode_errors < DECODE_ERRORS_MAX => {
                decode_errors += 1;
                continue;
            }
            Err(_) => break,
        };
        decode_errors = 0;
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if channels == 0 || decoded.frames() == 0 {
            continue;
        }
        // The first decoded packet fixes the layout; a stream that changes it
        // mid-way is cut there rather than mixed wrongly.
        let mono = mono.get_or_insert_with(|| Downmix::new(channels, 0));
        if sample_rate == 0 {
            check_container_rate(spec.rate)?;
            sample_rate = spec.rate;
        }
        if mono.channels != channels || sample_rate != spec.rate {
            break;
        }
        let capacity = decoded.capacity() as u64;
        let buffer = match &mut buffer {
            Some(buffer) if buffer.capacity() as u64 >= capacity * channels as u64 => buffer,
            slot => slot.insert(SampleBuffer::new(capacity, spec)),
        };
        buffer.copy_interleaved_ref(decoded);
        for &sample in buffer.samples() {
            mono.push(f32_to_i16(sample).into());
        }
        if mono.len() > decoded_samples_max(sample_rate) {
            return Err(ERROR_TOO_LONG);
        }
    }
    match mono {
        Some(mono) => Ok((mono.into_samples(), sample_rate)),
        None => Err(ERROR_EMPTY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|error| panic!("{path}: {error} (run scripts/make-fixtures.sh)"))
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    /// A WAV written by hound: `frames` frames of a 440 Hz tone, every channel alike.
    fn wav(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for n in 0..frames {
            let t = n as f64 / f64::from(spec.sample_rate);
            let value = 0.25 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
            for _ in 0..spec.channels {
                match spec.sample_format {
                    hound::SampleFormat::Float => writer.write_sample(value as f32),
                    hound::SampleFormat::Int => {
                        let full_scale = f64::from(1u32 << (spec.bits_per_sample - 1));
                        writer.write_sample((value * full_scale) as i32)
                    }
                }
                .expect("write");
            }
        }
        writer.finalize().expect("finalize");
        cursor.into_inner()
    }

    fn spec(channels: u16, sample_rate: u32, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn fixtures_decode_to_expected_rate_and_length() {
        let hello = decode(AudioFormat::Wav, &fixture("hello.wav")).expect("hello.wav");
        assert_eq!((hello.sample_rate, hello.samples.len()), (16_000, 34_374));
        assert!((hello.duration_s() - 2.148).abs() < 0.001);

        let hello_8k = decode(AudioFormat::Wav, &fixture("hello_8k.wav")).expect("8k");
        assert_eq!(
            (hello_8k.sample_rate, hello_8k.samples.len()),
            (8_000, 17_187)
        );

        let float = decode(AudioFormat::Wav, &fixture("hello_f32.wav")).expect("f32");
        assert_eq!(float.sample_rate, 16_000);
        assert_eq!(float.samples.len(), hello.samples.len());
        let max_diff = float
            .samples
            .iter()
            .zip(&hello.samples)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .max();
        assert!(
            max_diff <= Some(1),
            "f32 differs from PCM16 by {max_diff:?}"
        );

        let flac = decode(AudioFormat::Sniff, &fixture("hello.flac")).expect("flac");
        assert_eq!(flac, hello);

        let raw = decode(
            AudioFormat::RawPcm16 {
                sample_rate: 16_000,
            },
            &fixture("hello.raw"),
        );
        assert_eq!(raw, Ok(hello.clone()));

        for name in [
            "hello.wav",
            "hello_8k.wav",
            "hello_f32.wav",
            "hello_stereo_44k.wav",
        ] {
            let sniffed = decode(AudioFormat::Sniff, &fixture(name)).expect(name);
            assert_eq!(
                Ok(sniffed),
                decode(AudioFormat::Wav, &fixture(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn stereo_44k_is_down_mixed_and_resampled_to_16k() {
        let hello = decode(AudioFormat::Wav, &fixture("hello.wav")).expect("hello");
        let stereo = decode(AudioFormat::Wav, &fixture("hello_stereo_44k.wav")).expect("stereo");
        assert_eq!(stereo.sample_rate, 16_000);
        // 94743 frames at 44.1 kHz -> round(34373.7).
        assert_eq!(stereo.samples.len(), 34_374);
        // The right channel is at half level: the average is 0.75 of the original.
        let ratio = rms(&stereo.samples) / rms(&hello.samples);
        assert!((ratio - 0.75).abs() < 0.03, "level ratio {ratio}");
    }

    #[test]
    fn integer_widths_float_and_extensible_headers_decode() {
        let reference =
            decode(AudioFormat::Wav, &wav(spec(1, 16_000, 16, false), 1600)).expect("16");
        for (channels, bits, float) in [
            (1, 8, false),
            (1, 24, false),
            (1, 32, false),
            (2, 32, true),
            (3, 16, false),
            (6, 24, false),
        ] {
            let bytes = wav(spec(channels, 16_000, bits, float), 1600);
            if channels > 2 || bits > 16 {
                // hound writes WAVE_FORMAT_EXTENSIBLE (0xFFFE) here.
                assert_eq!(&bytes[20..22], &[0xFE, 0xFF]);
            }
            let pcm = decode(AudioFormat::Wav, &bytes).expect("decodes");
            assert_eq!(pcm.samples.len(), 1600);
            let tolerance = if bits == 8 { 300 } else { 2 };
            for (&a, &b) in pcm.samples.iter().zip(&reference.samples) {
                assert!(
                    (i32::from(a) - i32::from(b)).abs() <= tolerance,
                    "{channels}ch {bits}bit: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn other_rates_are_resampled_to_16k() {
        for (rate, frames, expected) in [
            (44_100, 44_100, 16_000),
            (22_050, 2_205, 1_600),
            (11_025, 11_025, 16_000),
            (96_000, 9_600, 1_600),
        ] {
            let pcm =
                decode(AudioFormat::Wav, &wav(spec(1, rate, 16, false), frames)).expect("decodes");
            assert_eq!(
                (pcm.sample_rate, pcm.samples.len()),
                (16_000, expected),
                "{rate}"
            );
        }
        let pcm = decode(AudioFormat::Wav, &wav(spec(1, 32_000, 16, false), 320)).expect("32k");
        assert_eq!((pcm.sample_rate, pcm.samples.len()), (32_000, 320));
    }

    #[test]
    fn raw_pcm16_rules() {
        let raw = |rate, bytes: &[u8]| decode(AudioFormat::RawPcm16 { sample_rate: rate }, bytes);
        assert_eq!(
            raw(16_000, &[1, 0, 0xFF, 0xFF]),
            Ok(Pcm {
                samples: vec![1, -1],
                sample_rate: 16_000
            })
        );
        assert!(matches!(
            raw(16_000, &[1, 0, 2]),
            Err(AudioError::Invalid(_))
        ));
        assert!(matches!(raw(16_000, &[]), Err(AudioError::Invalid(_))));
        assert!(matches!(raw(7_999, &[0, 0]), Err(AudioError::Invalid(_))));
        assert!(matches!(raw(192_001, &[0, 0]), Err(AudioError::Invalid(_))));
        let resampled = raw(44_100, &[0; 882]).expect("44.1 kHz raw");
        assert_eq!(
            (resampled.sample_rate, resampled.samples.len()),
            (16_000, 160)
        );
    }

    #[test]
    fn empty_and_unusable_wavs_are_invalid() {
        let empty = wav(spec(1, 16_000, 16, false), 0);
        assert_eq!(decode(AudioFormat::Wav, &empty), Err(ERROR_EMPTY));
        assert_eq!(decode(AudioFormat::Sniff, &empty), Err(ERROR_EMPTY));

        // Zero channels: patch the fmt chunk of a valid file.
        let mut zero_channels = wav(spec(1, 16_000, 16, false), 10);
        zero_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            decode(AudioFormat::Wav, &zero_channels),
            Err(AudioError::Invalid(_))
        ));

        // Sample rate 0 (byte rate 0 too, so the header is consistent).
        let mut zero_rate = wav(spec(1, 16_000, 16, false), 10);
        zero_rate[24..32].copy_from_slice(&[0; 8]);
        assert_eq!(decode(AudioFormat::Wav, &zero_rate), Err(ERROR_RATE));

        // A data chunk declared long but cut off before its first sample.
        let hello = fixture("hello.wav");
        assert_eq!(decode(AudioFormat::Wav, &hello[..44]), Err(ERROR_EMPTY));
        // Cut off mid-way: the samples present are kept.
        let truncated = decode(AudioFormat::Wav, &hello[..44 + 1001]).expect("truncated");
        assert_eq!(truncated.samples.len(), 500);
        // Only a header fragment.
        assert!(matches!(
            decode(AudioFormat::Wav, &hello[..20]),
            Err(AudioError::Invalid(_))
        ));
    }

    #[test]
    fn decoded_audio_is_bounded_whatever_rate_a_header_claims() {
        assert_eq!(decoded_samples_max(16_000), 16_000 * 3_600);
        assert_eq!(decoded_samples_max(48_000), 48_000 * 3_600);
        // A header claiming 384 kHz gets no more memory than 48 kHz would.
        assert_eq!(decoded_samples_max(384_000), 48_000 * 3_600);
        let samples = decoded_samples_max(CONTAINER_RATE_HZ_MAX);
        assert!(samples * 2 <= 330 * 1024 * 1024, "{samples} samples");
    }

    #[test]
    fn streamed_wav_with_unknown_lengths_decodes() {
        // Writers on a pipe cannot seek back to fill in the lengths and leave
        // 0xFFFFFFFF (ffmpeg) or 0; hound refuses the first, symphonia reads it.
        let hello = fixture("hello.wav");
        let expected = decode(AudioFormat::Wav, &hello).expect("hello");
        let mut streamed = hello.clone();
        streamed[4..8].copy_from_slice(&[0xFF; 4]);
        streamed[40..44].copy_from_slice(&[0xFF; 4]);
        assert_eq!(decode(AudioFormat::Wav, &streamed), Ok(expected));
    }

    #[test]
    fn tags_are_dropped_before_symphonia_sees_them() {
        let flac = fixture("hello.flac");
        let expected = decode(AudioFormat::Sniff, &flac).expect("the fixture decodes");
        // The fixture's first block is STREAMINFO (34 bytes); put a comment
        // block claiming a 3 GB comment and a picture block after it.
        assert_eq!(flac[4] & 0x7F, 0);
        let streaminfo_end = 4 + 4 + 34;
        let mut comment = vec![4u8, 0, 0, 12];
        comment.extend_from_slice(&0u32.to_le_bytes()); // vendor string length
        comment.extend_from_slice(&1u32.to_le_bytes()); // one comment...
        comment.extend_from_slice(&0xC000_0000u32.to_le_bytes()); // ...of 3 GB
        let mut picture = vec![6u8, 0, 0, 8];
        picture.extend_from_slice(&3u32.to_be_bytes());
        picture.extend_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
        let mut tagged = flac[..streaminfo_end].to_vec();
        tagged[4] &= 0x7F; // STREAMINFO is no longer the last block
        tagged.extend(comment);
        tagged.extend(picture);
        tagged.extend_from_slice(&flac[streaminfo_end..]);
        let decoded = decode(AudioFormat::Sniff, &tagged).expect("decodes without its tags");
        assert_eq!(decoded, expected);

        // A block that runs past the body is refused before any allocation.
        let mut cut = flac[..streaminfo_end].to_vec();
        cut.extend_from_slice(&[0x84, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
        cut[4] &= 0x7F;
        assert!(matches!(
            decode(AudioFormat::Sniff, &cut),
            Err(AudioError::Invalid(_))
        ));
        // Likewise an ID3v2 tag longer than the body.
        let id3 = [
            b'I', b'D', b'3', 4, 0, 0, 0x7F, 0x7F, 0x7F, 0x7F, 0xFF, 0xFB,
        ];
        assert!(matches!(
            decode(AudioFormat::Sniff, &id3),
            Err(AudioError::Invalid(_))
        ));
    }

    #[test]
    fn garbage_is_unsupported() {
        let text = b"this is not audio, just some text that is long enough".as_slice();
        for format in [AudioFormat::Wav, AudioFormat::Sniff] {
            assert!(
                matches!(decode(format, text), Err(AudioError::Unsupported(_))),
                "{format:?}"
            );
            assert_eq!(decode(format, &[]), Err(ERROR_EMPTY), "{format:?}");
        }
        // Raw PCM has no magic to sniff.
        assert_eq!(
            decode(AudioFormat::Sniff, &fixture("hello.raw")),
            Err(ERROR_UNKNOWN)
        );
        // A FLAC body declared as WAV.
        assert!(matches!(
            decode(AudioFormat::Wav, &fixture("hello.flac")),
            Err(AudioError::Unsupported(_))
        ));
        // Magic bytes followed by garbage.
        for magic in [&b"fLaC"[..], b"OggS", b"ID3", &[0xFF, 0xFB]] {
            let mut body = magic.to_vec();
            body.extend_from_slice(text);
            assert!(decode(AudioFormat::Sniff, &body).is_err(), "{magic:?}");
        }
    }

    #[test]
    fn error_messages_are_shown_as_is() {
        assert_eq!(ERROR_EMPTY.to_string(), "the audio contains no samples");
        assert_eq!(AudioError::Unsupported("x").message(), "x");
    }

    fn format_strategy() -> impl Strategy<Value = AudioFormat> {
        prop_oneof![
            Just(AudioFormat::Wav),
            Just(AudioFormat::Sniff),
            any::<u32>().prop_map(|sample_rate| AudioFormat::RawPcm16 { sample_rate }),
            Just(AudioFormat::RawPcm16 {
                sample_rate: 16_000
            }),
        ]
    }

    /// Magic prefixes that steer arbitrary bytes into each decoder.
    fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
        let prefix = prop::sample::select(vec![
            Vec::new(),
            b"RIFF\x24\x00\x00\x00WAVE".to_vec(),
            b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00".to_vec(),
            b"fLaC".to_vec(),
            b"OggS".to_vec(),
            b"ID3".to_vec(),
            vec![0xFF, 0xFB, 0x90, 0x64],
        ]);
        (prefix, prop::collection::vec(any::<u8>(), 0..2048)).prop_map(|(mut prefix, rest)| {
            prefix.extend_from_slice(&rest);
            prefix
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(format in format_strategy(), body in body_strategy()) {
            if let Ok(pcm) = decode(format, &body) {
                prop_assert!(VAD_RATES_HZ.contains(&pcm.sample_rate));
                prop_assert!(!pcm.samples.is_empty());
            }
        }

        #[test]
        fn corrupted_fixtures_never_panic(
            name in prop::sample::select(vec!["hello.wav", "hello_f32.wav", "hello.flac", "hello_stereo_44k.wav"]),
            edits in prop::collection::vec((0usize..4096, any::<u8>()), 1..16),
            cut in 0usize..200_000,
        ) {
            // Damage concentrates on the headers, where the parsing is.
            let mut body = fixture(name);
            for (index, value) in edits {
                if let Some(byte) = body.get_mut(index) {
                    *byte = value;
                }
            }
            body.truncate(cut.max(1));
            for format in [AudioFormat::Wav, AudioFormat::Sniff] {
                if let Ok(pcm) = decode(format, &body) {
                    prop_assert!(VAD_RATES_HZ.contains(&pcm.sample_rate));
                }
            }
        }
    }
}
