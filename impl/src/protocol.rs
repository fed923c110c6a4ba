//! The flush protocol on the server's side: announce, tell a master
//! trigger from a client request, read one request exactly as Postfix's
//! flush server reads it, and write the reply.
//!
//! On connect the server writes `protocol\0queue_flush_protocol\0\0`. It
//! waits for input; two bytes or fewer waiting when data first arrives
//! make a *trigger*: a NUL-terminated string (`W`, the master's wakeup)
//! handled like a request name. Otherwise it reads an attribute list, name
//! NUL value NUL: `request` first and nothing before it; then, for `add`,
//! `send_site` and `send_file`, the attributes the request takes, strictly
//! in order, and the empty name that ends the list. A missing, misplaced
//! or unterminated attribute makes the request BAD; an unexpected one
//! after all the expected ones is logged and the request is still carried
//! out. `rfrsh` and `purge` read nothing after the request name. A request
//! name the server does not know gets no reply at all.
//!
//! The status is written as Postfix's attribute writer writes an int, with
//! `%u`: FAIL (-1) goes on the wire as `4294967295`. Two measured quirks of
//! the real server's stream decide whether it is written in full: when the
//! client closes without sending a byte, the reply loses its attribute name
//! (`3\0\0`); after a read that failed or timed out, nothing more is
//! written on the connection at all, though the work a trigger asked for is
//! still done ([`Channel`]).
//!
//! Postfix bounds neither an attribute's size nor (beyond an hour) the
//! wait for input; the `strict` profile bounds both ([`Limits::strict`]).

use std::time::Duration;

use flushbed_vocab::wire::{
    ATTR_QUEUE_ID, ATTR_REQUEST, ATTR_SITE, ATTR_STATUS, REQ_ADD, REQ_PURGE, REQ_REFRESH,
    REQ_SEND_FILE, REQ_SEND_SITE,
};
use flushbed_vocab::Status;
use tracing::{debug, warn};

use crate::Connection;

/// What the server writes first on every connection.
pub const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// The master's wakeup trigger, as a request name.
pub const WAKEUP: &[u8] = b"W";

/// Input of this many bytes or fewer, when it first arrives, is a trigger.
pub const TRIGGER_MAX_LEN: usize = 2;

/// The longest attribute name or value the `strict` profile reads.
pub const STRICT_MAX_ATTRIBUTE_LEN: usize = 4096;

/// How long the `strict` profile waits for input.
pub const STRICT_READ_WAIT: Duration = Duration::from_secs(60);

/// How long Postfix waits for input (`ipc_timeout`).
pub const POSTFIX_READ_WAIT: Duration = Duration::from_secs(3600);

/// Bounds on what one request may cost the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest attribute name or value; `None` for no bound.
    pub max_attribute_len: Option<usize>,
    /// How long to wait for input.
    pub read_wait: Duration,
}

impl Limits {
    /// The real server's: no size bound, an hour's wait.
    pub fn postfix() -> Limits {
        Limits {
            max_attribute_len: None,
            read_wait: POSTFIX_READ_WAIT,
        }
    }

    /// The `strict` profile's named bounds.
    pub fn strict() -> Limits {
        Limits {
            max_attribute_len: Some(STRICT_MAX_ATTRIBUTE_LEN),
            read_wait: STRICT_READ_WAIT,
        }
    }
}

/// One request, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Add {
        site: Vec<u8>,
        queue_id: Vec<u8>,
    },
    SendSite {
        site: Vec<u8>,
    },
    SendFile {
        queue_id: Vec<u8>,
    },
    /// `rfrsh`, or the master's wakeup.
    Refresh,
    Purge,
}

/// What reading a connection produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Request(Request),
    /// The input was not a well-formed request: reply BAD.
    Bad,
    /// A request name the server does not know: close without a reply.
    Unknown(Vec<u8>),
}

/// What a reply on this connection becomes, after what reading it did to
/// the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The reply is written as it is.
    Normal,
    /// The input ended before its first byte: the reply's attribute name
    /// and its NUL are lost, so BAD goes out as `3\0\0`.
    EmptyInput,
    /// A read failed or timed out: no reply is written.
    Silenced,
}

impl Channel {
    /// The bytes of a reply with `code` on this channel.
    pub fn reply(self, code: i32) -> Vec<u8> {
        let reply = status_reply(code);
        match self {
            Channel::Normal => reply,
            Channel::EmptyInput => reply[ATTR_STATUS.len() + 1..].to_vec(),
            Channel::Silenced => Vec::new(),
        }
    }
}

/// One NUL-terminated string from the input.
enum Text {
    Terminated(Vec<u8>),
    /// The input ended first.
    Unterminated(Vec<u8>),
    /// Longer than the profile reads.
    TooLong,
}

