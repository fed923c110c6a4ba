//! The names flush(8) checks and makes: the queue ID syntax that doubles as
//! the logfile name syntax (`mail_queue_id_ok`), Postfix's host name and
//! address literal syntax (`valid_hostname`, `valid_mailhost_literal`), the
//! ASCII form of a site (`midna_domain_to_ascii`), the site to logfile name
//! mapping (`flush_site_to_path`), and case folding (`casefold`).
//!
//! Everything works on bytes, as the C code does on C strings: a site is
//! whatever the client sent, UTF-8 or not.

use std::fmt;

use crate::wire::is_c_space;

/// `VALID_HOSTNAME_LEN`: the longest host name, queue ID or logfile name.
pub const VALID_HOSTNAME_LEN: usize = 255;

/// `VALID_LABEL_LEN`: the longest label of a host name.
pub const VALID_LABEL_LEN: usize = 63;

/// The space Postfix gives an address inside `[]` (`INET6_ADDRSTRLEN`).
const HOSTADDR_BUF: usize = 46;

/// `mail_queue_id_ok`: 1 to 255 letters, digits and `_`. A queue ID and a
/// logfile name must both pass it.
pub fn mail_queue_id_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= VALID_HOSTNAME_LEN
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The part of a byte string a C function sees: everything before the
/// first NUL.
pub fn c_string(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(nul) => &bytes[..nul],
        None => bytes,
    }
}

/// `valid_hostname` without wildcards: labels of letters, digits, `-` and
/// `_` (Postfix allows `_`), no empty label, no label over 63 bytes, no `-`
/// at either end of a label, not all-numeric, at most 255 bytes.
pub fn valid_hostname(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    let mut label_length = 0usize;
    let mut non_numeric = false;
    for (i, &ch) in name.iter().enumerate() {
        let next = name.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            label_length += 1;
            if label_length > VALID_LABEL_LEN {
                return false;
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if ch == b'.' {
            if label_length == 0 || next.is_none() {
                return false;
            }
            label_length = 0;
        } else if ch == b'-' {
            non_numeric = true;
            label_length += 1;
            if label_length == 1 || next.is_none() || next == Some(b'.') {
                return false;
            }
        } else {
            return false;
        }
    }
    non_numeric && name.len() <= VALID_HOSTNAME_LEN
}

/// `valid_ipv4_hostaddr`: a dotted quad, each octet at most 255, and no
/// address starting with octet 0 other than 0.0.0.0.
pub fn valid_ipv4_hostaddr(addr: &[u8]) -> bool {
    let mut in_byte = false;
    let mut byte_count = 0;
    let mut byte_val = 0u32;
    for (i, &ch) in addr.iter().enumerate() {
        if ch.is_ascii_digit() {
            if !in_byte {
                in_byte = true;
                byte_val = 0;
                byte_count += 1;
            }
            byte_val = byte_val * 10 + u32::from(ch - b'0');
            if byte_val > 255 {
                return false;
            }
        } else if ch == b'.' {
            if !in_byte || i + 1 == addr.len() {
                return false;
            }
            if byte_count == 1 && byte_val == 0 && addr.iter().any(|&b| b != b'0' && b != b'.') {
                return false;
            }
            in_byte = false;
        } else {
            return false;
        }
    }
    byte_count == 4
}

/// `valid_ipv6_hostaddr`: eight hex fields, or fewer with one `::`, or an
/// IPv4 address in the last 32 bits.
pub fn valid_ipv6_hostaddr(addr: &[u8]) -> bool {
    let mut null_field = 0usize;
    let mut field = 0usize;
    let mut len = 0usize;
    let mut at = 0usize;
    loop {
        match addr.get(at).copied() {
            None => {
                return !(field < 2 || (len == 0 && null_field + 1 != field));
            }
            Some(b'.') => {
                if !(2..=6).contains(&field) {
                    return false;
                }
                return valid_ipv4_hostaddr(&addr[at - len..]);
            }
            Some(b':') => {
                let next = addr.get(at + 1).copied();
                if field == 0 && len == 0 && next.is_some_and(|b| b.is_ascii_alphanumeric()) {
                    return false;
                }
                field += 1;
                if field > 7 {
                    return false;
                }
                at += 1;
                len = 0;
                if addr.get(at) == Some(&b':') {
                    if null_field > 0 {
                        return false;
                    }
                    null_field = field;
                }
            }
            Some(_) => {
                len = addr[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count();
                if len > 4 || len == 0 {
                    return false;
                }
                at += len;
            }
        }
    }
}

/// `valid_mailhost_literal`: `[` an IPv4 address, or `IPv6:` and an IPv6
/// address, `]`, nothing after it.
pub fn valid_mailhost_literal(addr: &[u8]) -> bool {
    let Some(inner) = addr.strip_prefix(b"[") else {
        return false;
    };
    let Some(close) = inner.iter().position(|&b| b == b']') else {
        return false;
    };
    if close + 1 != inner.len() || close >= HOSTADDR_BUF {
        return false;
    }
    let bare = &inner[..close];
    match bare.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case(b"IPv6:") => valid_ipv6_hostaddr(&bare[5..]),
        _ => valid_ipv4_hostaddr(bare),
    }
}

/// Why a site has no ASCII form (`midna_domain_to_ascii` returned null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsciiError {
    /// Not ASCII and not valid UTF-8: ICU is never asked.
    MalformedUtf8,
    /// ICU's UTS #46 ToASCII refused it.
    Uts46(flushbed_icu::Uts46Error),
    /// ICU's result is not a valid host name (an address literal, say).
    MalformedAsciiLabels(String),
}

