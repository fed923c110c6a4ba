//! flushbed as the fast flush server of a real Postfix mail system.
//!
//! A private Postfix 3.7 on loopback runs its SMTP server, queue manager
//! and SMTP client, with no flush service of its own: `flushbed serve`
//! listens on `public/flush` in its place. A transport map sends the site
//! `example.com` to a loopback port. While nothing listens there, mail to
//! the site is deferred, and Postfix's own delivery agent adds it to the
//! site's logfile through flushbed; `ETRN example.com` gets `250 Queuing
//! started`, the mail is retried, still fails, and is added again. Once a
//! small SMTP sink listens on the port, the same `ETRN` delivers the mail
//! and leaves the logfile empty.
//!
//! Needs a real Postfix and root; skipped otherwise, with a message, unless
//! `FLUSHBED_REQUIRE_POSTFIX=1` demands it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flushbed_sim::lab::{self, Instance, InstanceSpec, Services};

/// The longest any one step may take; the whole test takes a few seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

const SITE: &str = "example.com";

fn postfix_here(test: &str) -> bool {
    match lab::instances_possible() {
        Ok(()) => true,
        Err(why) if std::env::var("FLUSHBED_REQUIRE_POSTFIX").is_ok_and(|v| v == "1") => {
            panic!("{test}: FLUSHBED_REQUIRE_POSTFIX=1, but {why}")
        }
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            false
        }
    }
}

/// A loopback port nobody listens on, for now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("the bound address").port()
}

/// Waits until `done` says yes, or fails the test saying what it waited
/// for, with the end of the maillog and flushbed's log.
fn wait_for(instance: &Instance, flushbed: &Flushbed, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < STEP_TIMEOUT,
            "waited {STEP_TIMEOUT:?} for {what}; maillog:\n{}\nflushbed serve's log:\n{}",
            instance.maillog_tail(40),
            flushbed.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `flushbed serve` on the instance's spool, stopped with SIGTERM on drop.
struct Flushbed {
    child: Child,
    log: PathBuf,
}

impl Flushbed {
    fn start(instance: &Instance) -> Flushbed {
        let log = instance.root().join("flushbed.log");
        let out = std::fs::File::create(&log).expect("creating flushbed's log");
        let err = out.try_clone().expect("duplicating flushbed's log");
        let child = Command::new(env!("CARGO_BIN_EXE_flushbed"))
            .arg("serve")
            .arg("--config")
            .arg(instance.config_dir())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting flushbed serve");
        let flushbed = Flushbed { child, log };

        let socket = instance.queue_dir().join("public/flush");
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "flushbed serve did not listen on {}; its log:\n{}",
                socket.display(),
                flushbed.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
        flushbed
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Flushbed {
    fn drop(&mut self) {
        // SIGTERM is flushbed's clean stop; only this child is signalled.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SMTP client session, line by line.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> Smtp {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to smtpd");
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("setting a read timeout");
        let writer = stream.try_clone().expect("cloning the SMTP stream");
        let mut smtp = Smtp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = smtp.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        smtp
    }

    /// One reply; of a multi-line reply, its last line.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("reading a reply");
            assert!(!line.is_empty(), "smtpd closed the connection");
            let line = line.trim_end().to_string();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    fn command(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("writing a command");
        self.reply()
    }

    /// Submits one message and returns its queue ID.
    fn submit(&mut self, from: &str, to: &str) -> String {
        assert!(self.command("EHLO client.test.invalid").starts_with("250"));
        assert!(self
            .command(&format!("MAIL FROM:<{from}>"))
            .starts_with("250"));
        assert!(self.command(&format!("RCPT TO:<{to}>")).starts_with("250"));
        assert!(self.command("DATA").starts_with("354"));
        let queued = self.command("Subject: fast flush\r\n\r\nDeferred, then flushed.\r\n.");
        // `250 2.0.0 Ok: queued as 4B2C1A3D5E`
        queued
            .rsplit_once("queued as ")
            .map(|(_, id)| id.trim().to_string())
            .unwrap_or_else(|| panic!("no queue ID in \"{queued}\""))
    }

    fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

/// A destination that takes every message: 220, 250, 354, 250, 221.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the sink's port");
        listener
            .set_nonblocking(true)
            .expect("making the sink's listener non-blocking");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got, stopping) = (received.clone(), stop.clone());
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let got = got.clone();
                        thread::spawn(move || sink_session(stream, &got));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Sink {
            port,
            received,
            stop,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One SMTP session with the sink; each message's text is kept.
fn sink_session(stream: TcpStream, received: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(STEP_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    if !say("220 sink.test.invalid ESMTP") {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) {
            return;
        }
        let verb = line.trim_end().to_ascii_uppercase();
        let answer = if verb.starts_with("DATA") {
            if !say("354 End data with <CR><LF>.<CR><LF>") {
                return;
            }
            let mut message = String::new();
            loop {
                let mut data = String::new();
                if reader.read_line(&mut data).map_or(true, |n| n == 0) {
                    return;
                }
                if data.trim_end() == "." {
                    break;
                }
                message.push_str(&data);
            }
            if let Ok(mut got) = received.lock() {
                got.push(message);
            }
            "250 2.0.0 Ok: taken"
        } else if verb.starts_with("QUIT") {
            let _ = say("221 2.0.0 Bye");
            return;
        } else {
            "250 sink.test.invalid"
        };
        if !say(answer) {
            return;
        }
    }
}

/// The site's logfile as flushbed left it; an ordinary read, since nothing
/// here depends on its atime.
fn logfile(instance: &Instance) -> Option<Vec<u8>> {
    std::fs::read(instance.queue_dir().join("flush/example_com")).ok()
}

/// How many times the maillog says the queue manager's SMTP client
/// deferred `queue_id`, and whether it says it was sent.
fn deliveries(instance: &Instance, queue_id: &str) -> (usize, bool) {
    let log = instance.maillog_since(0);
    let about = |status: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("{queue_id}: to=<")) && l.contains(status))
            .count()
    };
    (about("status=deferred"), about("status=sent") > 0)
}

/// Where the queue file of `queue_id` is: its queue directory's name.
fn queue_of(queue_dir: &Path, queue_id: &str) -> Option<String> {
    for queue in [
        "incoming", "active", "deferred", "hold", "corrupt", "maildrop",
    ] {
        let mut pending = vec![queue_dir.join(queue)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if entry.file_name().to_string_lossy() == queue_id {
                    return Some(queue.to_string());
                }
            }
        }
    }
    None
}

