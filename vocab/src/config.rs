//! Postfix-style configuration: reading `main.cf`, expanding `$name`, and
//! the effective values of the parameters that flush(8) and the queue
//! manager around it depend on, with Postfix 3.7's own defaults.
//!
//! The configuration is what both sides of a lockstep are *given*, so it is
//! read once, here. Two details matter for fidelity:
//!
//! - A program that finds no `compatibility_level` in `main.cf` runs at level
//!   0, whatever Debian's packaged `main.cf` says; several defaults depend on
//!   the level (`relay_domains`, `smtputf8_enable`,
//!   `parent_domain_matches_subdomains`).
//! - A time value is digits and one unit letter (`s m h d w`); only the first
//!   letter after the digits is read (`12hours` is 12h), a bare number takes
//!   the unit of the parameter's default, and anything below one second is a
//!   fatal configuration error.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// A configuration error, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{origin}:{line}: {why}")]
    Syntax {
        origin: String,
        line: usize,
        why: String,
    },
    #[error("bad {name} value \"{value}\": {why}")]
    BadValue {
        name: String,
        value: String,
        why: String,
    },
    #[error("expanding {name}: {why}")]
    Expansion { name: String, why: String },
}

/// The parameters of one `main.cf`, as written (before expansion).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MainCf {
    params: BTreeMap<String, String>,
}

impl MainCf {
    /// Reads `main.cf` text. `origin` names the file in error messages.
    ///
    /// A logical line starts with non-blank text; a line that starts with
    /// white space continues it. Blank lines and lines whose first non-blank
    /// character is `#` are comments. Each logical line is `name = value`.
    pub fn parse(text: &str, origin: &str) -> Result<MainCf, ConfigError> {
        let mut logical: Vec<(usize, String)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match logical.last_mut() {
                    Some((_, text)) => {
                        text.push(' ');
                        text.push_str(trimmed);
                    }
                    None => {
                        return Err(ConfigError::Syntax {
                            origin: origin.to_string(),
                            line: number,
                            why: "continuation line without a parameter before it".to_string(),
                        })
                    }
                }
            } else {
                logical.push((number, line.to_string()));
            }
        }

        let mut params = BTreeMap::new();
        for (number, text) in logical {
            let Some((name, value)) = text.split_once('=') else {
                return Err(ConfigError::Syntax {
                    origin: origin.to_string(),
                    line: number,
                    why: format!("missing '=' after parameter name in \"{}\"", text.trim()),
                });
            };
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(ConfigError::Syntax {
                    origin: origin.to_string(),
                    line: number,
                    why: format!("bad parameter name \"{name}\""),
                });
            }
            params.insert(name.to_string(), value.trim().to_string());
        }
        Ok(MainCf { params })
    }

    /// Sets one parameter, as `postconf -e` would.
    pub fn set(&mut self, name: &str, value: &str) {
        self.params.insert(name.to_string(), value.to_string());
    }

    /// The value as written, if `main.cf` sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Every parameter as written, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `main.cf` text that sets exactly these parameters.
    pub fn to_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    }
}

/// Facts from outside `main.cf` that some defaults depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// What `gethostname()` says; the default of `myhostname`.
    pub hostname: String,
    /// The directory `main.cf` was read from; `$config_directory`.
    pub config_directory: String,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            hostname: "localhost.localdomain".to_string(),
            config_directory: "/etc/postfix".to_string(),
        }
    }
}

/// A `compatibility_level`, compared as Postfix compares them (`3.6` is
/// above `2` and below `3.10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CompatibilityLevel(pub u32, pub u32, pub u32);

impl CompatibilityLevel {
    pub fn parse(text: &str) -> Option<CompatibilityLevel> {
        let mut parts = [0u32; 3];
        let fields: Vec<&str> = text.trim().split('.').collect();
        if fields.is_empty() || fields.len() > 3 {
            return None;
        }
        for (slot, field) in parts.iter_mut().zip(&fields) {
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = field.parse().ok()?;
        }
        Some(CompatibilityLevel(parts[0], parts[1], parts[2]))
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompatibilityLevel(major, 0, 0) => write!(f, "{major}"),
            CompatibilityLevel(major, minor, 0) => write!(f, "{major}.{minor}"),
            CompatibilityLevel(major, minor, patch) => write!(f, "{major}.{minor}.{patch}"),
        }
    }
}

