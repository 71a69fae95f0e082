//! IEEE 754 half precision, both ways, without dependencies. The converter
//! widens f16 sources to f32 for the tensors ggml keeps in f32 (biases,
//! norms, positional embeddings) and narrows f32 sources to f16 for
//! matrices, rounding to nearest, ties to even, as numpy's `astype` does.

/// The nearest f16 to `value` (ties to even); overflow gives infinity, NaN
/// stays NaN (quiet, sign and top payload bits kept).
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        if mantissa == 0 {
            return sign | 0x7c00;
        }
        return sign | 0x7e00 | (mantissa >> 13) as u16;
    }
    // f32 zeros and subnormals are far below half the smallest f16 subnormal.
    if exponent == 0 {
        return sign;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        // An f16 subnormal: the value is `significand × 2^(exponent - 150)`,
        // and the result counts units of 2^-24.
        let significand = mantissa | 0x80_0000;
        let shift = (126 - exponent) as u32; // at least 14
        if shift > 24 {
            return sign;
        }
        let half = round_shift(significand, shift);
        // A carry out of the subnormal range lands on the smallest normal,
        // which is the right encoding.
        return sign | half as u16;
    }
    let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let rounded = round_up(mantissa, 13, half);
    // A carry into the exponent is right too, up to infinity (0x7c00).
    sign | rounded as u16
}

/// `value >> shift`, rounded to nearest, ties to even.
fn round_shift(value: u32, shift: u32) -> u32 {
    round_up(value, shift, value >> shift)
}

/// `truncated` (which is `source >> shift` with other bits above), plus one
/// when the `shift` dropped bits of `source` round it up.
fn round_up(source: u32, shift: u32, truncated: u32) -> u32 {
    let dropped = source & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    if dropped > halfway || (dropped == halfway && truncated & 1 == 1) {
        truncated + 1
    } else {
        truncated
    }
}

/// The exact f32 value of an f16.
pub fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half & 0x8000) << 16;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    let bits = match exponent {
        0 if mantissa == 0 => sign,
        0 => {
            // Subnormal: mantissa × 2^-24, exact in f32.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            sign | magnitude.to_bits()
        }
        0x1f => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let cases: [(f32, u16); 12] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.5, 0x3800),
            (65504.0, 0x7bff),        // largest finite
            (6.103_515_6e-5, 0x0400), // smallest normal, 2^-14
            (5.960_464_5e-8, 0x0001), // smallest subnormal, 2^-24
            (0.333_333_34, 0x3555),
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
            (1e10, 0x7c00), // overflow
        ];
        for (value, half) in cases {
            assert_eq!(f32_to_f16(value), half, "{value}");
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1.0 and the next f16 (1 + 2^-10):
        // ties go to the even mantissa, 1.0.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3·2^-11 is halfway between 0x3c01 and 0x3c02: to 0x3c02.
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // A hair above halfway rounds up.
        assert_eq!(
            f32_to_f16(f32::from_bits((1.0 + 2f32.powi(-11)).to_bits() + 1)),
            0x3c01
        );
        // 65520 is halfway between 65504 and 65536 (which overflows): even is inf.
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        // Subnormal ties: 2^-25 is half the smallest subnormal, rounds to 0;
        // 3·2^-25 is halfway between 1 and 2 units, rounds to 2.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 0x0002);
        assert_eq!(
            f32_to_f16(f32::from_bits(2f32.powi(-25).to_bits() + 1)),
            0x0001
        );
        // The largest subnormal plus half a unit carries into the smallest normal.
        assert_eq!(f32_to_f16(1023.5 * 2f32.powi(-24)), 0x0400);
        // f32 subnormals vanish.
        assert_eq!(f32_to_f16(f32::from_bits(1)), 0x0000);
        assert_eq!(f32_to_f16(-f32::from_bits(1)), 0x8000);
    }

    #[test]
    fn nan_stays_nan() {
        let half = f32_to_f16(f32::NAN);
        assert_eq!(half & 0x7c00, 0x7c00);
        assert_ne!(half & 0x03ff, 0);
        assert!(f16_to_f32(half).is_nan());
        // A signalling NaN whose payload is only in the low bits stays NaN.
        assert!(f16_to_f32(f32_to_f16(f32::from_bits(0x7f80_0001))).is_nan());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn every_f16_round_trips() {
        for half in 0..=u16::MAX {
            let wide = f16_to_f32(half);
            if wide.is_nan() {
                assert!(f16_to_f32(f32_to_f16(wide)).is_nan());
            } else {
                assert_eq!(f32_to_f16(wide), half, "{half:#06x} -> {wide}");
            }
        }
    }

    #[test]
    fn widening_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x83ff), -1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }
}
