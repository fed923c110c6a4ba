//! The client side of flush(8), as the model states it: what `flush_clnt.c`
//! refuses locally, how it reads a reply, and how `smtpd`'s `ETRN` and
//! `postqueue` turn a status into what a person sees.
//!
//! (API contract; the rules are filled in.)

use flushbed_vocab::{FlushConfig, Status};

use crate::Tables;

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
/// wrote to standard error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub exit: i32,
    pub stderr: String,
}

/// The flush client library of one program that read this configuration.
#[derive(Debug, Clone)]
pub struct Client {
    _private: (),
}

impl Client {
    pub fn new(config: &FlushConfig, tables: Tables) -> Client {
        let _ = (config, tables);
        todo!()
    }

    /// `flush_add(site, queue_id)`, as a delivery agent calls it for a
    /// deferred recipient.
    pub fn flush_add(&self, site: &[u8], queue_id: &[u8]) -> LocalDecision {
        let _ = (site, queue_id);
        todo!()
    }

    /// `flush_send_site(site)`.
    pub fn flush_send_site(&self, site: &[u8]) -> LocalDecision {
        let _ = site;
        todo!()
    }

    /// `flush_send_file(queue_id)`: never refused locally.
    pub fn flush_send_file(&self, queue_id: &[u8]) -> LocalDecision {
        let _ = queue_id;
        todo!()
    }

    /// `flush_refresh()`.
    pub fn flush_refresh(&self) -> LocalDecision {
        todo!()
    }

    /// `flush_purge()`.
    pub fn flush_purge(&self) -> LocalDecision {
        todo!()
    }

    /// The status a client reads from everything the server wrote (the
    /// announcement included), or `None` when there was no reply (the
    /// client library then reports FAIL).
    pub fn decode_reply(output: &[u8]) -> Option<Status> {
        let _ = output;
        todo!()
    }

    /// `ETRN` with these argument words, up to the flush request.
    pub fn etrn(&self, args: &[&[u8]], session: EtrnSession) -> EtrnStep {
        let _ = (args, session);
        todo!()
    }

    /// The `ETRN` reply for the status `send_site` gave.
    pub fn etrn_reply(&self, site: &[u8], status: Status) -> String {
        let _ = (site, status);
        todo!()
    }

    /// `postqueue -s site` / `sendmail -qRsite`, given the status.
    pub fn postqueue_site_result(&self, site: &[u8], status: Status) -> CommandResult {
        let _ = (site, status);
        todo!()
    }

    /// `postqueue -i queue_id`, given the status.
    pub fn postqueue_file_result(&self, queue_id: &[u8], status: Status) -> CommandResult {
        let _ = (queue_id, status);
        todo!()
    }
}
