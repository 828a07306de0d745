//! A reader for DRBD `.res` files as LINSTOR's satellite writes them (and as `drbdadm -c FILE
//! dump` normalises them): just enough of the grammar to learn node ids, minors, ports,
//! addresses, backing disks and net options. It reads, never writes, and never runs anything.
//!
//! The grammar is DRBD's: statements of words ending in `;`, or in a `{ … }` block; `#` starts
//! a comment; words may be double-quoted with backslash escapes.

use std::collections::BTreeMap;

/// What a `.res` file says about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResFile {
    /// The `resource` name.
    pub resource: String,
    /// `net { … }` options of the resource, quotes removed (e.g. `protocol` → `C`).
    pub net: BTreeMap<String, String>,
    /// The `on <host> { … }` sections, in file order.
    pub hosts: Vec<ResHost>,
    /// `# Local node: NAME`, LINSTOR's header comment naming the node it was written for.
    pub local_hint: Option<String>,
}

/// One `on <host> { … }` section, with the address the file gives that host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResHost {
    /// The host name as written (LINSTOR writes the node's `uname -n`).
    pub name: String,
    pub node_id: Option<u32>,
    pub volumes: Vec<ResVolume>,
    /// From `address` inside the section, or from a `connection`/`path` `host … address` line.
    pub address: Option<String>,
    pub port: Option<u16>,
}

/// One `volume N { … }` of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResVolume {
    pub number: u32,
    pub minor: Option<u32>,
    /// `disk`: the lower device, `none` for a diskless node, or LINSTOR's placeholder for a peer.
    pub disk: Option<String>,
}

/// LINSTOR's `disk` for a peer's volume: it does not know the peer's device.
pub const PEER_DISK_PLACEHOLDER: &str = "/dev/drbd/this/is/not/used";

impl ResHost {
    /// Whether this section holds a real local disk (not a peer placeholder, not diskless).
    pub fn has_local_disk(&self) -> bool {
        !self.volumes.is_empty()
            && self.volumes.iter().all(|v| {
                v.disk
                    .as_deref()
                    .is_some_and(|d| d.starts_with('/') && d != PEER_DISK_PLACEHOLDER)
            })
    }
}

impl ResFile {
    /// The section describing this node: the one named like `names` (the agent's node name,
    /// the host name) or like the `# Local node:` header; failing that, the only section with a
    /// real disk (LINSTOR writes placeholders for every peer's disk).
    pub fn local(&self, names: &[&str]) -> Option<&ResHost> {
        let by_name = |n: &str| self.hosts.iter().find(|h| h.name == n);
        names
            .iter()
            .copied()
            .chain(self.local_hint.as_deref())
            .find_map(by_name)
            .or_else(|| {
                let mut with_disk = self.hosts.iter().filter(|h| h.has_local_disk());
                match (with_disk.next(), with_disk.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            })
    }
}

/// Why a file could not be read; the message names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

/// Parses the first `resource` of `text`.
pub fn parse(text: &str) -> Result<ResFile, ParseError> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    let statements = statements(&tokens, &mut pos, false)?;
    let resource = statements
        .iter()
        .find(|s| s.word(0) == Some("resource") && s.block.is_some())
        .ok_or_else(|| ParseError {
            line: 1,
            what: "no `resource NAME { … }` section".into(),
        })?;
    let name = resource.word(1).ok_or_else(|| ParseError {
        line: resource.line,
        what: "`resource` without a name".into(),
    })?;
    let mut out = ResFile {
        resource: name.to_owned(),
        local_hint: text.lines().find_map(|l| {
            let rest = l
                .trim()
                .strip_prefix('#')?
                .trim()
                .strip_prefix("Local node:")?;
            Some(rest.trim().to_owned()).filter(|s| !s.is_empty())
        }),
        ..Default::default()
    };
    let body = resource.block.as_deref().unwrap_or_default();
    // Addresses given in `connection`/`path` sections, by host name.
    let mut addresses: BTreeMap<String, (String, u16)> = BTreeMap::new();
    for s in body {
        match (s.word(0), &s.block) {
            (Some("net"), Some(b)) => {
                for opt in b.iter().filter(|o| o.block.is_none()) {
                    if let (Some(k), Some(v)) = (opt.word(0), opt.word(1)) {
                        // The shared secret is never needed and must not sit in a value
                        // that may be printed with `{:?}`.
                        if k != "shared-secret" {
                            out.net.insert(k.to_owned(), v.to_owned());
                        }
                    }
                }
            }
            (Some("on"), Some(b)) => {
                let host = s.word(1).ok_or_else(|| ParseError {
                    line: s.line,
                    what: "`on` without a host name".into(),
                })?;
                out.hosts.push(on_section(host, b)?);
            }
            (Some("connection"), Some(b)) => {
                connection_addresses(b, &mut addresses)?;
            }
            _ => {}
        }
    }
    for h in &mut out.hosts {
        if h.address.is_none() {
            if let Some((a, p)) = addresses.get(&h.name) {
                h.address = Some(a.clone());
                h.port = Some(*p);
            }
        }
    }
    Ok(out)
}

