//! The internet checksum (RFC 1071), in two steps so pseudo-headers and headers can be summed
//! piecewise: [`sum_words`] accumulates 16-bit big-endian words, [`finish`] folds and
//! complements. Used by [`super::rst`] and by the traffic generator in `bench/`.

/// The internet checksum (RFC 1071) of `data`, folded, not yet complemented, added to `sum`.
/// An odd trailing byte is padded with a zero on the right, as RFC 1071 says; so `data` must
/// start on an even offset of the checksummed span.
#[inline]
pub fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// The one's complement of the folded sum.
#[inline]
pub fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
