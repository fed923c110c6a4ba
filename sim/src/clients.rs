//! The programs that ask the flush server for something, end to end: SMTP
//! `ETRN` (smtpd), `postqueue -s site` (and `sendmail -qRsite`),
//! `postqueue -i queue_id`, `postqueue -f` (which does not use the flush
//! server at all), and the client library's bare `flush_refresh()` and
//! `flush_purge()`.
//!
//! Each runs in two halves around the flush request, so that the lockstep
//! runner can send the one request to both sides and show each side's
//! reply to the client: [`begin`] makes the client's local decisions (an
//! `ETRN` syntax error, a site the client library refuses without
//! connecting), and [`finish`] turns the status the server gave into what
//! a person sees. The rules themselves are the model's
//! ([`flushbed_model::client::Client`]); this module only strings them
//! together.

use flushbed_model::client::{Client, EtrnSession, EtrnStep, LocalDecision};
use flushbed_vocab::{Status, Trigger};
use serde::Serialize;

/// A client program, with what it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `ETRN` with its argument words.
    Etrn {
        args: Vec<Vec<u8>>,
        session: EtrnSession,
    },
    /// `postqueue -s site`.
    PostqueueSite { site: Vec<u8> },
    /// `postqueue -i queue_id`.
    PostqueueFile { queue_id: Vec<u8> },
    /// The client library's `flush_refresh()`, as a program calls it.
    LibraryRefresh,
    /// The client library's `flush_purge()`.
    LibraryPurge,
}

/// What a person sees of one client program.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClientResult {
    /// The `ETRN` reply line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// `postqueue`'s exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// `postqueue`'s error line (empty when it said nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

/// The first half of a client program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// Done without a flush request; `status` is the client library's own
    /// refusal, if it came that far.
    Done {
        result: ClientResult,
        status: Option<Status>,
    },
    /// Send this flush request, then [`finish`] with the status read back.
    Send { request: Vec<u8>, pending: Pending },
}

/// What [`finish`] needs to remember from [`begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Etrn {
        site: Vec<u8>,
    },
    PostqueueSite {
        site: Vec<u8>,
    },
    PostqueueFile {
        queue_id: Vec<u8>,
    },
    /// A bare client library call: nothing to show but its status.
    Library,
}

/// The client's local decisions, up to the flush request.
pub fn begin(client: &Client, command: &Command) -> Begun {
    match command {
        Command::Etrn { args, session } => {
            let words: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            match client.etrn(&words, *session) {
                EtrnStep::Reply(line) => Begun::Done {
                    result: ClientResult {
                        smtp: Some(line),
                        ..ClientResult::default()
                    },
                    status: None,
                },
                EtrnStep::SendSite(site) => match client.flush_send_site(&site) {
                    LocalDecision::Send(request) => Begun::Send {
                        request,
                        pending: Pending::Etrn { site },
                    },
                    LocalDecision::Refuse(status) => Begun::Done {
                        result: finish(client, &Pending::Etrn { site }, status),
                        status: Some(status),
                    },
                },
            }
        }
        Command::PostqueueSite { site } => {
            let pending = Pending::PostqueueSite { site: site.clone() };
            decide(client, client.flush_send_site(site), pending)
        }
        Command::PostqueueFile { queue_id } => {
            let pending = Pending::PostqueueFile {
                queue_id: queue_id.clone(),
            };
            decide(client, client.flush_send_file(queue_id), pending)
        }
        Command::LibraryRefresh => decide(client, client.flush_refresh(), Pending::Library),
        Command::LibraryPurge => decide(client, client.flush_purge(), Pending::Library),
    }
}

fn decide(client: &Client, decision: LocalDecision, pending: Pending) -> Begun {
    match decision {
        LocalDecision::Send(request) => Begun::Send { request, pending },
        LocalDecision::Refuse(status) => Begun::Done {
            result: finish(client, &pending, status),
            status: Some(status),
        },
    }
}

/// The status a client reads from what the server wrote: no reply is a
/// failure to the client library.
pub fn client_status(output: &[u8]) -> Status {
    Client::decode_reply(output).unwrap_or(Status::Fail)
}

/// What the program shows, given the status of its flush request.
pub fn finish(client: &Client, pending: &Pending, status: Status) -> ClientResult {
    match pending {
        Pending::Etrn { site } => ClientResult {
            smtp: Some(client.etrn_reply(site, status)),
            ..ClientResult::default()
        },
        Pending::PostqueueSite { site } => {
            let r = client.postqueue_site_result(site, status);
            ClientResult {
                exit: Some(r.exit),
                stderr: Some(r.stderr),
                smtp: None,
            }
        }
        Pending::PostqueueFile { queue_id } => {
            let r = client.postqueue_file_result(queue_id, status);
            ClientResult {
                exit: Some(r.exit),
                stderr: Some(r.stderr),
                smtp: None,
            }
        }
        Pending::Library => ClientResult::default(),
    }
}

/// `postqueue -f` (and `sendmail -q`): no flush request; the queue manager
/// is told to forget dead destinations, ignore time stamps, and scan the
/// deferred and incoming queues.
pub const POSTQUEUE_F_TRIGGERS: [Trigger; 4] = [
    Trigger::FlushDead,
    Trigger::ScanAll,
    Trigger::ScanDeferred,
    Trigger::ScanIncoming,
];

/// What `postqueue -f` shows: nothing, and success.
pub fn postqueue_f_result() -> ClientResult {
    ClientResult {
        smtp: None,
        exit: Some(0),
        stderr: Some(String::new()),
    }
}