/// The effective values of the parameters flushbed uses, after defaults and
/// `$name` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushConfig {
    pub compatibility_level: CompatibilityLevel,
    pub config_directory: String,
    pub queue_directory: String,
    pub myhostname: String,
    pub mydomain: String,
    pub mydestination: String,
    pub relay_domains: String,
    /// The domain list, expanded but not yet split or matched.
    pub fast_flush_domains: String,
    /// Parameter names whose domain lists use the parent-domain style.
    pub parent_domain_matches_subdomains: Vec<String>,
    pub smtputf8_enable: bool,
    /// Transitional (IDNA 2003 compatible) ToASCII instead of Postfix's
    /// default non-transitional processing.
    pub enable_idna2003_compatibility: bool,
    /// Seconds.
    pub fast_flush_refresh_time: i64,
    /// Seconds.
    pub fast_flush_purge_time: i64,
    pub hash_queue_names: Vec<String>,
    pub hash_queue_depth: u32,
    /// Seconds.
    pub minimal_backoff_time: i64,
    /// Seconds.
    pub maximal_backoff_time: i64,
    /// Seconds.
    pub queue_run_delay: i64,
    /// Seconds.
    pub maximal_queue_lifetime: i64,
    /// Seconds.
    pub bounce_queue_lifetime: i64,
    /// Seconds.
    pub transport_retry_time: i64,
    pub smtpd_helo_required: bool,
    /// Whether Postfix logs (and flushbed traces) each request in detail.
    pub main_cf: MainCf,
}

/// The Postfix 3.7 default of a parameter, given the compatibility level.
fn default_value(name: &str, level: CompatibilityLevel, env: &Environment) -> Option<String> {
    let below = |major, minor| level < CompatibilityLevel(major, minor, 0);
    let value = match name {
        "compatibility_level" => "0",
        "config_directory" => return Some(env.config_directory.clone()),
        "queue_directory" => "/var/spool/postfix",
        "myhostname" => return Some(env.hostname.clone()),
        "mydestination" => "$myhostname, localhost.$mydomain, localhost",
        "relay_domains" => {
            if below(2, 0) {
                "$mydestination"
            } else {
                ""
            }
        }
        "fast_flush_domains" => "$relay_domains",
        "smtputf8_enable" => {
            if below(1, 0) {
                "no"
            } else {
                "yes"
            }
        }
        "parent_domain_matches_subdomains" => {
            if below(3, 6) {
                "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,\
                 qmqpd_authorized_clients,relay_domains,smtpd_access_maps"
            } else {
                "debug_peer_list,fast_flush_domains,mynetworks,qmqpd_authorized_clients"
            }
        }
        "enable_idna2003_compatibility" => "no",
        "fast_flush_refresh_time" => "12h",
        "fast_flush_purge_time" => "7d",
        "hash_queue_names" => "deferred, defer",
        "hash_queue_depth" => "1",
        "minimal_backoff_time" => "300s",
        "maximal_backoff_time" => "4000s",
        "queue_run_delay" => "300s",
        "maximal_queue_lifetime" => "5d",
        "bounce_queue_lifetime" => "5d",
        "transport_retry_time" => "60s",
        "smtpd_helo_required" => "no",
        _ => return None,
    };
    Some(value.to_string())
}

/// Splits a list value the way Postfix does: on commas and white space.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses a time value: digits, then an optional unit letter of which only
/// the first is read; `default_unit` applies to a bare number.
pub fn parse_time(name: &str, value: &str, default_unit: char) -> Result<i64, ConfigError> {
    let bad = |why: &str| ConfigError::BadValue {
        name: name.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    };
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad(
            "expected a number with an optional unit s, m, h, d or w",
        ));
    }
    let number: i64 = value[..digits]
        .parse()
        .map_err(|_| bad("number out of range"))?;
    let unit = value[digits..].chars().next().unwrap_or(default_unit);
    let multiplier = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 7 * 86400,
        _ => return Err(bad("unknown time unit: expected s, m, h, d or w")),
    };
    let seconds = number
        .checked_mul(multiplier)
        .ok_or_else(|| bad("number out of range"))?;
    if seconds < 1 {
        return Err(bad("must be at least 1 second"));
    }
    Ok(seconds)
}

