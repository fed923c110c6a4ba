//! Writing Postfix's "attr0" attribute lists, so that a scenario's
//! convenience events (`add`, `send_site`, ...) can be turned into the exact
//! bytes a real client sends.
//!
//! Only the *client's* encoding lives here. How a server reads these bytes,
//! and how it writes its reply, are rules that the model and the
//! implementation each state for themselves.

/// The attribute names of the flush protocol (`mail_proto.h`).
pub const ATTR_REQUEST: &str = "request";
pub const ATTR_SITE: &str = "site";
pub const ATTR_QUEUE_ID: &str = "queue_id";
pub const ATTR_STATUS: &str = "status";
pub const ATTR_PROTOCOL: &str = "protocol";

/// The request names (`flush_clnt.h`).
pub const REQ_ADD: &str = "add";
pub const REQ_SEND_SITE: &str = "send_site";
pub const REQ_SEND_FILE: &str = "send_file";
pub const REQ_REFRESH: &str = "rfrsh";
pub const REQ_PURGE: &str = "purge";

/// An attribute list: each name NUL value NUL, then one more NUL.
pub fn attr_list<N: AsRef<[u8]>, V: AsRef<[u8]>>(attrs: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in attrs {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out.push(0);
    out
}

/// `add` as `flush_add()` sends it.
pub fn add_request(site: &[u8], queue_id: &[u8]) -> Vec<u8> {
    attr_list(&[
        (ATTR_REQUEST.as_bytes(), REQ_ADD.as_bytes()),
        (ATTR_SITE.as_bytes(), site),
        (ATTR_QUEUE_ID.as_bytes(), queue_id),
    ])
}

/// `send_site` as `flush_send_site()` sends it.
pub fn send_site_request(site: &[u8]) -> Vec<u8> {
    attr_list(&[
        (ATTR_REQUEST.as_bytes(), REQ_SEND_SITE.as_bytes()),
        (ATTR_SITE.as_bytes(), site),
    ])
}

/// `send_file` as `flush_send_file()` sends it.
pub fn send_file_request(queue_id: &[u8]) -> Vec<u8> {
    attr_list(&[
        (ATTR_REQUEST.as_bytes(), REQ_SEND_FILE.as_bytes()),
        (ATTR_QUEUE_ID.as_bytes(), queue_id),
    ])
}

/// `rfrsh` as `flush_refresh()` sends it.
pub fn refresh_request() -> Vec<u8> {
    attr_list(&[(ATTR_REQUEST, REQ_REFRESH)])
}

/// `purge` as `flush_purge()` sends it.
pub fn purge_request() -> Vec<u8> {
    attr_list(&[(ATTR_REQUEST, REQ_PURGE)])
}

/// The master's wakeup: a UNIX-socket trigger is the byte then a NUL.
pub fn wakeup_trigger() -> Vec<u8> {
    vec![b'W', 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_request_is_nul_separated_and_closed_by_an_empty_name() {
        assert_eq!(
            add_request(b"example.com", b"ABC"),
            b"request\0add\0site\0example.com\0queue_id\0ABC\0\0"
        );
    }
}
