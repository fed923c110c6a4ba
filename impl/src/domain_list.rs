//! `fast_flush_domains`: which sites may have a fast flush logfile.
//!
//! A Postfix domain list: patterns separated by commas or white space
//! (braces keep `inline:{a, b}` in one piece); the first pattern that
//! matches decides; `!pattern` negates; `/path` reads more patterns from a
//! file, one list per line, `#` lines skipped; `type:table` asks a table
//! for the name (the value is ignored). `inline:{...}` and `texthash:/path`
//! are the tables there are; any other type is a table whose every lookup
//! fails.
//!
//! Case: the site and the plain patterns are folded (full Unicode folding
//! when `smtputf8_enable` is on, ASCII only when off); table keys are not,
//! so a table matches only with lower-case keys. With the parent style
//! (`fast_flush_domains` listed in `parent_domain_matches_subdomains`),
//! `example.com` also matches `a.example.com` and a table is asked for each
//! parent domain too; without it, only `.example.com` matches subdomains,
//! and a table is asked for `.example.com` as well.
//!
//! Files are read once, when the list is built, as Postfix reads them at
//! process start. A file or table that cannot be read is not an error
//! then: it makes every lookup that reaches it fail, and a site that
//! reaches it gets FAIL instead of DENY.
//!
//! Limitations: Postfix rereads a `texthash:` file that was changed within
//! the last second before it trusts it; this reads it once.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use thiserror::Error;
use tracing::warn;

use crate::fs::FileSystem;

/// The separators of a list: comma and white space.
const SEPARATORS: &[u8] = b", \t\r\n";
/// The parentheses that keep a list item in one piece.
const BRACES: (u8, u8) = (b'{', b'}');

/// A list that Postfix would refuse to start with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainListError {
    #[error("fast_flush_domains: no pattern after '!'")]
    NoPatternAfterNegation,
    #[error("open dictionary: expecting \"type:name\" form instead of \"{0}\"")]
    NotTypeName(String),
}

/// What the list says about a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// A pattern matched: the site may have a logfile.
    Eligible,
    /// No pattern matched, or a negated one did.
    NotEligible,
    /// A table on the way could not be read: the request fails.
    TableError(String),
}

/// One table of a `type:table` pattern.
#[derive(Debug, Clone)]
struct Table {
    /// `type:name`, for warnings.
    spec: String,
    /// The keys, or why the table cannot be used.
    keys: Result<HashSet<Vec<u8>>, String>,
    /// Whether lookups go through Postfix's UTF-8 check first (every
    /// table that its type's own code opened, when `smtputf8_enable` is
    /// on): a key that is not UTF-8 is then simply not found.
    utf8_checked: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A host name or parent domain, folded.
    Host(Vec<u8>),
    Table(Table),
}

#[derive(Debug, Clone)]
struct Pattern {
    negated: bool,
    kind: Kind,
}

/// A parsed `fast_flush_domains`.
#[derive(Debug, Clone)]
pub struct DomainList {
    patterns: Vec<Pattern>,
    parent_style: bool,
    utf8: bool,
}

impl DomainList {
    /// Parses the expanded value, reading `/path` pattern files and
    /// `texthash:` tables through `fs`.
    pub fn new<F: FileSystem + ?Sized>(
        fs: &F,
        value: &str,
        parent_style: bool,
        utf8: bool,
    ) -> Result<DomainList, DomainListError> {
        let mut list = DomainList {
            patterns: Vec::new(),
            parent_style,
            utf8,
        };
        list.parse(fs, value.as_bytes(), true)?;
        Ok(list)
    }

