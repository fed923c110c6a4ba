//! `flushbed serve`: flushbed's flush(8) as a running server, where
//! Postfix's master would run its flush processes, and the live targets
//! `flushbed check` can hold to the model.
//!
//! `serve` reads `DIR/main.cf` as Postfix reads it (the real host name as
//! the default of `myhostname`, `DIR` as `config_directory`), makes the
//! spool directories that are missing with Postfix's modes, listens on
//! `$queue_directory/public/flush` (or `--socket`) with mode 0666 as the
//! master makes a public socket, and sends its triggers to
//! `$queue_directory/public/qmgr`. The `strict` profile (the default)
//! bounds how long it waits for a client; `postfix` waits `ipc_timeout`
//! (an hour by default) as the real server does. SIGTERM and SIGINT stop
//! it: every request in progress finishes, the socket is removed.
//!
//! `check --target serve` starts `flushbed serve` itself for each run of
//! a scenario; `check --target socket:PATH --config DIR` drives a server
//! that is already running, on the scenarios its configuration matches.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use flushbed_impl::server::{self, QmgrTrigger, Server, ServerConfig};
use flushbed_impl::{FlushService, SystemClock};
use flushbed_sim::lockstep::{self, ScenarioResult, TargetKind};
use flushbed_sim::scenario::Scenario;
use flushbed_sim::target::live::{self, SocketServer};
use flushbed_sim::target::postfix;
use flushbed_sim::target::serve::run_serve;
use flushbed_vocab::config::{parse_time, Environment};
use flushbed_vocab::{FlushConfig, MainCf, Profile};
use tracing::{debug, info};

/// Postfix's last resort when the host name has no domain part.
const DEFAULT_MYDOMAIN: &str = "localdomain";

/// Who owns Postfix's queue by default (`mail_owner`).
const DEFAULT_MAIL_OWNER: &str = "postfix";

/// The group of Postfix's `public/` by default (`setgid_group`).
const DEFAULT_SETGID_GROUP: &str = "postdrop";

/// `flushbed serve`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration directory; its main.cf is read as Postfix reads it.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The socket to listen on [default: $queue_directory/public/flush].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// strict: Postfix's answers without its data losses; postfix: the real server exactly.
    #[arg(long, value_enum, default_value_t = super::ProfileArg::Strict)]
    profile: super::ProfileArg,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let profile = Profile::from(args.profile);
    let (config, env) = read_config(&args.config, &real_hostname())?;
    let ipc_timeout = match config.main_cf.get("ipc_timeout") {
        Some(_) => {
            Duration::from_secs(
                parse_time("ipc_timeout", &config.param("ipc_timeout", &env)?, 's')? as u64,
            )
        }
        None => server::POSTFIX_IPC_TIMEOUT,
    };

    let queue_dir = PathBuf::from(&config.queue_directory);
    let triggers = QmgrTrigger::new(&queue_dir);
    let service = FlushService::new(&config, profile, Arc::new(SystemClock), Arc::new(triggers))
        .with_context(|| format!("starting the flush service on {}", queue_dir.display()))?;
    give_public_to_mail_owner(&config, &env, &queue_dir.join("public"))?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| queue_dir.join("public").join("flush"));
    let server_config = ServerConfig {
        read_timeout: server::read_timeout(profile, ipc_timeout),
        ..ServerConfig::new(socket.clone(), profile)
    };

    // The flag is up before the socket is, so no request can be cut short.
    let shutdown = Arc::new(AtomicBool::new(false));
    server::stop_on_signals(&shutdown).context("installing the SIGTERM and SIGINT handlers")?;
    let server = Server::bind(Arc::new(service), server_config)
        .with_context(|| format!("listening on {}", socket.display()))?;
    info!(
        socket = %socket.display(),
        queue_directory = %queue_dir.display(),
        profile = profile.name(),
        read_timeout_s = server::read_timeout(profile, ipc_timeout).as_secs(),
        "flush server started"
    );
    server
        .run(&shutdown)
        .with_context(|| format!("serving {}", socket.display()))?;
    info!(socket = %socket.display(), "flush server stopped");
    Ok(())
}