/// A byte reader over a connection, with one-byte lookahead; a read error
/// is the end of input, as in Postfix's stream reader.
struct Reader<'a> {
    conn: &'a mut dyn Connection,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
    /// A read failed (or timed out).
    failed: bool,
    /// Any byte was ever read.
    got_data: bool,
    max_len: Option<usize>,
}

impl Reader<'_> {
    fn fill(&mut self) -> bool {
        if self.pos < self.buf.len() {
            return true;
        }
        if self.ended {
            return false;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.conn.read(&mut chunk) {
                Ok(0) => {
                    self.ended = true;
                    return false;
                }
                Ok(n) => {
                    self.got_data = true;
                    self.buf.clear();
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.pos = 0;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "client: read error or timeout, taken as end of input");
                    self.ended = true;
                    self.failed = true;
                    return false;
                }
            }
        }
    }

    fn at_end(&mut self) -> bool {
        !self.fill()
    }

    fn getc(&mut self) -> Option<u8> {
        if !self.fill() {
            return None;
        }
        let byte = self.buf[self.pos];
        self.pos += 1;
        Some(byte)
    }

    fn string(&mut self) -> Text {
        let mut text = Vec::new();
        loop {
            match self.getc() {
                None => return Text::Unterminated(text),
                Some(0) => return Text::Terminated(text),
                Some(byte) => {
                    text.push(byte);
                    if self.max_len.is_some_and(|max| text.len() > max) {
                        return Text::TooLong;
                    }
                }
            }
        }
    }

    /// Reads the attributes `wanted`, strictly in order. With `more`, the
    /// list may go on (the request name is read that way); without it, the
    /// list must be closed, or followed by an unexpected attribute, which
    /// is logged and left unread.
    fn scan(&mut self, wanted: &[&str], more: bool) -> Option<Vec<Vec<u8>>> {
        if self.at_end() {
            debug!("client: end of input before the attribute list");
            return None;
        }

        let mut values = Vec::with_capacity(wanted.len());
        for name in wanted {
            let found = match self.string() {
                Text::Terminated(found) => found,
                Text::Unterminated(_) => {
                    warn!(attribute = name, "client: premature end of input");
                    return None;
                }
                Text::TooLong => {
                    warn!(attribute = name, "client: attribute name too long");
                    return None;
                }
            };
            if found.is_empty() {
                warn!(attribute = name, "client: missing attribute");
                return None;
            }
            if found != name.as_bytes() {
                warn!(
                    attribute = %String::from_utf8_lossy(&found),
                    expecting = name,
                    "client: unexpected attribute"
                );
                return None;
            }
            match self.string() {
                Text::Terminated(value) => values.push(value),
                Text::Unterminated(_) | Text::TooLong => {
                    warn!(attribute = name, "client: bad attribute value");
                    return None;
                }
            }
        }
        if more {
            return Some(values);
        }

        // The list terminator; an extra attribute in its place is only a
        // warning, and the request is still done.
        match self.string() {
            Text::Terminated(name) if name.is_empty() => Some(values),
            Text::Terminated(name) => {
                warn!(
                    attribute = %String::from_utf8_lossy(&name),
                    expecting = "(list terminator)",
                    "client: unexpected attribute"
                );
                Some(values)
            }
            Text::Unterminated(_) | Text::TooLong => {
                warn!("client: end of input while reading the list terminator");
                None
            }
        }
    }
}

/// Reads one request from a connection whose announcement was written,
/// and says what the reply will become on it.
pub fn receive(conn: &mut dyn Connection, limits: Limits) -> (Received, Channel) {
    let mut reader = Reader {
        conn,
        buf: Vec::new(),
        pos: 0,
        ended: false,
        failed: false,
        got_data: false,
        max_len: limits.max_attribute_len,
    };
    let received = receive_from(&mut reader, limits);
    let channel = if reader.failed {
        Channel::Silenced
    } else if reader.ended && !reader.got_data {
        Channel::EmptyInput
    } else {
        Channel::Normal
    };
    (received, channel)
}

