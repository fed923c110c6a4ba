//! The client side of flush(8), as the model states it: what `flush_clnt.c`
//! refuses locally, how it reads a reply (`mail_command_client`), and how
//! `smtpd`'s `ETRN` and `postqueue` turn a status into what a person sees.
//!
//! The client library reads `fast_flush_domains` the same way the server
//! does, so a site the server would deny is usually never sent: `add` and
//! `send_site` are refused locally with DENY (or FAIL on a table error),
//! and `rfrsh` and `purge` with DENY when `fast_flush_domains` is empty.
//! `send_file` always goes to the server.
//!
//! # Limitations
//!
//! - The warnings a client prints before its fatal line (a failed connect,
//!   a table that cannot be read) are not modelled: a [`CommandResult`]
//!   holds the fatal line only.
//! - `smtpd_etrn_restrictions` and milters are not modelled: `ETRN` goes
//!   from its syntax check straight to the flush request.
//! - A broken `fast_flush_domains` makes a real client program exit at
//!   start-up; the model's client refuses with FAIL instead.

use flushbed_vocab::wire::{
    add_request, purge_request, refresh_request, send_file_request, send_site_request,
};
use flushbed_vocab::{FlushConfig, Status};

use crate::domain_list::{DomainList, ListError, Verdict};
use crate::names::{c_string, mail_queue_id_ok, valid_hostname, valid_mailhost_literal};
use crate::wire::{Input, Value, Wanted, FLAG_STRICT, FLUSH_PROTOCOL};
use crate::Tables;

/// The exit status of every fatal error of `postqueue`: `EX_UNAVAILABLE`.
/// Its source names `EX_USAGE` (64) for an invalid destination or queue ID
/// and a BAD reply, and `EX_SOFTWARE` (70) for an unexpected status, but
/// the cleanup hook it installs at its start exits 69 before that status
/// is used; the real 3.7.11 `postqueue -s bad..name` exits 69.
const POSTQUEUE_FATAL: i32 = 69;

/// What a client library call does before it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDecision {
    /// Connect and send these bytes.
    Send(Vec<u8>),
    /// Refuse without connecting, with this status.
    Refuse(Status),
}

/// The session state `ETRN` depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtrnSession {
    /// A HELO or EHLO was sent in this session.
    pub helo_seen: bool,
    /// A MAIL transaction is in progress.
    pub in_transaction: bool,
}

/// What `ETRN` does with its argument before any flush request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtrnStep {
    /// Reply at once, without asking the flush server.
    Reply(String),
    /// Ask the flush client library for `send_site` on this site (the
    /// argument with a leading `@` or `#` stripped).
    SendSite(Vec<u8>),
}

/// What `postqueue` (or `sendmail -q`) shows: its exit status and what it
/// wrote to standard error (one line, without its newline; empty when it
/// wrote nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub exit: i32,
    pub stderr: String,
}

impl CommandResult {
    fn ok() -> CommandResult {
        CommandResult {
            exit: 0,
            stderr: String::new(),
        }
    }

    /// `msg_fatal_status`: `postqueue: fatal: ...`.
    fn fatal(exit: i32, text: String) -> CommandResult {
        CommandResult {
            exit,
            stderr: format!("postqueue: fatal: {text}"),
        }
    }
}

/// The flush client library of one program that read this configuration.
#[derive(Debug, Clone)]
pub struct Client {
    domains: Result<DomainList, ListError>,
    /// `fast_flush_domains` is the empty string.
    service_off: bool,
    smtpd_helo_required: bool,
}

impl Client {
    pub fn new(config: &FlushConfig, tables: Tables) -> Client {
        let domains = DomainList::parse(
            &config.fast_flush_domains,
            config.fast_flush_parent_style(),
            config.smtputf8_enable,
            &tables,
        );
        Client {
            domains,
            service_off: config.fast_flush_domains.is_empty(),
            smtpd_helo_required: config.smtpd_helo_required,
        }
    }