/// `DIR/main.cf` as a Postfix program reads it, with `hostname` as what
/// `gethostname()` says.
fn read_config(dir: &Path, hostname: &str) -> anyhow::Result<(FlushConfig, Environment)> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("configuration directory {}", dir.display()))?;
    let main_cf = dir.join("main.cf");
    let text = std::fs::read_to_string(&main_cf)
        .with_context(|| format!("reading {}", main_cf.display()))?;
    let main = MainCf::parse(&text, &main_cf.display().to_string())?;
    let Some(config_directory) = dir.to_str().map(str::to_string) else {
        bail!("{}: not a UTF-8 path", dir.display());
    };
    let env = Environment {
        hostname: fully_qualified(hostname, &main),
        config_directory,
    };
    let config = FlushConfig::from_main_cf(&main, &env)?;
    Ok((config, env))
}

/// Gives `public/` to `mail_owner` and `setgid_group` (`postfix` and
/// `postdrop` by default), as Postfix's `postfix-files` has it, so that
/// the postfix user's processes reach the socket in it. Only root may,
/// and only when both exist; otherwise the directory stays as it is.
fn give_public_to_mail_owner(
    config: &FlushConfig,
    env: &Environment,
    public: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let name = |param: &str, default: &str| -> anyhow::Result<String> {
        let value = config.param(param, env)?;
        Ok(if value.is_empty() {
            default.to_string()
        } else {
            value
        })
    };
    let owner = name("mail_owner", DEFAULT_MAIL_OWNER)?;
    let group = name("setgid_group", DEFAULT_SETGID_GROUP)?;
    let (Some(uid), Some(gid)) = (
        account_id("/etc/passwd", &owner),
        account_id("/etc/group", &group),
    ) else {
        debug!(owner, group, "no such account: public/ left as it is");
        return Ok(());
    };
    let meta = std::fs::metadata(public).with_context(|| format!("{}", public.display()))?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    match std::os::unix::fs::chown(public, Some(uid), Some(gid)) {
        Ok(()) => {
            info!(directory = %public.display(), owner, group, "public directory given to the mail owner")
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            debug!(directory = %public.display(), "not root: public/ left as it is")
        }
        Err(e) => return Err(e).with_context(|| format!("chown {}", public.display())),
    }
    Ok(())
}

/// The numeric id of a name in `/etc/passwd` or `/etc/group`.
fn account_id(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name))
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// What `gethostname()` says.
fn real_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Postfix's default `myhostname`: a host name without a dot gets
/// `mydomain` as written in `main.cf`, or `localdomain`.
fn fully_qualified(hostname: &str, main: &MainCf) -> String {
    if hostname.contains('.') {
        return hostname.to_string();
    }
    let domain = main.get("mydomain").unwrap_or(DEFAULT_MYDOMAIN);
    format!("{hostname}.{domain}")
}

/// A `--target` of `flushbed check`.
#[derive(Debug, Clone)]
pub enum CheckTarget {
    /// A target the runner builds in process.
    Kind(TargetKind),
    /// `serve`: a `flushbed serve` per run.
    Serve,
    /// `socket:PATH`: a server already running.
    Socket(PathBuf),
    /// `postfix`: a private real Postfix per run.
    Postfix,
}

impl std::str::FromStr for CheckTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "serve" {
            return Ok(CheckTarget::Serve);
        }
        if s == "postfix" {
            return Ok(CheckTarget::Postfix);
        }
        if let Some(path) = s.strip_prefix("socket:") {
            if path.is_empty() {
                return Err("socket: needs the server's socket, socket:PATH".to_string());
            }
            return Ok(CheckTarget::Socket(PathBuf::from(path)));
        }
        s.parse::<TargetKind>()
            .map(CheckTarget::Kind)
            .map_err(|e| format!("{e}, serve, postfix or socket:PATH"))
    }
}

