//! How the flush server reads a request and writes its answer, byte for
//! byte: Postfix's "attr0" attribute lists (`attr_scan0.c`,
//! `attr_print0.c`), the NUL-terminated trigger string of the master's
//! wakeup (`vstring_get_null`), and the choice between the two that
//! `flush_request_receive` makes from the size of the first input.
//!
//! The reader is a faithful copy of the scanner's decisions, not a general
//! parser: the flush server calls it twice per request (once for `request`
//! with "more to come", then once for the request's own attributes), and the
//! client library calls it for the announcement and the status. Every
//! outcome the server acts on is the scanner's return value: the number of
//! attributes converted, or -1 for a broken stream.

/// The announcement the server writes as soon as a client connects.
pub const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// The value of the `protocol` attribute in the announcement.
pub const FLUSH_PROTOCOL: &[u8] = b"queue_flush_protocol";

/// Input of at most this many bytes, when it first arrives, is a trigger
/// string rather than an attribute list.
pub const TRIGGER_MAX_BYTES: usize = 2;

/// `VSTREAM_EOF`.
const EOF: i32 = -1;

/// `ATTR_FLAG_MISSING`: complain about (and stop at) a missing attribute.
pub const FLAG_MISSING: u32 = 1 << 0;
/// `ATTR_FLAG_EXTRA`: stop at an attribute that is not the one wanted.
pub const FLAG_EXTRA: u32 = 1 << 1;
/// `ATTR_FLAG_MORE`: the list goes on; do not read its terminator.
pub const FLAG_MORE: u32 = 1 << 2;
/// `ATTR_FLAG_STRICT`.
pub const FLAG_STRICT: u32 = FLAG_MISSING | FLAG_EXTRA;

/// The reply to a request: `status`, the number as `attr_print0` writes an
/// int (`%u`, so FAIL's -1 is `4294967295`), and the list terminator.
pub fn status_reply(code: i32) -> Vec<u8> {
    let mut out = b"status\0".to_vec();
    // attr_print0 prints every int as an unsigned number.
    out.extend_from_slice((code as u32).to_string().as_bytes());
    out.push(0);
    out.push(0);
    out
}

/// The reply when the client closed its side without sending a byte: the
/// real server's first write after such an end of input is lost inside its
/// stream buffer, so only the value and the two NULs arrive (`3\0\0` for
/// BAD), as measured on Postfix 3.7.11 (`docs/REAL-POSTFIX.md`, section 2).
pub fn status_reply_after_empty_input(code: i32) -> Vec<u8> {
    let mut out = (code as u32).to_string().into_bytes();
    out.push(0);
    out.push(0);
    out
}

/// One attribute a scan asks for.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// `RECV_ATTR_STR`.
    Str(&'a str),
    /// `RECV_ATTR_INT`.
    Int(&'a str),
    /// `RECV_ATTR_STREQ`: the value must be exactly this; not counted.
    StrEq(&'a str, &'a [u8]),
}

impl<'a> Wanted<'a> {
    fn name(&self) -> &'a str {
        match self {
            Wanted::Str(name) | Wanted::Int(name) | Wanted::StrEq(name, _) => name,
        }
    }
}

/// A converted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    Int(u32),
}

/// What one `attr_scan0` call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The scanner's return value: attributes converted, or -1.
    pub result: i32,
    /// The values converted, in the order asked for.
    pub values: Vec<Value>,
    /// Why the scan stopped where it did, for a reader of the narration.
    pub why: String,
}

impl Scan {
    /// The string value at this position, if it was converted.
    pub fn string(&self, index: usize) -> Option<&[u8]> {
        match self.values.get(index) {
            Some(Value::Str(value)) => Some(value),
            _ => None,
        }
    }
}

/// The result of `vstring_get_null`: the bytes read and the function's
/// return value (0 after a NUL, the last byte read as a signed char at the
/// end of input, or EOF when nothing was read).
struct NullString {
    bytes: Vec<u8>,
    result: i32,
}