    /// The local eligibility check of `flush_add` and `flush_send_site`:
    /// `None` to go ahead, or the status to refuse with.
    fn refusal(&self, site: &[u8]) -> Option<Status> {
        let Ok(domains) = &self.domains else {
            return Some(Status::Fail);
        };
        match domains.matches(site) {
            Verdict::Eligible(_) => None,
            Verdict::NotEligible(_) => Some(Status::Deny),
            Verdict::TableError(_) => Some(Status::Fail),
        }
    }

    /// `flush_add(site, queue_id)`, as a delivery agent calls it for a
    /// deferred recipient.
    pub fn flush_add(&self, site: &[u8], queue_id: &[u8]) -> LocalDecision {
        let (site, queue_id) = (c_string(site), c_string(queue_id));
        match self.refusal(site) {
            Some(status) => LocalDecision::Refuse(status),
            None => LocalDecision::Send(add_request(site, queue_id)),
        }
    }

    /// `flush_send_site(site)`.
    pub fn flush_send_site(&self, site: &[u8]) -> LocalDecision {
        let site = c_string(site);
        match self.refusal(site) {
            Some(status) => LocalDecision::Refuse(status),
            None => LocalDecision::Send(send_site_request(site)),
        }
    }

    /// `flush_send_file(queue_id)`: never refused locally.
    pub fn flush_send_file(&self, queue_id: &[u8]) -> LocalDecision {
        LocalDecision::Send(send_file_request(c_string(queue_id)))
    }

    /// `flush_refresh()`.
    pub fn flush_refresh(&self) -> LocalDecision {
        if self.service_off {
            return LocalDecision::Refuse(Status::Deny);
        }
        LocalDecision::Send(refresh_request())
    }

    /// `flush_purge()`.
    pub fn flush_purge(&self) -> LocalDecision {
        if self.service_off {
            return LocalDecision::Refuse(Status::Deny);
        }
        LocalDecision::Send(purge_request())
    }

    /// The status a client reads from everything the server wrote (the
    /// announcement included), or `None` when there was no reply (the
    /// client library then reports FAIL). A number that `flush_clnt.h` has
    /// no name for is also `None`.
    pub fn decode_reply(output: &[u8]) -> Option<Status> {
        let mut input = Input::new(output);

        // The announcement: nothing at all also passes this check.
        let announced = input.attr_scan(FLAG_STRICT, &[Wanted::StrEq("protocol", FLUSH_PROTOCOL)]);
        if announced.result != 0 {
            return None;
        }

        let reply = input.attr_scan(FLAG_STRICT, &[Wanted::Int("status")]);
        if reply.result != 1 {
            return None;
        }
        match reply.values.first() {
            Some(Value::Int(code)) => Status::from_code(*code as i32),
            _ => None,
        }
    }

    /// `ETRN` with these argument words, up to the flush request.
    pub fn etrn(&self, args: &[&[u8]], session: EtrnSession) -> EtrnStep {
        if self.smtpd_helo_required && !session.helo_seen {
            return EtrnStep::Reply("503 Error: send HELO/EHLO first".to_string());
        }
        if session.in_transaction {
            return EtrnStep::Reply("503 Error: MAIL transaction in progress".to_string());
        }
        let [arg] = args else {
            return EtrnStep::Reply("500 Syntax: ETRN domain".to_string());
        };

        // One leading @ or # is dropped (RFC 1985's forms).
        let arg = c_string(arg);
        let site = match arg.first() {
            Some(b'@' | b'#') => &arg[1..],
            _ => arg,
        };

        // A host name or an address literal; a UTF-8 name is neither.
        if !valid_hostname(site) && !valid_mailhost_literal(site) {
            return EtrnStep::Reply("501 Error: invalid parameter syntax".to_string());
        }
        EtrnStep::SendSite(site.to_vec())
    }

