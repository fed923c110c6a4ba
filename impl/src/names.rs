//! The names flush(8) checks: queue IDs (and logfile names, which Postfix
//! checks with the same rule), host names in Postfix's sense, and the
//! mapping from a site to the name of its logfile in `flush/`.
//!
//! The site to logfile name mapping is Postfix's: the site must be ASCII
//! or valid UTF-8; ICU's UTS #46 ToASCII (with Postfix's options) turns it
//! into ASCII and lower-cases it; the result must be a valid host name;
//! then every letter is lower-cased and every character that is not a
//! letter or a digit becomes `_`. So `Example.COM` and `example.com` share
//! `example_com`, and so do `a-b.example` and `a_b.example`.

/// The longest queue ID, logfile name or host name Postfix accepts.
pub const MAX_NAME_LEN: usize = 255;
/// The longest label of a host name.
pub const MAX_LABEL_LEN: usize = 63;

/// Postfix's `mail_queue_id_ok`: 1 to 255 ASCII letters, digits and `_`.
/// Logfile names are held to the same rule.
pub fn queue_id_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Postfix's `valid_hostname`: labels of ASCII letters, digits, `-` and
/// `_`, none empty, none over 63 octets, no `-` at either end of a label,
/// not all numeric, at most 255 octets in all.
pub fn valid_hostname(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }

    let mut label_len = 0usize;
    let mut non_numeric = false;
    for (i, &ch) in name.iter().enumerate() {
        let next = name.get(i + 1).copied();
        if ch.is_ascii_alphanumeric() || ch == b'_' {
            label_len += 1;
            if label_len > MAX_LABEL_LEN {
                return false;
            }
            if !ch.is_ascii_digit() {
                non_numeric = true;
            }
        } else if ch == b'.' {
            if label_len == 0 || next.is_none() {
                return false;
            }
            label_len = 0;
        } else if ch == b'-' {
            non_numeric = true;
            label_len += 1;
            if label_len == 1 || next.is_none() || next == Some(b'.') {
                return false;
            }
        } else {
            return false;
        }
    }
    non_numeric && name.len() <= MAX_NAME_LEN
}

/// Why a site has no ASCII form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsciiError {
    /// Neither ASCII nor valid UTF-8.
    MalformedUtf8,
    /// ICU refused it.
    Uts46(String),
    /// ICU's result is not a valid host name.
    MalformedAscii(String),
}

impl std::fmt::Display for AsciiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsciiError::MalformedUtf8 => f.write_str("malformed UTF-8"),
            AsciiError::Uts46(why) => f.write_str(why),
            AsciiError::MalformedAscii(ascii) => write!(f, "malformed ASCII label(s) in {ascii}"),
        }
    }
}

/// A site's ASCII form, as Postfix's `midna_domain_to_ascii` computes it.
pub fn site_to_ascii(site: &[u8]) -> Result<String, AsciiError> {
    // Postfix keeps ICU away from input that is not even UTF-8.
    if !site.is_ascii() && std::str::from_utf8(site).is_err() {
        return Err(AsciiError::MalformedUtf8);
    }
    let ascii = flushbed_icu::to_ascii(site).map_err(|e| AsciiError::Uts46(e.to_string()))?;
    if !valid_hostname(ascii.as_bytes()) {
        return Err(AsciiError::MalformedAscii(ascii));
    }
    Ok(ascii)
}

/// The logfile name of an ASCII site name: letters lower-cased, every
/// other character but a digit turned into `_`.
pub fn logfile_name(ascii: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_alphanumerics_and_underscores_up_to_255() {
        assert!(queue_id_ok(b"A2AD898C68C"));
        assert!(queue_id_ok(b"example_com"));
        assert!(queue_id_ok(&[b'a'; 255]));
        assert!(!queue_id_ok(&[b'a'; 256]));
        assert!(!queue_id_ok(b""));
        assert!(!queue_id_ok(b"A1\r"));
        assert!(!queue_id_ok(b"a.b"));
        assert!(!queue_id_ok(b"a-b"));
        assert!(!queue_id_ok("é".as_bytes()));
    }

    #[test]
    fn valid_hostname_follows_postfix() {
        assert!(valid_hostname(b"example.com"));
        assert!(valid_hostname(b"under_score.example.com"));
        assert!(valid_hostname(b"a-b.example"));
        assert!(valid_hostname(b"1.2.3.a"));
        assert!(!valid_hostname(b"1.2.3.4"));
        assert!(!valid_hostname(b""));
        assert!(!valid_hostname(b"example.com."));
        assert!(!valid_hostname(b".example.com"));
        assert!(!valid_hostname(b"a..b"));
        assert!(!valid_hostname(b"-a.example"));
        assert!(!valid_hostname(b"a-.example"));
        assert!(!valid_hostname(b"[127.0.0.1]"));
        assert!(valid_hostname(&[b'a'; 63]));
        assert!(!valid_hostname(&[b'a'; 64]));
    }

    #[test]
    fn valid_hostname_limits_the_whole_name_to_255() {
        let mut name = vec![b'a'];
        while name.len() < 255 {
            name.extend_from_slice(b".a");
        }
        assert_eq!(name.len(), 255);
        assert!(valid_hostname(&name));
        name.extend_from_slice(b".a");
        assert!(!valid_hostname(&name));
    }

    #[test]
    fn logfile_names_of_the_spec_table() {
        let name = |site: &str| site_to_ascii(site.as_bytes()).map(|a| logfile_name(&a));
        assert_eq!(name("EXAMPLE.ORG").unwrap(), "example_org");
        assert_eq!(name("a.example.org").unwrap(), "a_example_org");
        assert_eq!(
            name("under_score.example.com").unwrap(),
            "under_score_example_com"
        );
        assert_eq!(
            name("straße.example.com").unwrap(),
            "xn__strae_oqa_example_com"
        );
        assert!(name("example.com.").is_err());
        assert!(name("[127.0.0.1]").is_err());
    }

    #[test]
    fn hyphen_and_underscore_share_a_logfile() {
        let a = logfile_name(&site_to_ascii(b"a-b.example").unwrap());
        let b = logfile_name(&site_to_ascii(b"a_b.example").unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_utf8_never_reaches_icu() {
        assert_eq!(
            site_to_ascii(b"\xffexample.com"),
            Err(AsciiError::MalformedUtf8)
        );
    }

    #[test]
    fn uts46_refusals_have_no_ascii_form() {
        assert!(site_to_ascii(b"ab--c.example").is_err());
        assert!(site_to_ascii(b"xn--zz.example").is_err());
        assert!(site_to_ascii(&[b'a'; 64]).is_err());
    }
}
