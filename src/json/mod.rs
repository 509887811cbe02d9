//! JSON on the admission path, read and written without serde_json's byte-by-byte
//! string handling: [`read`] reads a review's body, [`write`] writes the patch and the
//! record. Both look at 16 bytes of a string at a time, for the one question JSON asks
//! of each byte.

pub mod read;
pub mod write;

/// Whether `byte` cannot stand for itself inside a JSON string: a quote, a backslash or
/// a control character.
#[inline(always)]
fn ends_text(byte: u8) -> bool {
    (byte < 0x20) | (byte == b'"') | (byte == b'\\')
}

/// A bit for each of the 16 bytes that ends a string's text, the first byte lowest:
/// four vector instructions and a mask (SSE2 is part of every x86-64).
#[cfg(target_arch = "x86_64")]
#[inline]
fn stops(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: every x86-64 has SSE2, and the load reads the 16 bytes `chunk` holds.
    unsafe {
        let bytes = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `byte <= 0x1f`: the smaller of the two is the byte itself.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1f)), bytes);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn stops(chunk: &[u8; 16]) -> u32 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &byte)| mask | u32::from(ends_text(byte)) << i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn stops_are_the_bytes_that_end_text(chunk in any::<[u8; 16]>()) {
            let expected = (0..16).fold(0, |mask, i| mask | u32::from(ends_text(chunk[i])) << i);
            prop_assert_eq!(stops(&chunk), expected);
        }
    }

    #[test]
    fn every_byte_value_is_judged_as_json_judges_it() {
        for byte in 0..=u8::MAX {
            let mut chunk = [b'a'; 16];
            chunk[byte as usize % 16] = byte;
            let ends = byte < 0x20 || byte == b'"' || byte == b'\\';
            assert_eq!(stops(&chunk) != 0, ends, "{byte:#04x}");
        }
    }
}
