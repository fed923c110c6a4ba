//! The Postfix domain list that decides which sites are eligible for a
//! fast flush logfile: `fast_flush_domains`, as `match_list.c`,
//! `match_ops.c` (`match_hostname`), `dict_inline.c` and `dict_thash.c`
//! read and match it.
//!
//! - Patterns are separated by commas and white space; `{...}` keeps a
//!   table's text together. A pattern starting with `#` ends the list (with
//!   a warning in the real server's log).
//! - Each leading `!` flips the pattern's result; the first pattern that
//!   matches decides.
//! - `/path` reads more patterns from a file, line by line; a line whose
//!   first byte is `#` is skipped, and a `#` pattern later in a line ends
//!   that line. A file that cannot be opened becomes a table whose every
//!   lookup fails.
//! - `type:name` looks the site up in a table (only the key's presence
//!   counts). Keys are not case-folded. With the parent style the table is
//!   also asked for every parent domain (`a.example.com`, `example.com`,
//!   `com`); without it, for every `.parent` form (`.example.com`, `.com`).
//! - Any other pattern is case-folded and compared with the case-folded
//!   site: equal, or (parent style) a parent domain of the site, or (without
//!   it) a `.domain` pattern that ends the site.
//!
//! # Limitations
//!
//! Only `inline:` and `texthash:` tables are read. Any other type is a
//! table that cannot be opened, so a site that reaches it gets FAIL; a real
//! server would open `hash:`, `cidr:`, `regexp:` and the rest.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::names::{casefold, trim_c_space};
use crate::wire::{get_line, is_c_space};
use crate::Tables;

/// How deep `/path` files may include other files before the model calls
/// the list broken (a real server would recurse until it ran out of files
/// or stack).
const MAX_FILE_DEPTH: usize = 20;

/// A list so broken that the program reading it exits at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListError {
    #[error("fast_flush_domains: no pattern after '!'")]
    BareNegation,
    #[error("open dictionary: expecting \"type:name\" form instead of \"{0}\"")]
    BadTableName(String),
    #[error("fast_flush_domains: /path files nested more than {MAX_FILE_DEPTH} deep at {0}")]
    FilesTooDeep(String),
}

/// One table, as opened when the list was read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Table {
    /// A fixed-key table (`inline:`, `texthash:`): its keys.
    Keys(BTreeSet<Vec<u8>>),
    /// A table that could not be opened: every lookup fails.
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A name, already case-folded.
    Name(Vec<u8>),
    /// A table lookup: the table's `type:name` and the table.
    Table(String, Table),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Whether a match means "eligible" (an even number of `!`).
    positive: bool,
    kind: Kind,
}

impl Pattern {
    fn text(&self) -> String {
        let bang = if self.positive { "" } else { "!" };
        match &self.kind {
            Kind::Name(name) => format!("{bang}{}", String::from_utf8_lossy(name)),
            Kind::Table(spec, _) => format!("{bang}{spec}"),
        }
    }
}

/// The outcome of matching one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Eligible: a pattern matched.
    Eligible(String),
    /// Not eligible: a negated pattern matched, or nothing did.
    NotEligible(String),
    /// A table lookup failed: the caller answers FAIL.
    TableError(String),
}

/// A parsed `fast_flush_domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainList {
    patterns: Vec<Pattern>,
    parent_style: bool,
    utf8: bool,
    /// What could not be opened while the list was read, as a program
    /// that reads the list without `MATCH_FLAG_RETURN` reports it before
    /// it exits (`open file PATH: ...`, `open database PATH: ...`).
    open_failures: Vec<String>,
}

impl DomainList {
    /// Reads the list as `domain_list_init` does at program start.
    pub fn parse(
        value: &str,
        parent_style: bool,
        utf8: bool,
        tables: &Tables,
    ) -> Result<DomainList, ListError> {
        let mut list = DomainList {
            patterns: Vec::new(),
            parent_style,
            utf8,
            open_failures: Vec::new(),
        };
        list.parse_text(value.as_bytes(), true, tables, 0)?;
        Ok(list)
    }

    /// The files and tables the list could not open, in list order.
    pub fn open_failures(&self) -> &[String] {
        &self.open_failures
    }