/// The client's bytes as the server's stream sees them.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The longest attribute string read (`strict`); `None`: any length.
    max_len: Option<usize>,
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input {
            bytes,
            at: 0,
            max_len: None,
        }
    }

    /// Input whose attribute names and values may be at most `max_len`
    /// bytes long, as a `strict` server reads them.
    pub fn bounded(bytes: &'a [u8], max_len: Option<usize>) -> Input<'a> {
        Input {
            bytes,
            at: 0,
            max_len,
        }
    }

    /// Whether the client sent nothing at all.
    pub fn was_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    /// `vstring_get_null`: read up to a NUL (consumed, not kept) or the end.
    fn get_null(&mut self) -> NullString {
        let rest = self.rest();
        match rest.iter().position(|&b| b == 0) {
            Some(nul) => {
                self.at += nul + 1;
                NullString {
                    bytes: rest[..nul].to_vec(),
                    result: 0,
                }
            }
            None => {
                self.at = self.bytes.len();
                NullString {
                    bytes: rest.to_vec(),
                    result: last_char_or_eof(rest),
                }
            }
        }
    }

    /// `attr_scan0_string`: a string must end in a NUL; anything else is a
    /// broken stream. Postfix reads a string of any length; under strict
    /// (`Departure::UnboundedAttributes`) a longer one than the bound is a
    /// broken stream too, whether or not it would have ended.
    fn attr_string(&mut self) -> Result<Vec<u8>, &'static str> {
        let got = self.get_null();
        if self.max_len.is_some_and(|max| got.bytes.len() > max) {
            return Err("attribute longer than the strict bound");
        }
        if got.result == EOF {
            return Err("premature end-of-input");
        }
        if got.result != 0 {
            return Err("unexpected end-of-input");
        }
        Ok(got.bytes)
    }

    /// `flush_request_receive`, after the announcement: the request name,
    /// or why the server could not read one (the reply is then BAD).
    pub fn receive_request(&mut self) -> Result<Vec<u8>, String> {
        // The server looks at how much input is waiting when it first
        // arrives: the master's wakeup is a byte and a NUL.
        if self.bytes.len() <= TRIGGER_MAX_BYTES {
            let got = self.get_null();
            if got.result == EOF {
                return Err(if self.bytes.is_empty() {
                    "end-of-input while reading request: the client sent nothing".to_string()
                } else {
                    "end-of-input while reading request: the trigger string ends in byte 0xff, \
                     which reads as the end-of-file value"
                        .to_string()
                });
            }
            return Ok(got.bytes);
        }
        let scan = self.attr_scan(FLAG_MORE | FLAG_STRICT, &[Wanted::Str("request")]);
        if scan.result != 1 {
            return Err(format!("cannot read the request attribute: {}", scan.why));
        }
        Ok(scan.string(0).unwrap_or_default().to_vec())
    }

    /// `attr_scan0`: read the wanted attributes in order, then (unless
    /// `FLAG_MORE`) the list terminator.
    pub fn attr_scan(&mut self, flags: u32, wanted: &[Wanted<'_>]) -> Scan {
        let mut values = Vec::new();
        let stop = |result: i32, values: Vec<Value>, why: String| Scan {
            result,
            values,
            why,
        };

        // Nothing at all to read counts as nothing converted, not as an error.
        if self.rest().is_empty() {
            return stop(0, values, "end of input before the list".to_string());
        }

        let mut conversions: i32 = 0;
        let mut index = 0;
        loop {
            let want = wanted.get(index).copied();
            if want.is_none() && flags & FLAG_MORE != 0 {
                return stop(
                    conversions,
                    values,
                    "all wanted attributes read".to_string(),
                );
            }
            let wanted_name = want.map_or("(list terminator)", |w| w.name()).to_string();

            // Find the wanted name in the input, skipping others if allowed.
            let want = loop {
                let name = match self.attr_string() {
                    Ok(name) => name,
                    Err(why) => {
                        return stop(
                            -1,
                            values,
                            format!(
                                "{why} while reading an attribute name (wanted: {wanted_name})"
                            ),
                        )
                    }
                };
                if name.is_empty() {
                    let why = match want {
                        None => "list terminator read".to_string(),
                        Some(_) => format!("missing attribute {wanted_name}"),
                    };
                    return stop(conversions, values, why);
                }
                if let Some(want) = want.filter(|_| name == wanted_name.as_bytes()) {
                    break want;
                }
                if flags & FLAG_EXTRA != 0 {
                    return stop(
                        conversions,
                        values,
                        format!(
                            "unexpected attribute {} (expecting: {wanted_name})",
                            String::from_utf8_lossy(&name)
                        ),
                    );
                }
                // Not asked for: skip its value, whatever happens.
                let _ = self.attr_string();
            };

            // Convert the value.
            let value = match self.attr_string() {
                Ok(value) => value,
                Err(why) => {
                    return stop(
                        -1,
                        values,
                        format!("{why} while reading the value of {wanted_name}"),
                    )
                }
            };
            match want {
                Wanted::Str(_) => values.push(Value::Str(value)),
                Wanted::Int(_) => match scan_unsigned(&value) {
                    Some(number) => values.push(Value::Int(number)),
                    None => {
                        return stop(
                            -1,
                            values,
                            format!(
                                "malformed numerical data in {wanted_name}: {}",
                                String::from_utf8_lossy(&value)
                            ),
                        )
                    }
                },
                Wanted::StrEq(_, expected) => {
                    if value != expected {
                        return stop(
                            -1,
                            values,
                            format!(
                                "unexpected {wanted_name} {} (expected: {})",
                                String::from_utf8_lossy(&value),
                                String::from_utf8_lossy(expected)
                            ),
                        );
                    }
                    conversions -= 1;
                }
            }
            conversions += 1;
            index += 1;
        }
    }
}