    /// The `ETRN` reply for the status `send_site` gave.
    pub fn etrn_reply(&self, site: &[u8], status: Status) -> String {
        match status {
            Status::Ok => "250 Queuing started".to_string(),
            Status::Deny => format!(
                "459 <{}>: service unavailable",
                String::from_utf8_lossy(site)
            ),
            Status::Bad | Status::Fail => "458 Unable to queue messages".to_string(),
        }
    }

    /// What `postqueue -s site` says before it asks for anything: a site
    /// that is neither a host name nor an address literal is refused.
    pub fn postqueue_site_check(&self, site: &[u8]) -> Option<CommandResult> {
        let site = c_string(site);
        let ok = if site.first() == Some(&b'[') {
            valid_mailhost_literal(site)
        } else {
            valid_hostname(site)
        };
        if !ok {
            return Some(CommandResult::fatal(
                POSTQUEUE_FATAL,
                format!(
                    "Cannot flush mail queue - invalid destination: \"{}\"",
                    shorten(site)
                ),
            ));
        }

        // The client library's first use of the list opens its files and
        // tables; a command (unlike smtpd or the flush server) cannot go on
        // without one, so postqueue dies there, whatever the site.
        let failure = self.domains.as_ref().ok()?.open_failures().first()?;
        Some(CommandResult::fatal(POSTQUEUE_FATAL, failure.clone()))
    }

    /// What `postqueue -i queue_id` says before it asks for anything: a
    /// name that is not a queue ID is refused.
    pub fn postqueue_file_check(&self, queue_id: &[u8]) -> Option<CommandResult> {
        let queue_id = c_string(queue_id);
        (!mail_queue_id_ok(queue_id)).then(|| {
            CommandResult::fatal(
                POSTQUEUE_FATAL,
                format!(
                    "Cannot flush queue ID - invalid name: \"{}\"",
                    shorten(queue_id)
                ),
            )
        })
    }

    /// `postqueue -s site` / `sendmail -qRsite`, given the status. A site
    /// that [`Client::postqueue_site_check`] refuses never reaches the
    /// server, so its refusal is the result whatever the status.
    pub fn postqueue_site_result(&self, site: &[u8], status: Status) -> CommandResult {
        if let Some(refused) = self.postqueue_site_check(site) {
            return refused;
        }
        let site = String::from_utf8_lossy(c_string(site)).into_owned();
        match status {
            Status::Ok => CommandResult::ok(),
            Status::Bad => {
                CommandResult::fatal(POSTQUEUE_FATAL, format!("Invalid request: \"{site}\""))
            }
            Status::Fail => CommandResult::fatal(
                POSTQUEUE_FATAL,
                "Cannot flush mail queue - mail system is down".to_string(),
            ),
            Status::Deny => CommandResult::fatal(
                POSTQUEUE_FATAL,
                format!("Flush service is not configured for destination \"{site}\""),
            ),
        }
    }

    /// `postqueue -i queue_id`, given the status. DENY is not a status
    /// `postqueue` expects here. A queue ID that
    /// [`Client::postqueue_file_check`] refuses never reaches the server,
    /// so its refusal is the result whatever the status.
    pub fn postqueue_file_result(&self, queue_id: &[u8], status: Status) -> CommandResult {
        if let Some(refused) = self.postqueue_file_check(queue_id) {
            return refused;
        }
        let queue_id = String::from_utf8_lossy(c_string(queue_id)).into_owned();
        match status {
            Status::Ok => CommandResult::ok(),
            Status::Bad => {
                CommandResult::fatal(POSTQUEUE_FATAL, format!("Invalid request: \"{queue_id}\""))
            }
            Status::Fail => CommandResult::fatal(
                POSTQUEUE_FATAL,
                "Cannot flush mail queue - mail system is down".to_string(),
            ),
            Status::Deny => CommandResult::fatal(
                POSTQUEUE_FATAL,
                format!("Unexpected flush server reply status {}", status.code()),
            ),
        }
    }
}