fn receive_from(reader: &mut Reader<'_>, limits: Limits) -> Received {
    let conn = &mut *reader.conn;
    if let Err(e) = conn.set_read_timeout(Some(limits.read_wait)) {
        warn!(error = %e, "client: cannot set the read timeout");
    }

    // How much is waiting when input first arrives picks the protocol.
    let waiting = match conn.wait_and_peek() {
        Ok(waiting) => waiting,
        Err(e) => {
            warn!(error = %e, "client: timeout or error while waiting for data");
            return Received::Bad;
        }
    };
    let request = if waiting <= TRIGGER_MAX_LEN {
        match reader.string() {
            Text::Terminated(name) => name,
            // At the end of input Postfix reads back the last byte as a
            // signed char, so a trigger ending in 0xFF looks like EOF.
            Text::Unterminated(name) if name.last().is_some_and(|&b| b != 0xFF) => name,
            Text::Unterminated(_) | Text::TooLong => {
                warn!("client: end of input while reading a trigger");
                return Received::Bad;
            }
        }
    } else {
        match reader.scan(&[ATTR_REQUEST], true) {
            Some(mut values) => values.remove(0),
            None => return Received::Bad,
        }
    };

    let request = match request.as_slice() {
        name if name == REQ_ADD.as_bytes() => match reader.scan(&[ATTR_SITE, ATTR_QUEUE_ID], false)
        {
            Some(mut values) => {
                let queue_id = values.pop().unwrap_or_default();
                let site = values.pop().unwrap_or_default();
                Request::Add { site, queue_id }
            }
            None => return Received::Bad,
        },
        name if name == REQ_SEND_SITE.as_bytes() => match reader.scan(&[ATTR_SITE], false) {
            Some(mut values) => Request::SendSite {
                site: values.pop().unwrap_or_default(),
            },
            None => return Received::Bad,
        },
        name if name == REQ_SEND_FILE.as_bytes() => match reader.scan(&[ATTR_QUEUE_ID], false) {
            Some(mut values) => Request::SendFile {
                queue_id: values.pop().unwrap_or_default(),
            },
            None => return Received::Bad,
        },
        name if name == REQ_REFRESH.as_bytes() || name == WAKEUP => Request::Refresh,
        name if name == REQ_PURGE.as_bytes() => Request::Purge,
        _ => return Received::Unknown(request),
    };
    Received::Request(request)
}

/// The reply attribute list for a status code, the int written with `%u`.
pub fn status_reply(code: i32) -> Vec<u8> {
    let mut reply = Vec::with_capacity(20);
    reply.extend_from_slice(ATTR_STATUS.as_bytes());
    reply.push(0);
    reply.extend_from_slice((code as u32).to_string().as_bytes());
    reply.extend_from_slice(b"\0\0");
    reply
}