impl fmt::Display for AsciiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsciiError::MalformedUtf8 => f.write_str("malformed UTF-8"),
            AsciiError::Uts46(why) => write!(f, "UTS #46 ToASCII failed: {why}"),
            AsciiError::MalformedAsciiLabels(ascii) => {
                write!(f, "malformed ASCII label(s) in \"{ascii}\"")
            }
        }
    }
}

/// `midna_domain_to_ascii`: Postfix's UTF-8 pre-check, ICU's ToASCII, and
/// `valid_hostname()` on ICU's result.
pub fn midna_domain_to_ascii(site: &[u8]) -> Result<String, AsciiError> {
    // An all-ASCII name skips the UTF-8 check; an empty one does not, and
    // passes it.
    if !all_ascii(site) && std::str::from_utf8(site).is_err() {
        return Err(AsciiError::MalformedUtf8);
    }
    let ascii = flushbed_icu::to_ascii(site).map_err(AsciiError::Uts46)?;
    if !valid_hostname(ascii.as_bytes()) {
        return Err(AsciiError::MalformedAsciiLabels(ascii));
    }
    Ok(ascii)
}

/// `allascii`: non-empty and every byte below 0x80.
pub fn all_ascii(text: &[u8]) -> bool {
    !text.is_empty() && text.is_ascii()
}

/// `flush_site_to_path`, after the ASCII form: every letter lower-cased,
/// every byte that is not a letter or digit replaced by `_`.
pub fn logfile_name_of(ascii: &str) -> String {
    ascii
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase() as char
            } else {
                '_'
            }
        })
        .collect()
}

