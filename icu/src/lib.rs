//! The ICU calls Postfix makes on a site name, made the same way.
//!
//! - [`to_ascii`]: UTS #46 ToASCII, exactly as a Postfix built with ICU
//!   computes it (`midna_domain.c`).
//! - [`fold_case`]: full Unicode case folding, as Postfix's `casefold()`
//!   does when `smtputf8_enable` is on.
//!
//! Postfix converts a site name to ASCII with ICU's `uidna_nameToASCII_UTF8`
//! on a UTS #46 object opened with non-transitional processing (so `ß` stays
//! `ß` and becomes `xn--...`), and with none of the optional checks (no
//! STD3 rules, so `_` passes; no Bidi, no CONTEXTJ, no CONTEXTO). It
//! accepts the result only when ICU reports no error at all. This crate is
//! that one call, with nothing added: the checks Postfix makes before and
//! after it (valid UTF-8, `valid_hostname()`) are rules, and the model and
//! the implementation state them for themselves.
//!
//! Calling ICU itself, rather than a re-implementation, is deliberate: the
//! `idna` crate always applies the Bidi and joiner checks, which ICU with
//! Postfix's options does not, and so would disagree with the real server on
//! right-to-left and joiner names.

use std::sync::OnceLock;

/// ICU's opaque `UIDNA`.
#[repr(C)]
pub struct UIdna {
    _private: [u8; 0],
}

/// ICU's `UIDNAInfo`.
#[repr(C)]
pub struct UIdnaInfo {
    size: i16,
    is_transitional_different: i8,
    reserved_b3: i8,
    errors: u32,
    reserved_i2: i32,
    reserved_i3: i32,
}

/// ICU's opaque `UCaseMap`.
#[repr(C)]
pub struct UCaseMap {
    _private: [u8; 0],
}

mod ffi {
    use super::{UCaseMap, UIdna, UIdnaInfo};
    include!(concat!(env!("OUT_DIR"), "/icu_bindings.rs"));
}

pub use ffi::ICU_VERSION;

/// `UIDNA_NONTRANSITIONAL_TO_ASCII`: what Postfix 3.7 opens its ToASCII
/// object with, unless `enable_idna2003_compatibility = yes`.
pub const POSTFIX_OPTIONS: u32 = 0x10;

/// `UIDNA_DEFAULT` (transitional processing: `ß` becomes `ss`): what
/// Postfix uses with `enable_idna2003_compatibility = yes`.
pub const IDNA2003_OPTIONS: u32 = 0;

/// The longest result Postfix accepts: its buffer is 1024 bytes, one kept
/// for the terminating NUL.
const CAPACITY: usize = 1023;

/// Why ICU refused a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uts46Error {
    /// ICU's `UErrorCode` was a failure (for example a result too long for
    /// Postfix's buffer, or invalid UTF-8).
    Failure(i32),
    /// ICU's `UIDNAInfo.errors`: the `UIDNA_ERROR_*` bits.
    Errors(u32),
    /// ICU produced an empty result.
    Empty,
}

impl std::fmt::Display for Uts46Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uts46Error::Failure(code) => write!(f, "ICU error code {code}"),
            Uts46Error::Errors(bits) => {
                write!(f, "UTS #46 errors 0x{bits:x} ({})", error_names(*bits))
            }
            Uts46Error::Empty => f.write_str("empty result"),
        }
    }
}

impl std::error::Error for Uts46Error {}

/// The names of the `UIDNA_ERROR_*` bits that are set.
pub fn error_names(bits: u32) -> String {
    const NAMES: [&str; 15] = [
        "EMPTY_LABEL",
        "LABEL_TOO_LONG",
        "DOMAIN_NAME_TOO_LONG",
        "LEADING_HYPHEN",
        "TRAILING_HYPHEN",
        "HYPHEN_3_4",
        "LEADING_COMBINING_MARK",
        "DISALLOWED",
        "PUNYCODE",
        "LABEL_HAS_DOT",
        "INVALID_ACE_LABEL",
        "BIDI",
        "CONTEXTJ",
        "CONTEXTO_PUNCTUATION",
        "CONTEXTO_DIGITS",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join("|")
}

struct Handle(*mut UIdna);

// SAFETY: a UIDNA object is immutable after it is opened; ICU documents its
// conversion functions as safe to call concurrently on one object.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn open(options: u32) -> Handle {
    let mut error = 0i32;
    // SAFETY: plain call into ICU with a valid out-pointer.
    let idna = unsafe { ffi::uidna_openUTS46(options, &mut error) };
    assert!(
        error <= 0 && !idna.is_null(),
        "ICU uidna_openUTS46 failed: error {error}"
    );
    Handle(idna)
}

/// ToASCII of `name` (UTF-8 bytes) as ICU computes it with Postfix's
/// options, or why ICU refused it.
pub fn to_ascii(name: &[u8]) -> Result<String, Uts46Error> {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    convert(HANDLE.get_or_init(|| open(POSTFIX_OPTIONS)), name)
}