    /// Whether the list has no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn parse_text(
        &mut self,
        text: &[u8],
        positive: bool,
        tables: &Tables,
        depth: usize,
    ) -> Result<(), ListError> {
        for token in tokens(crate::names::c_string(text)) {
            // A comment is not supported here: the rest is ignored.
            if token.first() == Some(&b'#') {
                break;
            }
            let bangs = token.iter().take_while(|&&b| b == b'!').count();
            let item = &token[bangs..];
            let positive = positive == (bangs % 2 == 0);
            if item.is_empty() {
                return Err(ListError::BareNegation);
            }

            if item[0] == b'/' {
                self.parse_file(item, positive, tables, depth)?;
            } else if is_table(item) {
                let spec = String::from_utf8_lossy(item).into_owned();
                let table = open_table(item, tables, self.utf8)?;
                if let Some(path) = item.strip_prefix(b"texthash:") {
                    let path = String::from_utf8_lossy(path);
                    if !tables.files.contains_key(path.as_ref()) {
                        self.open_failures
                            .push(format!("open database {path}: No such file or directory"));
                    }
                }
                self.patterns.push(Pattern {
                    positive,
                    kind: Kind::Table(spec, table),
                });
            } else {
                let name = casefold(item, self.utf8);
                self.patterns.push(Pattern {
                    positive,
                    kind: Kind::Name(name),
                });
            }
        }
        Ok(())
    }

    fn parse_file(
        &mut self,
        path: &[u8],
        positive: bool,
        tables: &Tables,
        depth: usize,
    ) -> Result<(), ListError> {
        let path_text = String::from_utf8_lossy(path).into_owned();
        if depth >= MAX_FILE_DEPTH {
            return Err(ListError::FilesTooDeep(path_text));
        }
        let Some(content) = tables.files.get(&path_text) else {
            // The real list keeps the pattern, without its `!`, as a table
            // whose lookups fail.
            self.open_failures
                .push(format!("open file {path_text}: No such file or directory"));
            let spec = format!("nofile:{path_text}");
            let table = Table::Unavailable(format!("open file {path_text}: no such file"));
            self.patterns.push(Pattern {
                positive: true,
                kind: Kind::Table(spec, table),
            });
            return Ok(());
        };
        let mut at = 0;
        while let Some((line, seen)) = get_line(content, &mut at) {
            // vstring_fgets() reports a last line ending in 0xff as the end.
            if !seen {
                break;
            }
            if line.first() != Some(&b'#') {
                self.parse_text(&line, positive, tables, depth + 1)?;
            }
        }
        Ok(())
    }

    /// `domain_list_match`: the first pattern that matches decides.
    pub fn matches(&self, site: &[u8]) -> Verdict {
        let name = casefold(site, self.utf8);
        let shown = String::from_utf8_lossy(site);
        let style = if self.parent_style {
            "parent domain style"
        } else {
            "dot-domain style"
        };
        for pattern in &self.patterns {
            let hit = match &pattern.kind {
                Kind::Name(folded) => self.match_name(&name, folded),
                Kind::Table(spec, table) => match self.match_table(&name, table) {
                    Ok(hit) => hit,
                    Err(why) => {
                        return Verdict::TableError(format!(
                            "site {shown} reached table {spec}, which failed: {why}"
                        ))
                    }
                },
            };
            if hit {
                let text = pattern.text();
                return if pattern.positive {
                    Verdict::Eligible(format!("site {shown} matches pattern {text} ({style})"))
                } else {
                    Verdict::NotEligible(format!(
                        "site {shown} matches negated pattern {text} ({style}): not eligible"
                    ))
                };
            }
        }
        Verdict::NotEligible(format!(
            "site {shown} matches no pattern of fast_flush_domains ({style})"
        ))
    }

    /// `match_hostname` for a name pattern; both sides are case-folded.
    fn match_name(&self, name: &[u8], pattern: &[u8]) -> bool {
        if name == pattern {
            return true;
        }
        let Some(offset) = name.len().checked_sub(pattern.len()) else {
            return false;
        };
        let tail = &name[offset..];
        if self.parent_style {
            offset > 0 && name[offset - 1] == b'.' && tail == pattern
        } else {
            pattern.first() == Some(&b'.') && offset > 0 && tail == pattern
        }
    }

    /// `match_hostname` for a table: the name, then its parents (`b.c`,
    /// `c`) or its dot-parents (`.b.c`, `.c`).
    fn match_table(&self, name: &[u8], table: &Table) -> Result<bool, String> {
        let keys = match table {
            Table::Keys(keys) => keys,
            Table::Unavailable(why) => {
                // A table that is not there fails on the first lookup, unless
                // there is nothing to look up.
                return if name.is_empty() {
                    Ok(false)
                } else {
                    Err(why.clone())
                };
            }
        };
        let mut entry = 0;
        while entry < name.len() {
            let key = &name[entry..];
            if self.lookup_key_ok(key) && keys.contains(key) {
                return Ok(true);
            }
            let Some(dot) = name[entry + 1..].iter().position(|&b| b == b'.') else {
                break;
            };
            entry = entry + 1 + dot + usize::from(self.parent_style);
        }
        Ok(false)
    }

    /// With `smtputf8_enable` a table refuses (quietly finds nothing for) a
    /// key that is not UTF-8.
    fn lookup_key_ok(&self, key: &[u8]) -> bool {
        !self.utf8 || key.is_ascii() || std::str::from_utf8(key).is_ok()
    }
}