/// What runs each scenario for `flushbed check`.
pub enum Checker {
    Kind(TargetKind),
    Serve(PathBuf),
    Socket(Box<SocketServer>),
    Postfix,
}

impl Checker {
    /// The checker for a target; `config` is the running server's
    /// configuration directory, for `socket:PATH` only.
    pub fn new(target: &CheckTarget, config: Option<&Path>) -> anyhow::Result<Checker> {
        match (target, config) {
            (CheckTarget::Socket(socket), Some(dir)) => {
                // The host name the server took as its default myhostname.
                let (_, env) = read_config(dir, &real_hostname())?;
                let server = SocketServer::read(socket, dir, &env.hostname)?;
                Ok(Checker::Socket(Box::new(server)))
            }
            (CheckTarget::Socket(_), None) => {
                bail!("--target socket:PATH needs --config DIR, the server's configuration")
            }
            (_, Some(_)) => bail!("--config is for --target socket:PATH only"),
            (CheckTarget::Kind(kind), None) => Ok(Checker::Kind(*kind)),
            (CheckTarget::Serve, None) => Ok(Checker::Serve(
                std::env::current_exe().context("finding the flushbed program")?,
            )),
            (CheckTarget::Postfix, None) => match postfix::available() {
                Ok(()) => Ok(Checker::Postfix),
                Err(e) => bail!("the postfix target cannot run here: {e}"),
            },
        }
    }

    /// The profile when `--profile` is not given: a live server runs in
    /// one, `strict` by default; `None` runs each scenario's own.
    pub fn default_profile(&self) -> Option<Profile> {
        match self {
            Checker::Kind(_) => None,
            Checker::Serve(_) | Checker::Socket(_) => Some(Profile::Strict),
            Checker::Postfix => Some(Profile::Postfix),
        }
    }

    /// One scenario in one profile.
    pub fn run(&self, scenario: &Scenario, profile: Profile) -> ScenarioResult {
        match self {
            Checker::Kind(kind) => lockstep::run(scenario, profile, *kind),
            Checker::Serve(program) => run_serve(program, scenario, profile),
            Checker::Socket(server) => live::run_socket(server, scenario, profile),
            Checker::Postfix => postfix::run_postfix(scenario, profile),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Checker::Kind(kind) => kind.name().to_string(),
            Checker::Serve(_) => "serve".to_string(),
            Checker::Socket(_) => "socket".to_string(),
            Checker::Postfix => "postfix".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_name_without_a_dot_gets_mydomain_or_localdomain() {
        let empty = MainCf::default();
        assert_eq!(fully_qualified("mx", &empty), "mx.localdomain");
        assert_eq!(fully_qualified("mx.example.com", &empty), "mx.example.com");
        let main = MainCf::parse("mydomain = example.net\n", "main.cf").unwrap();
        assert_eq!(fully_qualified("mx", &main), "mx.example.net");
    }

    #[test]
    fn accounts_are_found_by_name() {
        assert_eq!(account_id("/etc/passwd", "root"), Some(0));
        assert_eq!(account_id("/etc/group", "root"), Some(0));
        assert_eq!(account_id("/etc/passwd", "no-such-account-here"), None);
    }

    #[test]
    fn check_targets_are_named_as_on_the_command_line() {
        assert!(matches!("serve".parse(), Ok(CheckTarget::Serve)));
        assert!(matches!("spool".parse(), Ok(CheckTarget::Kind(_))));
        match "socket:/var/spool/postfix/public/flush".parse() {
            Ok(CheckTarget::Socket(path)) => {
                assert_eq!(path, Path::new("/var/spool/postfix/public/flush"))
            }
            other => panic!("{other:?}"),
        }
        assert!("socket:".parse::<CheckTarget>().is_err());
        assert!("nosuch".parse::<CheckTarget>().is_err());
    }
}