/// ToASCII with transitional processing, as Postfix converts names when
/// `enable_idna2003_compatibility = yes`.
pub fn to_ascii_idna2003(name: &[u8]) -> Result<String, Uts46Error> {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    convert(HANDLE.get_or_init(|| open(IDNA2003_OPTIONS)), name)
}

fn convert(handle: &Handle, name: &[u8]) -> Result<String, Uts46Error> {
    let length = i32::try_from(name.len()).map_err(|_| Uts46Error::Failure(1))?;
    let mut buf = vec![0u8; CAPACITY];
    let mut info = UIdnaInfo {
        size: std::mem::size_of::<UIdnaInfo>() as i16,
        is_transitional_different: 0,
        reserved_b3: 0,
        errors: 0,
        reserved_i2: 0,
        reserved_i3: 0,
    };
    let mut error = 0i32;
    // SAFETY: `name` and `buf` are valid for the lengths given, and `info`
    // and `error` are valid out-pointers.
    let written = unsafe {
        ffi::uidna_nameToASCII_UTF8(
            handle.0,
            name.as_ptr(),
            length,
            buf.as_mut_ptr(),
            CAPACITY as i32,
            &mut info,
            &mut error,
        )
    };
    if error > 0 {
        return Err(Uts46Error::Failure(error));
    }
    if info.errors != 0 {
        return Err(Uts46Error::Errors(info.errors));
    }
    if written <= 0 {
        return Err(Uts46Error::Empty);
    }
    buf.truncate(written as usize);
    String::from_utf8(buf).map_err(|_| Uts46Error::Failure(1))
}

struct CaseMap(*mut UCaseMap);

// SAFETY: a UCaseMap is not changed by the folding call; ICU allows
// concurrent use of one object for case mapping.
unsafe impl Send for CaseMap {}
unsafe impl Sync for CaseMap {}

fn case_map() -> &'static CaseMap {
    static MAP: OnceLock<CaseMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut error = 0i32;
        // SAFETY: an empty locale string and a valid out-pointer.
        let csm = unsafe { ffi::ucasemap_open(c"".as_ptr().cast(), 0, &mut error) };
        assert!(
            error <= 0 && !csm.is_null(),
            "ICU ucasemap_open failed: error {error}"
        );
        CaseMap(csm)
    })
}

/// Full Unicode case folding of UTF-8 text (`U_FOLD_CASE_DEFAULT`), as
/// Postfix's `casefold()` computes it with ICU; `None` when ICU refuses the
/// input (it is not valid UTF-8).
pub fn fold_case(text: &[u8]) -> Option<String> {
    let length = i32::try_from(text.len()).ok()?;
    let mut capacity = text.len() * 3 + 16;
    loop {
        let mut buf = vec![0u8; capacity];
        let mut error = 0i32;
        // SAFETY: `text` and `buf` are valid for the lengths given.
        let written = unsafe {
            ffi::ucasemap_utf8FoldCase(
                case_map().0,
                buf.as_mut_ptr(),
                capacity as i32,
                text.as_ptr(),
                length,
                &mut error,
            )
        };
        // U_BUFFER_OVERFLOW_ERROR: try again with the size ICU asked for.
        if error == 15 && written as usize > capacity {
            capacity = written as usize;
            continue;
        }
        if error > 0 || written < 0 {
            return None;
        }
        buf.truncate(written as usize);
        return String::from_utf8(buf).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_transitional_keeps_sharp_s() {
        assert_eq!(
            to_ascii("straße.example.com".as_bytes()).unwrap(),
            "xn--strae-oqa.example.com"
        );
        assert_eq!(
            to_ascii("Bücher.example.com".as_bytes()).unwrap(),
            "xn--bcher-kva.example.com"
        );
    }

    #[test]
    fn idna2003_compatibility_is_transitional() {
        assert_eq!(
            to_ascii_idna2003("straße.example.com".as_bytes()).unwrap(),
            "strasse.example.com"
        );
    }

    #[test]
    fn ascii_is_lowercased_and_underscore_passes() {
        assert_eq!(
            to_ascii(b"Under_Score.EXAMPLE.com").unwrap(),
            "under_score.example.com"
        );
    }

    #[test]
    fn hyphen_three_four_is_refused() {
        assert!(matches!(
            to_ascii(b"ab--c.example"),
            Err(Uts46Error::Errors(_))
        ));
        assert!(to_ascii(b"xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn no_bidi_or_joiner_check() {
        // A right-to-left label next to a left-to-right one fails CheckBidi,
        // which Postfix's options leave off.
        assert!(to_ascii("שלום.example1".as_bytes()).is_ok());
        // A ZERO WIDTH JOINER outside its allowed context fails CONTEXTJ.
        assert!(to_ascii("a\u{200d}b.example".as_bytes()).is_ok());
    }

    #[test]
    fn fold_case_is_full_unicode_folding() {
        assert_eq!(
            fold_case("Straße.EXAMPLE".as_bytes()).unwrap(),
            "strasse.example"
        );
        assert_eq!(fold_case("ΣΊΣΥΦΟΣ".as_bytes()).unwrap(), "σίσυφοσ");
        assert_eq!(fold_case(b"\xff"), None);
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(to_ascii(b"\xff.example").is_err());
    }
}