/// `MATCH_DICTIONARY`: not an address literal, and a `:` somewhere.
fn is_table(item: &[u8]) -> bool {
    item[0] != b'[' && item.contains(&b':')
}

/// `mystrtokq` with `", \t\r\n"` and `{}`: tokens, braces kept together.
fn tokens(text: &[u8]) -> Vec<&[u8]> {
    let is_sep = |b: u8| matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n');
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        while at < text.len() && is_sep(text[at]) {
            at += 1;
        }
        if at == text.len() {
            break;
        }
        let start = at;
        let mut level = 0usize;
        while at < text.len() {
            let ch = text[at];
            if ch == b'{' {
                level += 1;
            } else if level > 0 && ch == b'}' {
                level -= 1;
            } else if level == 0 && is_sep(ch) {
                break;
            }
            at += 1;
        }
        out.push(&text[start..at]);
        at += 1;
    }
    out
}

/// `dict_open` for the types the model reads.
fn open_table(item: &[u8], tables: &Tables, utf8: bool) -> Result<Table, ListError> {
    let colon = item.iter().position(|&b| b == b':').unwrap_or(item.len());
    let (kind, name) = (&item[..colon], item.get(colon + 1..).unwrap_or_default());
    if kind.is_empty() || name.is_empty() {
        return Err(ListError::BadTableName(
            String::from_utf8_lossy(item).into_owned(),
        ));
    }
    let table = match kind {
        b"inline" => open_inline(name, utf8),
        b"texthash" => open_texthash(name, tables, utf8),
        _ => Err(format!(
            "unsupported dictionary type: {}",
            String::from_utf8_lossy(kind)
        )),
    };
    Ok(table.map_or_else(Table::Unavailable, Table::Keys))
}

/// `inline:{key=value, ...}`: the text in one pair of braces, pairs split
/// like list items, a pair in its own braces may hold spaces.
fn open_inline(name: &[u8], utf8: bool) -> Result<BTreeSet<Vec<u8>>, String> {
    if utf8 && !name.is_ascii() && std::str::from_utf8(name).is_err() {
        return Err("bad UTF-8 syntax in inline table".to_string());
    }
    let inner = match balanced(name) {
        Some(len) if len == name.len() && len > 2 => &name[1..len - 1],
        _ => return Err("bad syntax: need inline:{name=value...}".to_string()),
    };
    let mut keys = BTreeSet::new();
    for token in tokens(inner) {
        let pair = if token[0] == b'{' {
            match balanced(token) {
                Some(len) if len == token.len() => trim_c_space(&token[1..len - 1]),
                _ => return Err("bad syntax in a braced pair".to_string()),
            }
        } else {
            token
        };
        keys.insert(split_key(pair)?);
    }
    if keys.is_empty() {
        return Err("empty table".to_string());
    }
    Ok(keys)
}

/// `balpar`: the length of the balanced `{...}` at the start, if any.
fn balanced(text: &[u8]) -> Option<usize> {
    if text.first() != Some(&b'{') {
        return None;
    }
    let mut level = 1usize;
    for (i, &ch) in text.iter().enumerate().skip(1) {
        if ch == b'}' {
            level -= 1;
            if level == 0 {
                return Some(i + 1);
            }
        } else if ch == b'{' {
            level += 1;
        }
    }
    None
}