/// Parses a boolean value (`yes` or `no`, in any case).
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    if value.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err(ConfigError::BadValue {
            name: name.to_string(),
            value: value.to_string(),
            why: "expected yes or no".to_string(),
        })
    }
}

/// Expands parameters of one `main.cf`, defaults included.
struct Expander<'a> {
    main: &'a MainCf,
    env: &'a Environment,
    level: CompatibilityLevel,
}

impl Expander<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        if let Some(value) = self.main.get(name) {
            return Some(value.to_string());
        }

        // The default domain is the host name less its first label.
        if name == "mydomain" {
            let host = self.param("myhostname").unwrap_or_default();
            return Some(match host.split_once('.') {
                Some((_, rest)) if !rest.is_empty() => rest.to_string(),
                _ => "localdomain".to_string(),
            });
        }
        default_value(name, self.level, self.env)
    }

    fn param(&self, name: &str) -> Result<String, ConfigError> {
        let raw = self.raw(name).unwrap_or_default();
        self.expand(name, &raw, 0)
    }

    /// `$name`, `${name}`, `$(name)`, `${name?text}` (text when name is not
    /// empty), `${name:text}` (text when name is empty) and `$$`.
    fn expand(&self, owner: &str, text: &str, depth: usize) -> Result<String, ConfigError> {
        if depth > 100 {
            return Err(ConfigError::Expansion {
                name: owner.to_string(),
                why: "unreasonable macro call nesting".to_string(),
            });
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let close = match rest.chars().next() {
                Some('$') => {
                    out.push('$');
                    rest = &rest[1..];
                    continue;
                }
                Some('{') => Some('}'),
                Some('(') => Some(')'),
                _ => None,
            };
            let (body, after) = match close {
                Some(close) => {
                    let end =
                        matching_close(rest, close).ok_or_else(|| ConfigError::Expansion {
                            name: owner.to_string(),
                            why: format!("missing '{close}' in \"{text}\""),
                        })?;
                    (&rest[1..end], &rest[end + 1..])
                }
                None => {
                    let len = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    if len == 0 {
                        out.push('$');
                        continue;
                    }
                    (&rest[..len], &rest[len..])
                }
            };
            rest = after;
            let (name, cond) = match body.find(['?', ':']) {
                Some(pos) => (&body[..pos], Some((&body[pos..pos + 1], &body[pos + 1..]))),
                None => (body, None),
            };
            let value = match self.raw(name) {
                Some(raw) => self.expand(name, &raw, depth + 1)?,
                None => String::new(),
            };
            match cond {
                None => out.push_str(&value),
                Some(("?", alt)) if !value.is_empty() => {
                    out.push_str(&self.expand(owner, alt, depth + 1)?)
                }
                Some((":", alt)) if value.is_empty() => {
                    out.push_str(&self.expand(owner, alt, depth + 1)?)
                }
                Some(_) => {}
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn matching_close(text: &str, close: char) -> Option<usize> {
    let open = text.chars().next()?;
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

impl FlushConfig {
    /// The effective configuration of a program that read this `main.cf`.
    pub fn from_main_cf(main: &MainCf, env: &Environment) -> Result<FlushConfig, ConfigError> {
        let level_text = main.get("compatibility_level").unwrap_or("0");
        let probe = Expander {
            main,
            env,
            level: CompatibilityLevel::default(),
        };
        let level_text = probe.expand("compatibility_level", level_text, 0)?;
        let compatibility_level =
            CompatibilityLevel::parse(&level_text).ok_or_else(|| ConfigError::BadValue {
                name: "compatibility_level".to_string(),
                value: level_text.clone(),
                why: "expected a level such as 0, 2 or 3.6".to_string(),
            })?;
        let x = Expander {
            main,
            env,
            level: compatibility_level,
        };
        let time = |name: &str, unit: char| -> Result<i64, ConfigError> {
            parse_time(name, &x.param(name)?, unit)
        };
        let depth_text = x.param("hash_queue_depth")?;
        let hash_queue_depth = depth_text
            .parse::<u32>()
            .ok()
            .filter(|d| *d >= 1)
            .ok_or_else(|| ConfigError::BadValue {
                name: "hash_queue_depth".to_string(),
                value: depth_text.clone(),
                why: "expected a whole number of at least 1".to_string(),
            })?;
        Ok(FlushConfig {
            compatibility_level,
            config_directory: x.param("config_directory")?,
            queue_directory: x.param("queue_directory")?,
            myhostname: x.param("myhostname")?,
            mydomain: x.param("mydomain")?,
            mydestination: x.param("mydestination")?,
            relay_domains: x.param("relay_domains")?,
            fast_flush_domains: x.param("fast_flush_domains")?,
            parent_domain_matches_subdomains: split_list(
                &x.param("parent_domain_matches_subdomains")?,
            ),
            smtputf8_enable: parse_bool("smtputf8_enable", &x.param("smtputf8_enable")?)?,
            enable_idna2003_compatibility: parse_bool(
                "enable_idna2003_compatibility",
                &x.param("enable_idna2003_compatibility")?,
            )?,
            fast_flush_refresh_time: time("fast_flush_refresh_time", 'h')?,
            fast_flush_purge_time: time("fast_flush_purge_time", 'd')?,
            hash_queue_names: split_list(&x.param("hash_queue_names")?),
            hash_queue_depth,
            minimal_backoff_time: time("minimal_backoff_time", 's')?,
            maximal_backoff_time: time("maximal_backoff_time", 's')?,
            queue_run_delay: time("queue_run_delay", 's')?,
            maximal_queue_lifetime: time("maximal_queue_lifetime", 'd')?,
            bounce_queue_lifetime: time("bounce_queue_lifetime", 'd')?,
            transport_retry_time: time("transport_retry_time", 's')?,
            smtpd_helo_required: parse_bool(
                "smtpd_helo_required",
                &x.param("smtpd_helo_required")?,
            )?,
            main_cf: main.clone(),
        })
    }

    /// Whether `fast_flush_domains` uses the parent-domain style (the
    /// pattern `example.com` also matches `a.example.com`).
    pub fn fast_flush_parent_style(&self) -> bool {
        self.parent_domain_matches_subdomains
            .iter()
            .any(|n| n == "fast_flush_domains")
    }

    /// The expanded value of any parameter, for those few rules that need
    /// one not named above.
    pub fn param(&self, name: &str, env: &Environment) -> Result<String, ConfigError> {
        Expander {
            main: &self.main_cf,
            env,
            level: self.compatibility_level,
        }
        .param(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> FlushConfig {
        FlushConfig::from_main_cf(
            &MainCf::parse(text, "main.cf").unwrap(),
            &Environment::default(),
        )
        .unwrap()
    }

    #[test]
    fn level_zero_relays_to_mydestination_and_turns_smtputf8_off() {
        let c = config("myhostname = mx.example.com\n");
        assert_eq!(
            c.fast_flush_domains,
            "mx.example.com, localhost.example.com, localhost"
        );
        assert!(!c.smtputf8_enable);
        assert!(c.fast_flush_parent_style());
    }

    #[test]
    fn level_three_six_has_no_relay_domains() {
        let c = config("compatibility_level = 3.6\n");
        assert_eq!(c.fast_flush_domains, "");
        assert!(c.smtputf8_enable);
        assert!(c.fast_flush_parent_style());
    }

    #[test]
    fn only_the_first_unit_letter_is_read() {
        assert_eq!(parse_time("t", "12hours", 'h').unwrap(), 12 * 3600);
        assert_eq!(parse_time("t", "3", 'd').unwrap(), 3 * 86400);
        assert!(parse_time("t", "0s", 's').is_err());
        assert!(parse_time("t", "1x", 's').is_err());
        assert!(parse_time("t", "", 's').is_err());
    }

    #[test]
    fn continuation_lines_join_and_errors_say_where() {
        let c = config("fast_flush_domains = a.example,\n  b.example\n");
        assert_eq!(c.fast_flush_domains, "a.example, b.example");
        let err = MainCf::parse("# c\nbogus line\n", "main.cf").unwrap_err();
        assert_eq!(
            err.to_string(),
            "main.cf:2: missing '=' after parameter name in \"bogus line\""
        );
    }

    #[test]
    fn conditional_expansion() {
        let c = config("a = x\nfast_flush_domains = ${a?yes} ${b:none} $$ ${a}\n");
        assert_eq!(c.fast_flush_domains, "yes none $ x");
    }
}