#[test]
fn etrn_through_flushbed_retries_deferred_mail_and_delivers_it_once_the_site_is_up() {
    let test = "etrn_through_flushbed_retries_deferred_mail_and_delivers_it_once_the_site_is_up";
    if !postfix_here(test) {
        return;
    }
    let smtpd_port = free_port();
    let site_port = free_port();

    // Backoff and scan times are long, so that within the test only ETRN
    // brings the deferred mail back to the queue manager.
    let main_cf = format!(
        "compatibility_level = 3.6\n\
         mydestination =\n\
         relay_domains = {SITE}\n\
         transport_maps = texthash:$config_directory/transport\n\
         minimal_backoff_time = 1h\n\
         maximal_backoff_time = 1h\n\
         queue_run_delay = 1h\n\
         smtp_connect_timeout = 5s\n\
         delay_warning_time = 0\n"
    );
    let mut files = BTreeMap::new();
    files.insert(
        "transport".to_string(),
        format!("{SITE} smtp:[127.0.0.1]:{site_port}\n").into_bytes(),
    );
    let spec = InstanceSpec {
        main_cf,
        files,
        hostname: "mx.test.invalid".to_string(),
        services: Services::MailSystem {
            smtpd_port,
            flush: false,
        },
    };
    let instance = Instance::start(&spec).expect("starting a private Postfix mail system");
    let flushbed = Flushbed::start(&instance);
    let queue_dir = instance.queue_dir().to_path_buf();

    // Submitted over SMTP; the site refuses connections, so the mail is
    // deferred and the SMTP client adds it through flushbed.
    let mut client = Smtp::connect(smtpd_port);
    let queue_id = client.submit("alice@sender.test.invalid", &format!("bob@{SITE}"));
    client.quit();
    let line = format!("{queue_id}\n").into_bytes();
    wait_for(
        &instance,
        &flushbed,
        "the first deferral and its add",
        || {
            deliveries(&instance, &queue_id).0 == 1
                && logfile(&instance).as_deref() == Some(line.as_slice())
                && queue_of(&queue_dir, &queue_id).as_deref() == Some("deferred")
        },
    );

    // ETRN: flushbed sends the logfile; the mail is retried, deferred again,
    // and added again to the logfile it had just been truncated from.
    let mut client = Smtp::connect(smtpd_port);
    assert!(client
        .command("EHLO client.test.invalid")
        .starts_with("250"));
    assert_eq!(
        client.command(&format!("ETRN {SITE}")),
        "250 Queuing started"
    );
    client.quit();
    wait_for(
        &instance,
        &flushbed,
        "the retry after ETRN and the second add",
        || {
            deliveries(&instance, &queue_id).0 == 2
                && logfile(&instance).as_deref() == Some(line.as_slice())
                && queue_of(&queue_dir, &queue_id).as_deref() == Some("deferred")
        },
    );

    // The site comes up; the same ETRN delivers, and nothing is added.
    let sink = Sink::start(site_port);
    let mut client = Smtp::connect(smtpd_port);
    assert!(client
        .command("EHLO client.test.invalid")
        .starts_with("250"));
    assert_eq!(
        client.command(&format!("ETRN {SITE}")),
        "250 Queuing started"
    );
    client.quit();
    wait_for(&instance, &flushbed, "delivery to the site", || {
        deliveries(&instance, &queue_id).1 && queue_of(&queue_dir, &queue_id).is_none()
    });
    assert_eq!(
        sink.messages().len(),
        1,
        "the sink on port {} got it once",
        sink.port
    );
    assert!(sink.messages()[0].contains("Deferred, then flushed."));
    assert_eq!(deliveries(&instance, &queue_id).0, 2, "no third deferral");
    assert_eq!(
        logfile(&instance),
        Some(Vec::new()),
        "the logfile is left empty"
    );

    drop(flushbed);
    drop(instance);
}
