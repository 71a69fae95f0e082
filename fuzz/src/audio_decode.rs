//! Target `audio_decode`: every upload format the batch endpoint sniffs or
//! is told, from arbitrary bytes: decoding ends in PCM within its bounds or
//! in an error with a message, never a panic or an unbounded allocation.

use transcription_service::audio::decode::{decode, AudioFormat};
use transcription_service::audio::resample::resampled_len;
use transcription_service::audio::{Pcm, VAD_RATES_HZ};
use transcription_service::http::multipart;

use super::input::Input;

/// Raw PCM16 rates: the VAD rates, common others, the limits and beyond.
const RAW_RATES: [u32; 12] = [
    8_000, 16_000, 32_000, 48_000, 11_025, 22_050, 44_100, 96_000, 192_000, 7_999, 192_001, 0,
];

/// `[selector][...]`: selector % 4 = 0 WAV, 1 sniffed, 2 raw PCM16 (the next
/// byte picks the rate, 255 = the next four bytes), 3 a multipart form whose
/// first line is the Content-Type; every `file` part is decoded sniffed.
pub fn audio_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    match selector % 4 {
        0 => {
            let body = input.rest();
            check_pcm(decode(AudioFormat::Wav, body), body);
        }
        1 => {
            let body = input.rest();
            let sniffed = decode(AudioFormat::Sniff, body);
            if body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE" {
                assert_eq!(sniffed, decode(AudioFormat::Wav, body));
            }
            check_pcm(sniffed, body);
        }
        2 => {
            let pick = input.u8();
            let sample_rate = if pick == 255 {
                input.u32()
            } else {
                RAW_RATES[usize::from(pick) % RAW_RATES.len()]
            };
            let body = input.rest();
            let result = decode(AudioFormat::RawPcm16 { sample_rate }, body);
            let rate_ok = (8_000..=192_000).contains(&sample_rate);
            // Valid audio that resamples to no sample at all is empty audio.
            let valid = !body.is_empty()
                && body.len() % 2 == 0
                && rate_ok
                && (VAD_RATES_HZ.contains(&sample_rate)
                    || resampled_len(body.len() / 2, sample_rate, 16_000) > 0);
            assert_eq!(
                result.is_ok(),
                valid,
                "raw PCM16 at {sample_rate} Hz: {result:?}"
            );
            if let Ok(pcm) = &result {
                let samples = body.len() / 2;
                if VAD_RATES_HZ.contains(&sample_rate) {
                    assert_eq!(pcm.sample_rate, sample_rate);
                    let expected: Vec<i16> = body
                        .chunks_exact(2)
                        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                        .collect();
                    assert_eq!(pcm.samples, expected);
                } else {
                    assert_eq!(pcm.sample_rate, 16_000);
                    assert_eq!(
                        pcm.samples.len(),
                        resampled_len(samples, sample_rate, 16_000)
                    );
                }
            }
            check_pcm(result, body);
        }
        _ => {
            let form = input.rest();
            let (content_type, body) = match form.windows(2).position(|pair| pair == b"\r\n") {
                Some(at) => (&form[..at], &form[at + 2..]),
                None => (form, &[][..]),
            };
            let content_type = String::from_utf8_lossy(content_type);
            let Some(boundary) = multipart::boundary(&content_type) else {
                return;
            };
            assert!(!boundary.is_empty() && boundary.len() <= 70);
            let Ok(parts) = multipart::parse(body, boundary) else {
                return;
            };
            assert!(parts.len() <= multipart::PARTS_MAX);
            let range = body.as_ptr_range();
            for part in &parts {
                let data = part.data.as_ptr_range();
                assert!(
                    range.start <= data.start && data.end <= range.end,
                    "part data outside the body"
                );
                if part.name == "file" {
                    check_pcm(decode(AudioFormat::Sniff, part.data), part.data);
                }
            }
        }
    }
}

fn check_pcm(result: Result<Pcm, transcription_service::audio::AudioError>, body: &[u8]) {
    match result {
        Ok(pcm) => {
            assert!(
                VAD_RATES_HZ.contains(&pcm.sample_rate),
                "rate {}",
                pcm.sample_rate
            );
            // Finding audio_decode-resampled-to-nothing (fixed): audio is
            // never Ok with no samples.
            assert!(!pcm.samples.is_empty(), "Ok with no samples");
            assert!(pcm.duration_s() <= 3_600.5, "{} s", pcm.duration_s());
            assert!(!body.is_empty());
        }
        Err(error) => assert!(!error.message().is_empty()),
    }
}
