//! What one request to a flush server looks like from the outside: the
//! statuses a client can be told, the triggers the server sends to the queue
//! manager, and the profile the server runs in.

use serde::{Deserialize, Serialize};

/// A flush status, as `flush_clnt.h` names them. The numeric value is the
/// one a client sees after decoding the reply; how the server writes it on
/// the wire is a rule of each side, not of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// `FLUSH_STAT_OK`: the request completed normally.
    Ok,
    /// `FLUSH_STAT_FAIL`: the request failed (a table could not be read).
    Fail,
    /// `FLUSH_STAT_BAD`: a bad request name or parameter value.
    Bad,
    /// `FLUSH_STAT_DENY`: the site is not eligible for a fast flush logfile.
    Deny,
}

impl Status {
    /// The value a client holds after decoding the reply.
    pub fn code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Fail => -1,
            Status::Bad => 3,
            Status::Deny => 4,
        }
    }

    /// The status a decoded value stands for, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        match code {
            0 => Some(Status::Ok),
            -1 => Some(Status::Fail),
            3 => Some(Status::Bad),
            4 => Some(Status::Deny),
            _ => None,
        }
    }

    /// Postfix's name for the status.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Fail => "FAIL",
            Status::Bad => "BAD",
            Status::Deny => "DENY",
        }
    }
}

/// A one-byte trigger, as sent to the queue manager's `public/qmgr` (or, for
/// [`Trigger::Wakeup`], by the master to a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Trigger {
    /// `I`: scan the incoming queue.
    ScanIncoming,
    /// `F`: forget dead destinations and transports.
    FlushDead,
    /// `D`: scan the deferred queue.
    ScanDeferred,
    /// `A`: ignore time stamps on the next scan.
    ScanAll,
    /// `W`: the master's periodic wakeup of a service.
    Wakeup,
}

impl Trigger {
    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Trigger::ScanIncoming => b'I',
            Trigger::FlushDead => b'F',
            Trigger::ScanDeferred => b'D',
            Trigger::ScanAll => b'A',
            Trigger::Wakeup => b'W',
        }
    }

    /// The trigger a byte stands for, if any.
    pub fn from_byte(byte: u8) -> Option<Trigger> {
        match byte {
            b'I' => Some(Trigger::ScanIncoming),
            b'F' => Some(Trigger::FlushDead),
            b'D' => Some(Trigger::ScanDeferred),
            b'A' => Some(Trigger::ScanAll),
            b'W' => Some(Trigger::Wakeup),
            _ => None,
        }
    }
}

/// Which behaviour a flush server copies (the spec's section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The real Postfix 3.7 server exactly, its bugs and weaknesses included.
    Postfix,
    /// The same answers and effects, except where Postfix loses or corrupts
    /// data or dies: those places are named departures.
    #[default]
    Strict,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Postfix => "postfix",
            Profile::Strict => "strict",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postfix" => Ok(Profile::Postfix),
            "strict" => Ok(Profile::Strict),
            other => Err(format!(
                "unknown profile \"{other}\": expected postfix or strict"
            )),
        }
    }
}

/// One connection to a flush server as its client and the queue manager saw
/// it. The model and every target produce one per request event, and the
/// lockstep runner compares them field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Exchange {
    /// Every byte the server wrote to the client, the protocol announcement
    /// included, up to the close of the connection.
    pub output: Vec<u8>,
    /// The triggers the server sent to the queue manager, in the order sent.
    pub triggers: Vec<Trigger>,
    /// The server process died during the request (a fatal error); the next
    /// request is served by a fresh process.
    pub died: bool,
}
