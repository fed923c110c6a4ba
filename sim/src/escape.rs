//! Byte strings as scenarios write them and as reports show them.
//!
//! Logfile contents, sites, queue IDs and raw requests may hold NULs, `\r`
//! and bytes that are not UTF-8. A scenario writes them as TOML strings with
//! flushbed's own escapes (`\n \r \t \0 \\ \xHH`), decoded after TOML's; a
//! divergence report shows them the same way, so that what a report prints
//! can be pasted back into a scenario.

use thiserror::Error;

/// A backslash sequence that is not one of flushbed's escapes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad escape \"{sequence}\" at byte {offset}: expected \\n, \\r, \\t, \\0, \\\\ or \\xHH")]
pub struct EscapeError {
    /// Where the backslash is, in bytes from the start of the string.
    pub offset: usize,
    /// The offending sequence as written.
    pub sequence: String,
}

/// Decodes flushbed's escapes in `text`.
pub fn decode(text: &str) -> Result<Vec<u8>, EscapeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let bad = |len: usize| EscapeError {
            offset: i,
            sequence: String::from_utf8_lossy(&bytes[i..(i + len).min(bytes.len())]).into_owned(),
        };
        let byte = match bytes.get(i + 1) {
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let hex = bytes.get(i + 2..i + 4).ok_or_else(|| bad(4))?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad(4))?;
                let value = u8::from_str_radix(hex, 16).map_err(|_| bad(4))?;
                i += 4;
                out.push(value);
                continue;
            }
            _ => return Err(bad(2)),
        };
        out.push(byte);
        i += 2;
    }
    Ok(out)
}

/// Shows bytes with flushbed's escapes: printable ASCII as it is, the rest
/// escaped, so that `decode(&encode(b)) == b`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            // `\00` would read to a person as one escape: before a digit,
            // a NUL is written in full.
            0 if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => out.push_str("\\x00"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_before_a_digit_is_written_in_full() {
        assert_eq!(encode(b"status\x000\x00\x00"), r"status\x000\0\0");
        assert_eq!(
            decode(&encode(b"status\x000\x00\x00")).unwrap(),
            b"status\x000\x00\x00"
        );
    }

    #[test]
    fn every_escape_decodes_to_its_byte() {
        assert_eq!(
            decode(r"A\nB\r\t\0\\\xff\x41").unwrap(),
            b"A\nB\r\t\0\\\xffA"
        );
    }

    #[test]
    fn an_unknown_escape_is_an_error_that_says_where() {
        let err = decode(r"ab\q").unwrap_err();
        assert_eq!(err.offset, 2);
        assert_eq!(err.sequence, r"\q");
        assert!(decode(r"\x4").is_err());
        assert!(decode(r"\xZZ").is_err());
        assert!(decode("trailing\\").is_err());
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        let bytes = b"ID1\0junk\r\n\xff\x7f ok\\";
        assert_eq!(decode(&encode(bytes)).unwrap(), bytes);
        assert_eq!(encode(b"a\0\xfe"), r"a\0\xfe");
    }

    #[test]
    fn utf8_text_passes_through_undecoded() {
        assert_eq!(decode("straße").unwrap(), "straße".as_bytes());
    }
}