/// `split_qnameval`: the key of `key = value`, kept in its quoted form.
fn split_key(pair: &[u8]) -> Result<Vec<u8>, String> {
    let start = pair
        .iter()
        .position(|&b| !is_c_space(b))
        .ok_or("no key found")?;
    let mut in_quotes = false;
    let mut end = start;
    while end < pair.len() {
        let ch = pair[end];
        if ch == b'\\' {
            end += 1;
            if end == pair.len() {
                break;
            }
        } else if (is_c_space(ch) || ch == b'=') && !in_quotes {
            break;
        } else if ch == b'"' {
            in_quotes = !in_quotes;
        }
        end += 1;
    }
    if in_quotes {
        return Err("unbalanced '\"'".to_string());
    }
    let after = &pair[end.min(pair.len())..];
    let after = &after[after
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(after.len())..];
    if after.first() != Some(&b'=') {
        return Err("missing '=' after attribute name".to_string());
    }
    Ok(pair[start..end.min(pair.len())].to_vec())
}

/// `texthash:/path`: `key whitespace value` lines, read as `postmap` reads
/// them; a duplicate key makes the whole table unusable.
fn open_texthash(name: &[u8], tables: &Tables, utf8: bool) -> Result<BTreeSet<Vec<u8>>, String> {
    let path = String::from_utf8_lossy(name).into_owned();
    let Some(content) = tables.files.get(&path) else {
        return Err(format!("open database {path}: no such file"));
    };
    let mut keys = BTreeMap::new();
    for (number, line) in logical_lines(content) {
        if utf8 && !line.is_ascii() && std::str::from_utf8(&line).is_err() {
            continue;
        }
        let line = crate::names::c_string(&line);
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        if key.is_empty() || value.is_empty() {
            continue;
        }
        if keys.insert(key.to_vec(), number).is_some() {
            return Err(format!(
                "{path}, line {number}: duplicate entry: \"{}\"",
                String::from_utf8_lossy(key)
            ));
        }
    }
    Ok(keys.into_keys().collect())
}

/// The texthash split of one logical line: the key up to the first white
/// space outside quotes, the value trimmed; `None` for unbalanced quotes.
fn split_key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut in_quotes = false;
    let mut end = 0;
    while end < line.len() {
        let ch = line[end];
        if ch == b'\\' {
            end += 1;
            if end == line.len() {
                break;
            }
        } else if is_c_space(ch) && !in_quotes {
            break;
        } else if ch == b'"' {
            in_quotes = !in_quotes;
        }
        end += 1;
    }
    if in_quotes {
        return None;
    }
    let end = end.min(line.len());
    let value = if end < line.len() {
        trim_c_space(&line[end + 1..])
    } else {
        &[][..]
    };
    Some((&line[..end], value))
}