/// The reply for a status.
pub fn reply(status: Status) -> Vec<u8> {
    status_reply(status.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryConnection;
    use flushbed_vocab::wire;

    fn read(input: &[u8]) -> Received {
        receive(&mut MemoryConnection::new(input), Limits::postfix()).0
    }

    fn channel(input: &[u8]) -> Channel {
        receive(&mut MemoryConnection::new(input), Limits::postfix()).1
    }

    fn add(site: &[u8], id: &[u8]) -> Received {
        Received::Request(Request::Add {
            site: site.to_vec(),
            queue_id: id.to_vec(),
        })
    }

    #[test]
    fn fail_is_written_unsigned() {
        assert_eq!(reply(Status::Fail), b"status\x004294967295\0\0");
        assert_eq!(reply(Status::Ok), b"status\x000\0\0");
        assert_eq!(reply(Status::Bad), b"status\x003\0\0");
        assert_eq!(reply(Status::Deny), b"status\x004\0\0");
    }

    #[test]
    fn client_requests_as_the_client_library_sends_them() {
        assert_eq!(
            read(&wire::add_request(b"example.com", b"ABC")),
            add(b"example.com", b"ABC")
        );
        assert_eq!(
            read(&wire::send_site_request(b"example.com")),
            Received::Request(Request::SendSite {
                site: b"example.com".to_vec()
            })
        );
        assert_eq!(
            read(&wire::send_file_request(b"ABC")),
            Received::Request(Request::SendFile {
                queue_id: b"ABC".to_vec()
            })
        );
        assert_eq!(
            read(&wire::refresh_request()),
            Received::Request(Request::Refresh)
        );
        assert_eq!(
            read(&wire::purge_request()),
            Received::Request(Request::Purge)
        );
    }

    #[test]
    fn short_input_is_a_trigger_string() {
        assert_eq!(
            read(&wire::wakeup_trigger()),
            Received::Request(Request::Refresh)
        );
        assert_eq!(read(b"W"), Received::Request(Request::Refresh));
        assert_eq!(read(b"x\0"), Received::Unknown(b"x".to_vec()));
        assert_eq!(read(b"\0"), Received::Unknown(Vec::new()));
    }

    #[test]
    fn empty_input_is_bad_and_loses_the_reply_attribute_name() {
        assert_eq!(read(b""), Received::Bad);
        assert_eq!(channel(b""), Channel::EmptyInput);
        assert_eq!(Channel::EmptyInput.reply(Status::Bad.code()), b"3\0\0");
        assert_eq!(channel(b"\xff"), Channel::Normal);
        assert_eq!(channel(b"request\0add\0"), Channel::Normal);
    }

    /// Input that arrives in pieces, then fails.
    struct Failing(Vec<&'static [u8]>);

    impl Connection for Failing {
        fn wait_and_peek(&mut self) -> std::io::Result<usize> {
            Ok(self.0.first().map_or(0, |chunk| chunk.len()))
        }
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "timed out",
                ));
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
        fn write_all(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_read_timeout_silences_the_reply_but_a_wakeup_is_still_done() {
        let (received, channel) = receive(&mut Failing(vec![b"W"]), Limits::postfix());
        assert_eq!(received, Received::Request(Request::Refresh));
        assert_eq!(channel, Channel::Silenced);
        assert!(Channel::Silenced.reply(0).is_empty());

        let cut = &b"request\0add\0site\0example.com\0queue_id\0ABC\0"[..];
        let (received, channel) = receive(&mut Failing(vec![cut]), Limits::postfix());
        assert_eq!((received, channel), (Received::Bad, Channel::Silenced));
    }

    #[test]
    fn a_request_split_after_two_bytes_is_read_as_a_trigger_name() {
        let split = Failing(vec![b"re", b"quest\0rfrsh\0\0"]);
        let (received, channel) = receive(&mut { split }, Limits::postfix());
        assert_eq!(received, Received::Unknown(b"request".to_vec()));
        assert_eq!(channel, Channel::Normal);
        let split = Failing(vec![b"req", b"uest\0rfrsh\0\0"]);
        assert_eq!(
            receive(&mut { split }, Limits::postfix()).0,
            Received::Request(Request::Refresh)
        );
    }

    #[test]
    fn a_trigger_ending_in_0xff_reads_as_end_of_input() {
        assert_eq!(read(b"\xff"), Received::Bad);
        assert_eq!(read(b"W\xff"), Received::Bad);
    }

    #[test]
    fn the_request_must_come_first() {
        assert_eq!(read(b"site\0example.com\0request\0add\0\0"), Received::Bad);
        assert_eq!(read(b"\0request\0add\0"), Received::Bad);
    }

    #[test]
    fn unknown_request_names_get_no_reply() {
        assert_eq!(
            read(b"request\0bogus_request\0\0"),
            Received::Unknown(b"bogus_request".to_vec())
        );
    }

    #[test]
    fn missing_or_out_of_order_attributes_are_bad() {
        assert_eq!(read(b"request\0add\0site\0example.com\0\0"), Received::Bad);
        assert_eq!(
            read(b"request\0add\0queue_id\0ABC\0site\0example.com\0\0"),
            Received::Bad
        );
        assert_eq!(read(b"request\0add\0\0"), Received::Bad);
        assert_eq!(read(b"request\0add\0"), Received::Bad);
    }

    #[test]
    fn an_unterminated_list_is_bad() {
        assert_eq!(
            read(b"request\0add\0site\0example.com\0queue_id\0ABC\0"),
            Received::Bad
        );
        assert_eq!(
            read(b"request\0add\0site\0example.com\0queue_id\0ABC"),
            Received::Bad
        );
    }

    #[test]
    fn an_extra_attribute_after_the_expected_ones_is_only_logged() {
        let input = b"request\0add\0site\0example.com\0queue_id\0ABC\0extra\0junk\0\0";
        assert_eq!(read(input), add(b"example.com", b"ABC"));
        assert_eq!(
            read(b"request\0add\0site\0a\0queue_id\0B\0extra\0"),
            add(b"a", b"B")
        );
        // The name in the terminator's place must itself be complete.
        assert_eq!(
            read(b"request\0add\0site\0a\0queue_id\0B\0extra"),
            Received::Bad
        );
    }

    #[test]
    fn refresh_and_purge_read_nothing_after_the_request_name() {
        assert_eq!(
            read(b"request\0rfrsh\0"),
            Received::Request(Request::Refresh)
        );
        assert_eq!(
            read(b"request\0purge\0junk"),
            Received::Request(Request::Purge)
        );
        assert_eq!(read(b"request\0W\0\0"), Received::Request(Request::Refresh));
    }

    #[test]
    fn strict_bounds_attribute_sizes() {
        let site = vec![b'a'; STRICT_MAX_ATTRIBUTE_LEN + 1];
        let input = wire::add_request(&site, b"ABC");
        assert_eq!(
            receive(&mut MemoryConnection::new(&input), Limits::strict()).0,
            Received::Bad
        );
        assert_eq!(read(&input), add(&site, b"ABC"));
        let site = vec![b'a'; STRICT_MAX_ATTRIBUTE_LEN];
        let input = wire::add_request(&site, b"ABC");
        assert_eq!(
            receive(&mut MemoryConnection::new(&input), Limits::strict()).0,
            add(&site, b"ABC")
        );
    }
}
