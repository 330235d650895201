//! Bounds-checked big- and little-endian reads shared by the parsers and detectors: each
//! returns `None` past the end (or on offset overflow), never panics.

#[inline]
pub(crate) fn u8_at(d: &[u8], at: usize) -> Option<u8> {
    d.get(at).copied()
}

#[inline]
pub(crate) fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
pub(crate) fn be24(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(3)?)?;
    Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

#[inline]
pub(crate) fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline]
pub(crate) fn le16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

#[inline]
pub(crate) fn le32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `d` starts with `prefix`, ASCII case-insensitively.
#[inline]
pub(crate) fn starts_with_ci(d: &[u8], prefix: &[u8]) -> bool {
    d.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Whether `needle` occurs in `hay` (ASCII case-insensitive); short inputs only.
#[inline]
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The first line of `d` without its line end (`\r\n` or `\n`), if `d` holds a line end.
#[inline]
pub(crate) fn first_line(d: &[u8]) -> Option<&[u8]> {
    let end = d.iter().position(|&b| b == b'\n')?;
    let line = &d[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Printable ASCII or tab.
#[inline]
pub(crate) fn is_text(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let d = [1, 2, 3];
        assert_eq!(be16(&d, 1), Some(0x0203));
        assert_eq!(be16(&d, 2), None);
        assert_eq!(be32(&d, 0), None);
        assert_eq!(be24(&d, 0), Some(0x010203));
        assert_eq!(le16(&d, 0), Some(0x0201));
        assert_eq!(le32(&d, usize::MAX), None);
        assert_eq!(u8_at(&d, 3), None);
    }

    #[test]
    fn text_helpers() {
        assert!(starts_with_ci(b"GeT /", b"get"));
        assert!(!starts_with_ci(b"ge", b"get"));
        assert!(contains_ci(b"220 mail ESMTP ready", b"esmtp"));
        assert_eq!(first_line(b"abc\r\ndef"), Some(&b"abc"[..]));
        assert_eq!(first_line(b"abc"), None);
        assert!(is_text(b' ') && is_text(b'\t') && !is_text(0) && !is_text(0x7f));
    }
}