/// `VSTRING_GET_RESULT`: the last byte read, as the signed `char` it is on
/// amd64, or EOF when nothing was read. A last byte 0xff is therefore -1,
/// the same as EOF.
fn last_char_or_eof(read: &[u8]) -> i32 {
    match read.last() {
        Some(&last) => i32::from(last as i8),
        None => EOF,
    }
}

/// `vstring_get_nonl`: one line without its newline, and whether the
/// caller sees a line (the function did not return EOF). `None` at the end
/// of input.
pub fn get_line_nonl(bytes: &[u8], at: &mut usize) -> Option<(Vec<u8>, bool)> {
    let rest = &bytes[*at..];
    if rest.is_empty() {
        return None;
    }
    match rest.iter().position(|&b| b == b'\n') {
        Some(newline) => {
            *at += newline + 1;
            Some((rest[..newline].to_vec(), true))
        }
        None => {
            *at = bytes.len();
            Some((rest.to_vec(), last_char_or_eof(rest) != EOF))
        }
    }
}

/// `vstring_get` (as `vstring_fgets` uses it): one line with its newline,
/// and whether the caller sees it.
pub fn get_line(bytes: &[u8], at: &mut usize) -> Option<(Vec<u8>, bool)> {
    let rest = &bytes[*at..];
    if rest.is_empty() {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .map_or(rest.len(), |newline| newline + 1);
    *at += end;
    let line = rest[..end].to_vec();
    let seen = last_char_or_eof(&line) != EOF;
    Some((line, seen))
}

/// `sscanf(value, "%u%c")` returning exactly 1: optional white space, an
/// optional sign, digits, and nothing after them. Values beyond the range
/// of `unsigned long` saturate, and the result is cut to 32 bits, as glibc
/// does.
fn scan_unsigned(value: &[u8]) -> Option<u32> {
    let mut rest = value;
    while let [first, tail @ ..] = rest {
        if !is_c_space(*first) {
            break;
        }
        rest = tail;
    }
    let negative = rest.first() == Some(&b'-');
    if matches!(rest.first(), Some(b'-' | b'+')) {
        rest = &rest[1..];
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits != rest.len() {
        return None;
    }
    let magnitude = rest.iter().try_fold(0u64, |sum, &d| {
        sum.checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
    });
    let number = match magnitude {
        Some(m) if negative => m.wrapping_neg(),
        Some(m) => m,
        None => u64::MAX,
    };
    Some(number as u32)
}

/// C's `isspace()` in the C locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_is_written_as_an_unsigned_number() {
        assert_eq!(status_reply(-1), b"status\x004294967295\0\0");
        assert_eq!(status_reply(4), b"status\x004\0\0");
    }

    #[test]
    fn after_empty_input_the_attribute_name_is_lost() {
        assert_eq!(status_reply_after_empty_input(3), b"3\0\0");
    }

    #[test]
    fn two_bytes_or_fewer_are_a_trigger_string() {
        assert_eq!(Input::new(b"W\0").receive_request().unwrap(), b"W");
        assert_eq!(Input::new(b"W").receive_request().unwrap(), b"W");
        assert_eq!(Input::new(b"\0").receive_request().unwrap(), b"");
        assert!(Input::new(b"").receive_request().is_err());
    }

    #[test]
    fn a_trigger_ending_in_0xff_reads_as_end_of_file() {
        assert!(Input::new(b"\xff").receive_request().is_err());
        assert!(Input::new(b"a\xff").receive_request().is_err());
        assert_eq!(Input::new(b"\xff\0").receive_request().unwrap(), b"\xff");
    }

    #[test]
    fn request_must_be_the_first_attribute() {
        assert!(Input::new(b"site\0x\0request\0add\0\0")
            .receive_request()
            .is_err());
        assert!(Input::new(b"\0\0\0").receive_request().is_err());
        let mut input = Input::new(b"request\0add\0site\0x\0");
        assert_eq!(input.receive_request().unwrap(), b"add");
        assert_eq!(input.rest(), b"site\0x\0");
    }

    #[test]
    fn an_extra_attribute_after_the_wanted_ones_still_counts_them() {
        let mut input = Input::new(b"site\0a\0queue_id\0B\0extra\0");
        let scan = input.attr_scan(FLAG_STRICT, &[Wanted::Str("site"), Wanted::Str("queue_id")]);
        assert_eq!(scan.result, 2);
        assert!(scan.why.contains("unexpected attribute extra"));
    }

    #[test]
    fn a_missing_terminator_breaks_the_scan() {
        let mut input = Input::new(b"site\0a\0queue_id\0B\0");
        let scan = input.attr_scan(FLAG_STRICT, &[Wanted::Str("site"), Wanted::Str("queue_id")]);
        assert_eq!(scan.result, -1);
        let mut input = Input::new(b"site\0a\0queue_id\0B\0junk");
        assert_eq!(
            input
                .attr_scan(FLAG_STRICT, &[Wanted::Str("site"), Wanted::Str("queue_id")])
                .result,
            -1
        );
    }

    #[test]
    fn missing_or_misplaced_attributes_stop_early() {
        let wanted = [Wanted::Str("site"), Wanted::Str("queue_id")];
        assert_eq!(
            Input::new(b"site\0a\0\0")
                .attr_scan(FLAG_STRICT, &wanted)
                .result,
            1
        );
        assert_eq!(
            Input::new(b"queue_id\0B\0site\0a\0\0")
                .attr_scan(FLAG_STRICT, &wanted)
                .result,
            0
        );
        assert_eq!(Input::new(b"").attr_scan(FLAG_STRICT, &wanted).result, 0);
        assert_eq!(
            Input::new(b"site\0a")
                .attr_scan(FLAG_STRICT, &wanted)
                .result,
            -1
        );
    }

    #[test]
    fn numbers_are_read_as_sscanf_reads_them() {
        assert_eq!(scan_unsigned(b"0"), Some(0));
        assert_eq!(scan_unsigned(b" 4"), Some(4));
        assert_eq!(scan_unsigned(b"-1"), Some(u32::MAX));
        assert_eq!(scan_unsigned(b"4294967295"), Some(u32::MAX));
        assert_eq!(scan_unsigned(b"4 "), None);
        assert_eq!(scan_unsigned(b""), None);
        assert_eq!(scan_unsigned(b"x"), None);
    }

    #[test]
    fn a_last_line_ending_in_0xff_is_not_seen() {
        let bytes = b"A\nB\xff";
        let mut at = 0;
        assert_eq!(get_line_nonl(bytes, &mut at), Some((b"A".to_vec(), true)));
        assert_eq!(
            get_line_nonl(bytes, &mut at),
            Some((b"B\xff".to_vec(), false))
        );
        assert_eq!(get_line_nonl(bytes, &mut at), None);
        let mut at = 0;
        assert_eq!(get_line_nonl(b"\n", &mut at), Some((Vec::new(), true)));
        let mut at = 0;
        assert_eq!(
            get_line_nonl(b"B\xff\n", &mut at),
            Some((b"B\xff".to_vec(), true))
        );
    }
}