/// `readllines`: logical lines with their first line number; comment and
/// blank lines dropped, a line starting with white space continues the one
/// before, and a logical line that starts with white space is dropped.
fn logical_lines(content: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut physical = Vec::new();
    let mut at = 0;
    while at < content.len() {
        let end = content[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(content.len(), |n| at + n);
        physical.push(&content[at..end]);
        at = end + 1;
    }
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    for (index, line) in physical.into_iter().enumerate() {
        let first = line.iter().position(|&b| !is_c_space(b));
        let blank_or_comment = match first {
            None => true,
            Some(i) => line[i] == b'#',
        };
        if blank_or_comment {
            continue;
        }
        let continues = is_c_space(line[0]);
        match current.as_mut() {
            Some((_, text)) if continues => text.extend_from_slice(line),
            _ => {
                out.extend(current.take());
                current = Some((index + 1, line.to_vec()));
            }
        }
    }
    out.extend(current);
    out.retain(|(_, text)| !text.first().is_some_and(|&b| is_c_space(b)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(value: &str) -> DomainList {
        DomainList::parse(value, true, false, &Tables::default()).unwrap()
    }

    fn eligible(list: &DomainList, site: &str) -> bool {
        matches!(list.matches(site.as_bytes()), Verdict::Eligible(_))
    }

    #[test]
    fn parent_style_matches_subdomains_and_never_a_leading_dot() {
        let l = list("example.com, .dot.example");
        assert!(eligible(&l, "example.com"));
        assert!(eligible(&l, "A.Example.COM"));
        assert!(!eligible(&l, "xexample.com"));
        assert!(!eligible(&l, "a.dot.example"));
        assert!(!eligible(&l, "example.com."));
    }

    #[test]
    fn without_parent_style_only_dot_patterns_match_subdomains() {
        let l = DomainList::parse("example.com .dot.example", false, false, &Tables::default())
            .unwrap();
        assert!(eligible(&l, "example.com"));
        assert!(!eligible(&l, "a.example.com"));
        assert!(eligible(&l, "a.dot.example"));
        assert!(!eligible(&l, "dot.example"));
    }

    #[test]
    fn first_match_wins_and_negation_stops_the_search() {
        let l = list("!deny.example.org, example.org");
        assert!(eligible(&l, "a.example.org"));
        assert!(!eligible(&l, "deny.example.org"));
        assert!(!eligible(&l, "x.deny.example.org"));
        assert!(eligible(&list("!!example.org"), "example.org"));
    }

    #[test]
    fn a_comment_pattern_ends_the_list() {
        let l = list("a.example #comment b.example");
        assert!(eligible(&l, "a.example"));
        assert!(!eligible(&l, "b.example"));
    }

    #[test]
    fn a_bare_negation_is_fatal() {
        assert_eq!(
            DomainList::parse("a.example, !", true, false, &Tables::default()),
            Err(ListError::BareNegation)
        );
    }

    #[test]
    fn files_add_patterns_and_skip_comment_lines() {
        let mut tables = Tables::default();
        tables.files.insert(
            "/etc/flush".to_string(),
            b"# comment\nA.example\n  # indented comment\nb.example # trailing\nc.example\n"
                .to_vec(),
        );
        let l = DomainList::parse("!/etc/flush, example", true, false, &tables).unwrap();
        assert!(!eligible(&l, "a.example"));
        assert!(!eligible(&l, "b.example"));
        assert!(!eligible(&l, "c.example"));
        assert!(eligible(&l, "d.example"));
    }

    #[test]
    fn a_missing_file_is_a_table_error_even_when_negated() {
        let l = list("!/missing, example.com");
        assert!(matches!(l.matches(b"example.com"), Verdict::TableError(_)));
    }

    #[test]
    fn tables_are_asked_for_parents_and_keys_are_not_folded() {
        let l = list("inline:{example.com=1, Upper.example=1}");
        assert!(eligible(&l, "a.b.example.com"));
        assert!(!eligible(&l, "upper.example"));
        let l =
            DomainList::parse("inline:{.example.com=1}", false, false, &Tables::default()).unwrap();
        assert!(eligible(&l, "a.example.com"));
        assert!(!eligible(&l, "example.com"));
    }

    #[test]
    fn texthash_reads_keys_and_a_duplicate_breaks_the_table() {
        let mut tables = Tables::default();
        tables
            .files
            .insert("/t".to_string(), b"example.com OK\nnovalue\n".to_vec());
        tables
            .files
            .insert("/dup".to_string(), b"a.example 1\na.example 2\n".to_vec());
        let l = DomainList::parse("texthash:/t", true, false, &tables).unwrap();
        assert!(eligible(&l, "x.example.com"));
        assert!(!eligible(&l, "novalue"));
        let l = DomainList::parse("texthash:/dup", true, false, &tables).unwrap();
        assert!(matches!(l.matches(b"a.example"), Verdict::TableError(_)));
    }

    #[test]
    fn an_unknown_or_absent_table_fails_only_when_reached() {
        let l = list("example.com, texthash:/absent, bogus:x");
        assert!(eligible(&l, "example.com"));
        assert!(matches!(l.matches(b"example.net"), Verdict::TableError(_)));
        assert!(matches!(
            list("bogus:x").matches(b"a"),
            Verdict::TableError(_)
        ));
    }

    #[test]
    fn address_literals_are_plain_patterns() {
        let l = list("[127.0.0.1], [::1]");
        assert!(eligible(&l, "[127.0.0.1]"));
        assert!(eligible(&l, "[::1]"));
    }

    #[test]
    fn continuation_lines_join_in_texthash() {
        let lines = logical_lines(b"a\n  b\n# c\nd e\n f\n");
        assert_eq!(lines, vec![(1, b"a  b".to_vec()), (4, b"d e f".to_vec())]);
    }
}