/// `casefold`: with `smtputf8_enable`, full Unicode case folding as ICU
/// does it (bytes that are not UTF-8 are copied as they are); otherwise,
/// and for all-ASCII text, ASCII lower-casing only.
pub fn casefold(text: &[u8], utf8: bool) -> Vec<u8> {
    if !utf8 || all_ascii(text) || text.is_empty() {
        return text.to_ascii_lowercase();
    }
    if let Some(folded) = flushbed_icu::fold_case(text) {
        return folded.into_bytes();
    }

    // ICU copies ill-formed sequences verbatim and folds the rest.
    let mut out = Vec::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        let valid = chunk.valid();
        if !valid.is_empty() {
            match flushbed_icu::fold_case(valid.as_bytes()) {
                Some(folded) => out.extend_from_slice(folded.as_bytes()),
                None => out.extend_from_slice(valid.as_bytes()),
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
}

/// `trimblanks` and the skip of leading white space: C's white space off
/// both ends.
pub fn trim_c_space(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start, |last| last + 1);
    &text[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_letters_digits_and_underscore() {
        assert!(mail_queue_id_ok(b"A2AD898C68C"));
        assert!(mail_queue_id_ok(b"example_com"));
        assert!(mail_queue_id_ok(&[b'a'; 255]));
        assert!(!mail_queue_id_ok(&[b'a'; 256]));
        assert!(!mail_queue_id_ok(b""));
        assert!(!mail_queue_id_ok(b"ABC\r"));
        assert!(!mail_queue_id_ok(b"not-a-queue-id"));
    }

    #[test]
    fn host_names_allow_underscore_but_not_misplaced_hyphens_or_numbers() {
        assert!(valid_hostname(b"under_score.example.com"));
        assert!(valid_hostname(b"a--b.example"));
        assert!(!valid_hostname(b"-a.example"));
        assert!(!valid_hostname(b"a-.example"));
        assert!(!valid_hostname(b"example.com."));
        assert!(!valid_hostname(b"a..example"));
        assert!(!valid_hostname(b"127.0.0.1"));
        assert!(!valid_hostname(b"[127.0.0.1]"));
        assert!(!valid_hostname(&[b'a'; 64]));
        assert!(valid_hostname(&[b'a'; 63]));
        assert!(!valid_hostname("bücher.example".as_bytes()));
    }

    #[test]
    fn address_literals_are_checked_inside_the_brackets() {
        assert!(valid_mailhost_literal(b"[127.0.0.1]"));
        assert!(valid_mailhost_literal(b"[0.0.0.0]"));
        assert!(!valid_mailhost_literal(b"[0.1.2.3]"));
        assert!(!valid_mailhost_literal(b"[256.0.0.1]"));
        assert!(!valid_mailhost_literal(b"[127.0.0.1]x"));
        assert!(!valid_mailhost_literal(b"127.0.0.1"));
        assert!(valid_mailhost_literal(b"[IPv6:::1]"));
        assert!(valid_mailhost_literal(b"[ipv6:2001:db8::1]"));
        assert!(valid_mailhost_literal(b"[IPv6:::ffff:127.0.0.1]"));
        assert!(!valid_mailhost_literal(b"[::1]"));
        assert!(!valid_mailhost_literal(b"[IPv6:1:2:3:4:5:6:7:8:9]"));
    }

    #[test]
    fn the_ascii_form_is_checked_as_a_host_name() {
        assert_eq!(
            midna_domain_to_ascii(b"EXAMPLE.ORG").unwrap(),
            "example.org"
        );
        assert_eq!(
            midna_domain_to_ascii("straße.example.com".as_bytes()).unwrap(),
            "xn--strae-oqa.example.com"
        );
        assert!(matches!(
            midna_domain_to_ascii(b"[127.0.0.1]"),
            Err(AsciiError::MalformedAsciiLabels(_))
        ));
        assert_eq!(
            midna_domain_to_ascii(b"a\xffb"),
            Err(AsciiError::MalformedUtf8)
        );
        assert!(matches!(
            midna_domain_to_ascii(b"ab--c.example"),
            Err(AsciiError::Uts46(_))
        ));
        assert!(midna_domain_to_ascii(b"").is_err());
    }

    #[test]
    fn logfile_names_lower_case_and_mask_everything_else() {
        assert_eq!(logfile_name_of("Example.COM"), "example_com");
        assert_eq!(
            logfile_name_of("a-b.example"),
            logfile_name_of("a_b.example")
        );
    }

    #[test]
    fn case_folding_is_ascii_only_without_smtputf8() {
        assert_eq!(
            casefold("STRASSE.Straße".as_bytes(), false),
            "strasse.straße".as_bytes()
        );
        assert_eq!(
            casefold("STRASSE.Straße".as_bytes(), true),
            b"strasse.strasse"
        );
        assert_eq!(casefold(b"\xffA\xc3\x9c", true), b"\xffa\xc3\xbc");
    }
}