/// `%.100s%s` with `...` when longer.
fn shorten(text: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&text[..text.len().min(100)]).into_owned();
    if text.len() > 100 {
        format!("{shown}...")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use flushbed_vocab::config::Environment;
    use flushbed_vocab::MainCf;

    use super::*;
    use crate::wire::{status_reply, ANNOUNCEMENT};

    fn client(main_cf: &str) -> Client {
        let main = MainCf::parse(main_cf, "main.cf").expect("main.cf");
        let config = FlushConfig::from_main_cf(&main, &Environment::default()).expect("config");
        Client::new(&config, Tables::default())
    }

    const SESSION: EtrnSession = EtrnSession {
        helo_seen: true,
        in_transaction: false,
    };

    #[test]
    fn the_library_refuses_ineligible_sites_and_table_errors_locally() {
        let c = client("fast_flush_domains = example.com, texthash:/absent\n");
        assert!(matches!(
            c.flush_add(b"a.example.com", b"ABC"),
            LocalDecision::Send(_)
        ));
        assert_eq!(
            c.flush_send_site(b"example.net"),
            LocalDecision::Refuse(Status::Fail)
        );
        let c = client("fast_flush_domains = example.com\n");
        assert_eq!(
            c.flush_send_site(b"example.net"),
            LocalDecision::Refuse(Status::Deny)
        );
        assert_eq!(
            c.flush_send_file(b"ABC"),
            LocalDecision::Send(b"request\0send_file\0queue_id\0ABC\0\0".to_vec())
        );
    }

    #[test]
    fn refresh_and_purge_are_refused_only_when_the_list_is_empty() {
        let off = client("compatibility_level = 3.6\n");
        assert_eq!(off.flush_refresh(), LocalDecision::Refuse(Status::Deny));
        assert_eq!(off.flush_purge(), LocalDecision::Refuse(Status::Deny));
        let on = client("fast_flush_domains = example.com\n");
        assert!(matches!(on.flush_refresh(), LocalDecision::Send(_)));
        assert_eq!(off.flush_send_file(b"A"), on.flush_send_file(b"A"));
    }

    #[test]
    fn decode_reads_the_status_after_the_announcement() {
        for status in [Status::Ok, Status::Fail, Status::Bad, Status::Deny] {
            let mut output = ANNOUNCEMENT.to_vec();
            output.extend_from_slice(&status_reply(status.code()));
            assert_eq!(Client::decode_reply(&output), Some(status));
        }
        assert_eq!(Client::decode_reply(ANNOUNCEMENT), None);
        assert_eq!(Client::decode_reply(b""), None);
        assert_eq!(
            Client::decode_reply(b"protocol\0other\0\0status\x000\0\0"),
            None
        );
        assert_eq!(
            Client::decode_reply(b"protocol\0queue_flush_protocol\0\0status\x000\0"),
            None
        );
        assert_eq!(
            Client::decode_reply(b"protocol\0queue_flush_protocol\0\0status\x007\0\0"),
            None
        );
    }

    #[test]
    fn etrn_checks_session_then_syntax() {
        let c = client("fast_flush_domains = example.com\nsmtpd_helo_required = yes\n");
        let no_helo = EtrnSession {
            helo_seen: false,
            in_transaction: false,
        };
        assert_eq!(
            c.etrn(&[b"example.com"], no_helo),
            EtrnStep::Reply("503 Error: send HELO/EHLO first".into())
        );
        let in_mail = EtrnSession {
            helo_seen: true,
            in_transaction: true,
        };
        assert_eq!(
            c.etrn(&[b"example.com"], in_mail),
            EtrnStep::Reply("503 Error: MAIL transaction in progress".into())
        );
        assert_eq!(
            c.etrn(&[], SESSION),
            EtrnStep::Reply("500 Syntax: ETRN domain".into())
        );
        assert_eq!(
            c.etrn(&[b"a", b"b"], SESSION),
            EtrnStep::Reply("500 Syntax: ETRN domain".into())
        );
        assert_eq!(
            c.etrn(&[b"@example.com"], SESSION),
            EtrnStep::SendSite(b"example.com".to_vec())
        );
        assert_eq!(
            c.etrn(&[b"#Example.NET"], SESSION),
            EtrnStep::SendSite(b"Example.NET".to_vec())
        );
        assert_eq!(
            c.etrn(&[b"[127.0.0.1]"], SESSION),
            EtrnStep::SendSite(b"[127.0.0.1]".to_vec())
        );
        assert_eq!(
            c.etrn(&["bücher.example.com".as_bytes()], SESSION),
            EtrnStep::Reply("501 Error: invalid parameter syntax".into())
        );
        assert_eq!(
            c.etrn(&[b"@@x.example"], SESSION),
            EtrnStep::Reply("501 Error: invalid parameter syntax".into())
        );
    }

    #[test]
    fn helo_is_required_only_when_configured() {
        let c = client("fast_flush_domains = example.com\n");
        let no_helo = EtrnSession {
            helo_seen: false,
            in_transaction: false,
        };
        assert_eq!(
            c.etrn(&[b"example.com"], no_helo),
            EtrnStep::SendSite(b"example.com".to_vec())
        );
    }

    #[test]
    fn etrn_replies_as_smtpd_does() {
        let c = client("fast_flush_domains = example.com\n");
        assert_eq!(
            c.etrn_reply(b"example.com", Status::Ok),
            "250 Queuing started"
        );
        assert_eq!(
            c.etrn_reply(b"shop.example", Status::Deny),
            "459 <shop.example>: service unavailable"
        );
        assert_eq!(
            c.etrn_reply(b"x", Status::Bad),
            "458 Unable to queue messages"
        );
        assert_eq!(
            c.etrn_reply(b"x", Status::Fail),
            "458 Unable to queue messages"
        );
    }

    #[test]
    fn postqueue_reports_each_status_with_its_exit_code() {
        let c = client("fast_flush_domains = example.com\n");
        assert_eq!(
            c.postqueue_site_result(b"example.com", Status::Ok),
            CommandResult::ok()
        );
        assert_eq!(
            c.postqueue_site_result(b"shop.example", Status::Deny),
            CommandResult {
                exit: 69,
                stderr: "postqueue: fatal: Flush service is not configured for destination \
                         \"shop.example\""
                    .into()
            }
        );
        assert_eq!(c.postqueue_site_result(b"x.example", Status::Bad).exit, 69);
        assert_eq!(c.postqueue_site_result(b"bad..site", Status::Ok).exit, 69);
        assert_eq!(
            c.postqueue_file_result(b"not-a-queue-id", Status::Ok).exit,
            69
        );
        assert_eq!(
            c.postqueue_site_result(b"x.example", Status::Fail).stderr,
            "postqueue: fatal: Cannot flush mail queue - mail system is down"
        );
        assert_eq!(
            c.postqueue_file_result(b"ABC", Status::Bad).stderr,
            "postqueue: fatal: Invalid request: \"ABC\""
        );
        assert_eq!(c.postqueue_file_result(b"ABC", Status::Deny).exit, 69);
    }

    #[test]
    fn postqueue_checks_the_argument_before_asking() {
        let c = client("fast_flush_domains = example.com\n");
        assert_eq!(c.postqueue_site_check(b"example.com"), None);
        assert_eq!(c.postqueue_site_check(b"[127.0.0.1]"), None);
        assert_eq!(
            c.postqueue_site_check(b"bad site").map(|r| r.exit),
            Some(69)
        );
        assert_eq!(c.postqueue_file_check(b"ABC"), None);
        assert_eq!(
            c.postqueue_file_check(b"not-a-queue-id"),
            Some(CommandResult::fatal(
                69,
                "Cannot flush queue ID - invalid name: \"not-a-queue-id\"".to_string()
            ))
        );
    }
}