fn on_section(name: &str, body: &[Statement]) -> Result<ResHost, ParseError> {
    let mut host = ResHost {
        name: name.to_owned(),
        ..Default::default()
    };
    for s in body {
        match (s.word(0), &s.block) {
            (Some("node-id"), None) => host.node_id = Some(number(s, 1)?),
            (Some("address"), None) => {
                let (a, p) = address(s, 1)?;
                host.address = Some(a);
                host.port = Some(p);
            }
            (Some("volume"), Some(b)) => host.volumes.push(volume(s, b)?),
            _ => {}
        }
    }
    host.volumes.sort_by_key(|v| v.number);
    Ok(host)
}

fn volume(head: &Statement, body: &[Statement]) -> Result<ResVolume, ParseError> {
    let mut v = ResVolume {
        number: number(head, 1)?,
        minor: None,
        disk: None,
    };
    for s in body.iter().filter(|s| s.block.is_none()) {
        match s.word(0) {
            Some("disk") => v.disk = s.word(1).map(str::to_owned),
            // `device minor 1000;`, `device /dev/drbd1000 minor 1000;` or `device /dev/drbd1000;`
            Some("device") => {
                v.minor = match s.words.iter().position(|w| w == "minor") {
                    Some(i) => Some(number(s, i + 1)?),
                    None => s
                        .word(1)
                        .and_then(|d| d.strip_prefix("/dev/drbd"))
                        .and_then(|n| n.parse().ok()),
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

/// `host NAME address [ipv4|ipv6] ADDR:PORT;` lines of a `connection`, directly or in `path`s.
fn connection_addresses(
    body: &[Statement],
    out: &mut BTreeMap<String, (String, u16)>,
) -> Result<(), ParseError> {
    for s in body {
        match (s.word(0), &s.block) {
            (Some("path"), Some(b)) => connection_addresses(b, out)?,
            (Some("host"), _) => {
                let (Some(name), Some(at)) =
                    (s.word(1), s.words.iter().position(|w| w == "address"))
                else {
                    continue;
                };
                let (a, p) = address(s, at + 1)?;
                out.entry(name.to_owned()).or_insert((a, p));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `[ipv4|ipv6|ssocks|sdp] ADDR:PORT` from word `i` on; IPv6 keeps its brackets off.
fn address(s: &Statement, i: usize) -> Result<(String, u16), ParseError> {
    let mut w = s.word(i);
    if matches!(w, Some("ipv4" | "ipv6" | "ssocks" | "sdp" | "sci")) {
        w = s.word(i + 1);
    }
    let bad = |what: &str| ParseError {
        line: s.line,
        what: what.to_owned(),
    };
    let w = w.ok_or_else(|| bad("`address` without a value"))?;
    let (addr, port) = w
        .rsplit_once(':')
        .ok_or_else(|| bad("address without `:PORT`"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("address port is not a number"))?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    Ok((addr.to_owned(), port))
}

fn number<T: std::str::FromStr>(s: &Statement, i: usize) -> Result<T, ParseError> {
    s.word(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| ParseError {
            line: s.line,
            what: format!(
                "`{}` needs a number, found {:?}",
                s.word(0).unwrap_or_default(),
                s.word(i).unwrap_or("nothing")
            ),
        })
}

/// One statement: words, then `;` (no block) or a `{ … }` block.
#[derive(Debug)]
struct Statement {
    words: Vec<String>,
    block: Option<Vec<Statement>>,
    line: usize,
}

impl Statement {
    fn word(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Semi,
}

fn statements(
    tokens: &[(Token, usize)],
    pos: &mut usize,
    nested: bool,
) -> Result<Vec<Statement>, ParseError> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    let mut line = 0;
    while let Some((tok, l)) = tokens.get(*pos) {
        *pos += 1;
        match tok {
            Token::Word(w) => {
                if words.is_empty() {
                    line = *l;
                }
                words.push(w.clone());
            }
            Token::Semi => {
                if !words.is_empty() {
                    out.push(Statement {
                        words: std::mem::take(&mut words),
                        block: None,
                        line,
                    });
                }
            }
            Token::Open => {
                let block = statements(tokens, pos, true)?;
                out.push(Statement {
                    words: std::mem::take(&mut words),
                    block: Some(block),
                    line: if line == 0 { *l } else { line },
                });
            }
            Token::Close => {
                if !nested {
                    return Err(ParseError {
                        line: *l,
                        what: "`}` without a matching `{`".into(),
                    });
                }
                if !words.is_empty() {
                    return Err(ParseError {
                        line: *l,
                        // Only the keyword: the values may be a secret (`shared-secret`).
                        what: format!("`{} …` is missing its `;`", words[0]),
                    });
                }
                return Ok(out);
            }
        }
    }
    if nested {
        return Err(ParseError {
            line: tokens.last().map_or(1, |t| t.1),
            what: "a `{` is never closed".into(),
        });
    }
    Ok(out)
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '{' => out.push((Token::Open, line)),
            '}' => out.push((Token::Close, line)),
            ';' => out.push((Token::Semi, line)),
            '"' => {
                let start = line;
                let mut w = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => w.push(e),
                            None => break,
                        },
                        Some('\n') => {
                            line += 1;
                            w.push('\n');
                        }
                        Some(c) => w.push(c),
                        None => {
                            return Err(ParseError {
                                line: start,
                                what: "a quoted string is never closed".into(),
                            })
                        }
                    }
                }
                out.push((Token::Word(w), start));
            }
            c => {
                let mut w = String::from(c);
                while let Some(n) = chars.next_if(|&n| !n.is_whitespace() && !"{};\"#".contains(n))
                {
                    w.push(n);
                }
                out.push((Token::Word(w), line));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