    /// Whether the list has no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn parse<F: FileSystem + ?Sized>(
        &mut self,
        fs: &F,
        text: &[u8],
        init_match: bool,
    ) -> Result<(), DomainListError> {
        let mut rest = text;
        while let Some(token) = next_token(&mut rest) {
            if token[0] == b'#' {
                warn!(
                    parameter = "fast_flush_domains",
                    comment = %String::from_utf8_lossy(token),
                    "comment at end of line is not supported, rest of line ignored"
                );
                break;
            }

            // Each '!' turns the sense around.
            let bangs = token.iter().take_while(|&&b| b == b'!').count();
            let matches = init_match ^ (bangs % 2 == 1);
            let item = &token[bangs..];
            if item.is_empty() {
                return Err(DomainListError::NoPatternAfterNegation);
            }

            if item[0] == b'/' {
                self.parse_file(fs, item, matches)?;
            } else if item[0] != b'[' && item.contains(&b':') {
                let table = open_table(fs, item, self.utf8)?;
                self.patterns.push(Pattern {
                    negated: !matches,
                    kind: Kind::Table(table),
                });
            } else {
                let folded = self.fold(item);
                self.patterns.push(Pattern {
                    negated: !matches,
                    kind: Kind::Host(folded),
                });
            }
        }
        Ok(())
    }

    /// A `/path` pattern: its lines are lists of their own, with the
    /// negation of the `/path` pattern carried into each item.
    fn parse_file<F: FileSystem + ?Sized>(
        &mut self,
        fs: &F,
        item: &[u8],
        matches: bool,
    ) -> Result<(), DomainListError> {
        let path = Path::new(std::ffi::OsStr::from_bytes(item));
        match fs.read_file(path) {
            Err(e) => {
                let spec = format!("nofile:{}", path.display());
                warn!(file = %path.display(), error = %e, "cannot open pattern file, lookups fail");
                // Postfix's stand-in table for a missing file is never negated.
                self.patterns.push(Pattern {
                    negated: false,
                    kind: Kind::Table(Table {
                        spec,
                        keys: Err(format!("open file {}: {e}", path.display())),
                        utf8_checked: false,
                    }),
                });
            }
            Ok(content) => {
                for line in file_lines(&content) {
                    if line.first() != Some(&b'#') {
                        self.parse(fs, line, matches)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Postfix's `casefold()`: ASCII lower-casing, or full Unicode folding
    /// when `smtputf8_enable` is on and the text is not all ASCII; bytes
    /// that are not UTF-8 pass through unchanged, as ICU leaves them.
    fn fold(&self, text: &[u8]) -> Vec<u8> {
        if !self.utf8 || text.is_ascii() {
            return text.to_ascii_lowercase();
        }
        let mut out = Vec::with_capacity(text.len());
        for chunk in text.utf8_chunks() {
            let valid = chunk.valid();
            match flushbed_icu::fold_case(valid.as_bytes()) {
                Some(folded) => out.extend_from_slice(folded.as_bytes()),
                None => out.extend_from_slice(valid.as_bytes()),
            }
            out.extend_from_slice(chunk.invalid());
        }
        out
    }

    /// Matches a site against the list: first match wins.
    pub fn matches(&self, site: &[u8]) -> Eligibility {
        let name = self.fold(site);
        for pattern in &self.patterns {
            let hit = match &pattern.kind {
                Kind::Host(host) => self.match_host(&name, host),
                Kind::Table(table) => match self.match_table(table, &name) {
                    Ok(hit) => hit,
                    Err(why) => {
                        warn!(table = %table.spec, error = %why, "fast_flush_domains: table lookup problem");
                        return Eligibility::TableError(why);
                    }
                },
            };
            if hit {
                return if pattern.negated {
                    Eligibility::NotEligible
                } else {
                    Eligibility::Eligible
                };
            }
        }
        Eligibility::NotEligible
    }

    fn match_host(&self, name: &[u8], pattern: &[u8]) -> bool {
        if name == pattern {
            return true;
        }
        if name.len() <= pattern.len() {
            return false;
        }
        let suffix = name.len() - pattern.len();
        if self.parent_style {
            name[suffix - 1] == b'.' && &name[suffix..] == pattern
        } else {
            pattern[0] == b'.' && &name[suffix..] == pattern
        }
    }

    /// Asks a table for the name, then for each parent domain
    /// (`b.example.com`, `example.com`, `com`) in the parent style, or for
    /// each dotted suffix (`.b.example.com`, ...) without it.
    fn match_table(&self, table: &Table, name: &[u8]) -> Result<bool, String> {
        let mut entry = 0usize;
        while entry < name.len() {
            if table.lookup(&name[entry..], self.utf8)? {
                return Ok(true);
            }
            let Some(dot) = name[entry + 1..].iter().position(|&b| b == b'.') else {
                break;
            };
            entry = entry + 1 + dot + usize::from(self.parent_style);
        }
        Ok(false)
    }
}

impl Table {
    fn lookup(&self, key: &[u8], utf8: bool) -> Result<bool, String> {
        if utf8 && self.utf8_checked && !key.is_ascii() && std::str::from_utf8(key).is_err() {
            return Ok(false);
        }
        match &self.keys {
            Ok(keys) => Ok(keys.contains(key)),
            Err(why) => Err(why.clone()),
        }
    }
}

/// The next token of a list, as Postfix's `mystrtokq` finds it: leading
/// separators skipped, a separator inside braces kept.
fn next_token<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = rest.iter().position(|b| !SEPARATORS.contains(b))?;
    let text = &rest[start..];
    let mut level = 0usize;
    for (i, &ch) in text.iter().enumerate() {
        if ch == BRACES.0 {
            level += 1;
        } else if level > 0 && ch == BRACES.1 {
            level -= 1;
        } else if level == 0 && SEPARATORS.contains(&ch) {
            *rest = &text[i + 1..];
            return Some(&text[..i]);
        }
    }
    *rest = &[];
    Some(text)
}

/// The lines of a pattern file, newlines kept, as Postfix's line reader
/// returns them: a last line without a newline that ends in byte 0xFF is
/// taken for the end of the file (the byte reads back as EOF on amd64).
fn file_lines(content: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(at) => {
                lines.push(&rest[..=at]);
                rest = &rest[at + 1..];
            }
            None => {
                if rest.last() != Some(&0xFF) {
                    lines.push(rest);
                }
                rest = &[];
            }
        }
    }
    lines
}

/// Opens the table of a `type:name` pattern.
fn open_table<F: FileSystem + ?Sized>(
    fs: &F,
    item: &[u8],
    utf8: bool,
) -> Result<Table, DomainListError> {
    let spec = String::from_utf8_lossy(item).into_owned();
    let colon = item.iter().position(|&b| b == b':').unwrap_or(item.len());
    let (kind, name) = (&item[..colon], item.get(colon + 1..).unwrap_or_default());
    if kind.is_empty() || name.is_empty() {
        return Err(DomainListError::NotTypeName(spec));
    }

    let table = |keys, utf8_checked| Table {
        spec: spec.clone(),
        keys,
        utf8_checked,
    };
    Ok(match kind {
        b"inline" => table(parse_inline(name, utf8), utf8),
        b"texthash" => {
            let path = Path::new(std::ffi::OsStr::from_bytes(name));
            let keys = match fs.read_file(path) {
                Ok(content) => parse_texthash(&content, &spec, utf8),
                Err(e) => Err(format!("open database {}: {e}", path.display())),
            };
            table(keys, utf8)
        }
        _ => table(
            Err(format!(
                "unsupported dictionary type: {}",
                String::from_utf8_lossy(kind)
            )),
            false,
        ),
    })
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

fn trim(mut text: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = text {
        if !is_space(*first) {
            break;
        }
        text = rest;
    }
    while let [rest @ .., last] = text {
        if !is_space(*last) {
            break;
        }
        text = rest;
    }
    text
}

/// The length of a `{...}` group at the start of `text`, braces included;
/// 0 when it does not start with one or does not close.
fn balanced(text: &[u8]) -> usize {
    if text.first() != Some(&BRACES.0) {
        return 0;
    }
    let mut level = 1usize;
    for (i, &ch) in text.iter().enumerate().skip(1) {
        if ch == BRACES.1 {
            level -= 1;
            if level == 0 {
                return i + 1;
            }
        } else if ch == BRACES.0 {
            level += 1;
        }
    }
    0
}

/// An `inline:{key=value, ...}` table: its keys, or why it is unusable.
fn parse_inline(name: &[u8], utf8: bool) -> Result<HashSet<Vec<u8>>, String> {
    if utf8 && !name.is_ascii() && std::str::from_utf8(name).is_err() {
        return Err("bad UTF-8 syntax; need inline:{name=value...}".to_string());
    }
    let len = balanced(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err("bad syntax; need inline:{name=value...}".to_string());
    }

    let mut keys = HashSet::new();
    let mut rest = &name[1..len - 1];
    while let Some(mut item) = next_token(&mut rest) {
        // A `{ key = value }` item may hold separators.
        if item[0] == BRACES.0 {
            let inner = balanced(item);
            if inner == 0 {
                return Err("missing '}' in inline table item".to_string());
            }
            if inner != item.len() {
                return Err("syntax error after '}' in inline table item".to_string());
            }
            item = trim(&item[1..inner - 1]);
        }
        let key = split_name_value(item)?;
        keys.insert(key.to_vec());
    }
    if keys.is_empty() {
        return Err("empty table; need inline:{name=value...}".to_string());
    }
    Ok(keys)
}

/// The key of `key = value`, quotes and backslashes kept as written.
fn split_name_value(item: &[u8]) -> Result<&[u8], String> {
    let start = item
        .iter()
        .position(|&b| !is_space(b))
        .ok_or("no key found; expected format: key = value")?;
    let text = &item[start..];

    let mut in_quotes = false;
    let mut end = 0usize;
    while end < text.len() {
        let ch = text[end];
        if ch == b'\\' {
            end += 1;
            if end >= text.len() {
                break;
            }
        } else if is_space(ch) || ch == b'=' {
            if !in_quotes {
                break;
            }
        } else if ch == b'"' {
            in_quotes = !in_quotes;
        }
        end += 1;
    }
    if in_quotes {
        return Err("unbalanced '\"'".to_string());
    }
    let after = text[end.min(text.len())..]
        .iter()
        .position(|&b| !is_space(b));
    match after {
        Some(at) if text[end + at] == b'=' => Ok(&text[..end]),
        _ => Err("missing '=' after attribute name".to_string()),
    }
}

/// The logical lines of a table file, as Postfix's `readllines` joins
/// them: comment and blank lines dropped, a line that starts with white
/// space continues the one before, one that has nothing before it is
/// dropped.
fn logical_lines(content: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut pos = 0usize;
    loop {
        let mut buf: Vec<u8> = Vec::new();
        let mut at_end = false;
        loop {
            let start = buf.len();
            let mut terminated = false;
            while pos < content.len() {
                let ch = content[pos];
                pos += 1;
                if ch == b'\n' {
                    terminated = true;
                    break;
                }
                buf.push(ch);
            }
            match buf[start..].iter().position(|&b| !is_space(b)) {
                None => buf.truncate(start),
                Some(at) if buf[start + at] == b'#' => buf.truncate(start),
                Some(_) => {}
            }
            if !terminated {
                at_end = true;
                break;
            }
            if !buf.is_empty() {
                match content.get(pos) {
                    Some(&next) if next == b'#' || is_space(next) => {}
                    _ => break,
                }
            }
        }
        if buf.first().is_some_and(|&b| is_space(b)) {
            warn!(line = %String::from_utf8_lossy(&buf), "table: logical line must not start with whitespace");
        } else if !buf.is_empty() {
            lines.push(buf);
        }
        if at_end {
            return lines;
        }
    }
}

/// A `texthash:` table: `key whitespace value` per logical line; a
/// duplicate key makes the whole table unusable, as in Postfix.
fn parse_texthash(content: &[u8], spec: &str, utf8: bool) -> Result<HashSet<Vec<u8>>, String> {
    let mut keys = HashSet::new();
    for line in logical_lines(content) {
        if utf8 && !line.is_ascii() && std::str::from_utf8(&line).is_err() {
            warn!(table = spec, "non-UTF-8 input, line ignored");
            continue;
        }

        // The key ends at the first white space outside quotes.
        let mut in_quotes = false;
        let mut end = 0usize;
        while end < line.len() {
            let ch = line[end];
            if ch == b'\\' {
                end += 1;
                if end >= line.len() {
                    break;
                }
            } else if is_space(ch) {
                if !in_quotes {
                    break;
                }
            } else if ch == b'"' {
                in_quotes = !in_quotes;
            }
            end += 1;
        }
        if in_quotes {
            warn!(table = spec, "unbalanced '\"', line ignored");
            continue;
        }
        let end = end.min(line.len());
        let key = &line[..end];
        let value = trim(line.get(end + 1..).unwrap_or_default());
        if key.is_empty() || value.is_empty() {
            warn!(
                table = spec,
                "expected format: key whitespace value, line ignored"
            );
            continue;
        }
        if !keys.insert(key.to_vec()) {
            return Err(format!(
                "duplicate entry: \"{}\"",
                String::from_utf8_lossy(key)
            ));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    fn list(value: &str) -> DomainList {
        DomainList::new(&RealFs, value, true, false).unwrap()
    }

    #[test]
    fn the_spec_table_list_with_parent_style() {
        let l = list(
            "example.com, example.net, [127.0.0.1], !deny.example.org, example.org, .dot.example",
        );
        assert_eq!(l.matches(b"EXAMPLE.ORG"), Eligibility::Eligible);
        assert_eq!(l.matches(b"a.example.org"), Eligibility::Eligible);
        assert_eq!(l.matches(b"deny.example.org"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"x.deny.example.org"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"[127.0.0.1]"), Eligibility::Eligible);
        assert_eq!(l.matches(b"under_score.example.com"), Eligibility::Eligible);
        assert_eq!(l.matches(b"a.dot.example"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"other.example"), Eligibility::NotEligible);
    }

    #[test]
    fn a_trailing_dot_is_no_parent_match() {
        let l = list("example.com");
        assert_eq!(l.matches(b"example.com."), Eligibility::NotEligible);
    }

    #[test]
    fn without_parent_style_only_a_leading_dot_matches_subdomains() {
        let l = DomainList::new(&RealFs, "example.com .example.net", false, false).unwrap();
        assert_eq!(l.matches(b"example.com"), Eligibility::Eligible);
        assert_eq!(l.matches(b"a.example.com"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"a.example.net"), Eligibility::Eligible);
        assert_eq!(l.matches(b"example.net"), Eligibility::NotEligible);
    }

    #[test]
    fn first_match_wins_and_double_negation_cancels() {
        let l = list("!!a.example, !example");
        assert_eq!(l.matches(b"a.example"), Eligibility::Eligible);
        assert_eq!(l.matches(b"b.example"), Eligibility::NotEligible);
    }

    #[test]
    fn a_lone_negation_is_a_start_error() {
        assert_eq!(
            DomainList::new(&RealFs, "a.example, !", true, false).unwrap_err(),
            DomainListError::NoPatternAfterNegation
        );
        assert!(matches!(
            DomainList::new(&RealFs, "texthash:", true, false),
            Err(DomainListError::NotTypeName(_))
        ));
    }

    #[test]
    fn a_comment_ends_the_list() {
        let l = list("a.example #b.example, c.example");
        assert_eq!(l.matches(b"a.example"), Eligibility::Eligible);
        assert_eq!(l.matches(b"c.example"), Eligibility::NotEligible);
    }

    #[test]
    fn inline_tables_match_parents_and_do_not_fold_keys() {
        let l = list("inline:{example.com=1, Upper.example=2}");
        assert_eq!(l.matches(b"A.B.EXAMPLE.COM"), Eligibility::Eligible);
        assert_eq!(l.matches(b"upper.example"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"Upper.example"), Eligibility::NotEligible);
    }

    #[test]
    fn tables_without_parent_style_are_asked_for_dotted_suffixes() {
        let l = DomainList::new(&RealFs, "inline:{.example.com=1}", false, false).unwrap();
        assert_eq!(l.matches(b"a.example.com"), Eligibility::Eligible);
        assert_eq!(l.matches(b"example.com"), Eligibility::NotEligible);
    }

    #[test]
    fn an_unknown_table_type_fails_every_lookup_that_reaches_it() {
        let l = list("a.example, hash:/nonexistent/table, b.example");
        assert_eq!(l.matches(b"a.example"), Eligibility::Eligible);
        assert!(matches!(
            l.matches(b"b.example"),
            Eligibility::TableError(_)
        ));
    }

    #[test]
    fn a_broken_inline_table_fails_lookups() {
        for value in [
            "inline:{}",
            "inline:{ }",
            "inline:{a}",
            "inline:{a=1}x",
            "inline:{{a=1}",
        ] {
            assert!(
                matches!(list(value).matches(b"a"), Eligibility::TableError(_)),
                "{value}"
            );
        }
        assert_eq!(
            list("inline:{{ a = 1 }}").matches(b"a"),
            Eligibility::Eligible
        );
        assert_eq!(list("inline:{a=}").matches(b"a"), Eligibility::Eligible);
    }

    #[test]
    fn pattern_files_are_read_at_start_with_negation_carried_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("domains");
        std::fs::write(&file, "# comment\na.example b.example\n").unwrap();
        let l = list(&format!("!{}, example", file.display()));
        assert_eq!(l.matches(b"a.example"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"x.example"), Eligibility::Eligible);
        let missing = list(&format!("{}/none, example", dir.path().display()));
        assert!(matches!(
            missing.matches(b"x.example"),
            Eligibility::TableError(_)
        ));
    }

    #[test]
    fn a_last_pattern_line_ending_in_0xff_is_not_read() {
        assert_eq!(file_lines(b"a\nb\xff"), vec![&b"a\n"[..]]);
        assert_eq!(file_lines(b"a\nb"), vec![&b"a\n"[..], &b"b"[..]]);
    }

    #[test]
    fn texthash_tables_join_continuations_and_keep_keys_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "example.com\n  ok\n# c\nExample.NET ok\nnovalue\n").unwrap();
        let l = list(&format!("texthash:{}", file.display()));
        assert_eq!(l.matches(b"a.example.com"), Eligibility::Eligible);
        assert_eq!(l.matches(b"example.net"), Eligibility::NotEligible);
        assert_eq!(l.matches(b"novalue"), Eligibility::NotEligible);
    }

    #[test]
    fn a_texthash_duplicate_or_missing_file_fails_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "a.example 1\na.example 2\n").unwrap();
        let l = list(&format!("texthash:{}", file.display()));
        assert!(matches!(
            l.matches(b"a.example"),
            Eligibility::TableError(_)
        ));
        let l = list(&format!("texthash:{}/none", dir.path().display()));
        assert!(matches!(
            l.matches(b"a.example"),
            Eligibility::TableError(_)
        ));
    }

    #[test]
    fn an_empty_site_asks_no_table() {
        let l = list("hash:/nonexistent");
        assert_eq!(l.matches(b""), Eligibility::NotEligible);
    }

    #[test]
    fn utf8_folding_only_when_smtputf8_is_on() {
        let on = DomainList::new(&RealFs, "bücher.example", true, true).unwrap();
        assert_eq!(
            on.matches("BÜCHER.example".as_bytes()),
            Eligibility::Eligible
        );
        let off = DomainList::new(&RealFs, "bücher.example", true, false).unwrap();
        assert_eq!(
            off.matches("BÜCHER.example".as_bytes()),
            Eligibility::NotEligible
        );
        assert_eq!(
            off.matches("bücher.EXAMPLE".as_bytes()),
            Eligibility::Eligible
        );
    }

    #[test]
    fn a_non_utf8_key_is_not_found_in_a_checked_table_when_smtputf8_is_on() {
        let l = DomainList::new(&RealFs, "texthash:/nonexistent/t", true, true).unwrap();
        // The whole name is not UTF-8, its parent is: the parent's lookup fails.
        assert!(matches!(
            l.matches(b"\xff.example"),
            Eligibility::TableError(_)
        ));
        assert_eq!(l.matches(b"\xff"), Eligibility::NotEligible);
    }

    #[test]
    fn braces_keep_separators_inside_one_item() {
        let mut rest: &[u8] = b" inline:{a=1, b=2},c ";
        assert_eq!(next_token(&mut rest), Some(&b"inline:{a=1, b=2}"[..]));
        assert_eq!(next_token(&mut rest), Some(&b"c"[..]));
        assert_eq!(next_token(&mut rest), None);
    }
}
