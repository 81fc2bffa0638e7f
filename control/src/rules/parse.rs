//! The iptables-save parser: lines into [`ParsedRules`], every value checked as iptables and
//! the kernel check it, every problem reported as a [`RuleError`] at its line and column.
//!
//! One error per line at most (the first problem on it); the parser then goes on with the next
//! line, so a file's errors come out together. Table-wide checks (jumps, loops, which targets
//! and interfaces each chain may use) run at `COMMIT`, in [`super::validate`].

use super::ast::*;
use super::lex::{tokenize, Token};
use super::matches::{self, HostAddrs};
use super::names;
use super::RuleError;
mod connlimit;
mod connmark;
mod ctmatch;
mod ctzone;
mod ext;
mod hashlimit;
mod natmap;
mod nfacct;
mod nflog;
mod physdev;
mod rpfilter;
mod set;
mod string;
#[cfg(test)]
pub(crate) use string::hex as string_hex;
#[cfg(test)]
pub(crate) use u32_match::parse as u32_parse;
mod time;
mod u32_match;
use dataplane::classify::checks::{Check, Cmp};
use dataplane::classify::{LogSpec, PortMask};
use dataplane::wire::{Family, IpAddr128};
use std::net::{IpAddr, Ipv4Addr};

/// What the parser needs to know besides the text.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub family: Family,
    pub ports: &'a [String],
    /// The router's addresses (`-m addrtype`); [`NO_HOST`] in bridge mode.
    pub host: &'a HostAddrs,
    /// The ipset sets `-m set` names ([`super::ipsets`]); `None`: no sets file was given.
    pub sets: Option<&'a std::sync::Arc<dataplane::classify::ipset::SetsCell>>,
}

/// No addresses: bridge mode.
pub(crate) static NO_HOST: HostAddrs = HostAddrs {
    ports: Vec::new(),
    routed: false,
    bridge: None,
    rpf: None,
};

impl Ctx<'_> {
    pub(crate) fn err(&self, line: u32, col: u32, message: impl Into<String>) -> RuleError {
        RuleError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }
}

/// Longest chain name iptables accepts (`XT_EXTENSION_MAXNAMELEN` - 1).
const MAX_CHAIN_NAME: usize = 28;
/// Longest interface name (`IFNAMSIZ` - 1).
const MAX_IFACE_NAME: usize = 15;
/// Longest `--log-prefix`.
const MAX_LOG_PREFIX: usize = 29;
/// Longest `--comment` (`XT_MAX_COMMENT_LEN` - 1).
const MAX_COMMENT: usize = 255;
/// Most ports one multiport match holds (a range counts as two).
const MAX_MULTIPORT: usize = 15;

/// LOG options that add fields to Linux's kernel log line (TCP sequence numbers, TCP and IP
/// options, the socket's owner, the decoded MAC header). They are accepted and change nothing:
/// Rampart's log records have fixed fields of their own, and no verdict depends on them.
const LOG_DETAIL_OPTIONS: &[&str] = &[
    "--log-tcp-sequence",
    "--log-tcp-options",
    "--log-ip-options",
    "--log-uid",
    "--log-macdecode",
];

/// Targets Linux has that Rampart does not implement: named in the error rather than taken for
/// an undeclared chain.
const UNSUPPORTED_TARGETS: &[&str] = &[
    "QUEUE",
    "NFQUEUE",
    "TPROXY",
    "ULOG",
    "TRACE",
    "TEE",
    "CLASSIFY",
    "SET",
    "AUDIT",
    "CHECKSUM",
    "SECMARK",
    "CONNSECMARK",
    "RATEEST",
    "LED",
    "IDLETIMER",
    "SYNPROXY",
    "CLUSTERIP",
    "ECN",
    "HMARK",
    "DNPT",
    "SNPT",
    "MIRROR",
    "CONNTRACK",
];

/// Names a user chain may not take (they would read as targets).
const RESERVED_CHAIN_NAMES: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "NFLOG",
    "SNAT",
    "DNAT",
    "MASQUERADE",
    "NOTRACK",
    "CT",
    "CONNMARK",
    "NETMAP",
    "REDIRECT",
];

/// Parses `text`; returns what could be parsed and every error found.
pub(crate) fn parse(ctx: &Ctx<'_>, text: &str) -> (ParsedRules, Vec<RuleError>) {
    let mut p = FileParser {
        ctx,
        tables: Vec::new(),
        open: None,
        errors: Vec::new(),
    };
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        last_line = line_no;
        p.line(line_no, line);
    }
    if let Some(open) = p.open.take() {
        let name = open.kind_name.clone();
        p.errors.push(ctx.err(
            last_line.saturating_add(1),
            1,
            format!(
                "COMMIT expected: table {name} (opened at line {}) is not committed",
                open.line
            ),
        ));
        p.close(open, 0);
    }
    p.errors.extend(super::validate::nat_states(ctx, &p.tables));
    let rules = ParsedRules {
        file: ctx.file.to_string(),
        family: ctx.family,
        tables: p.tables,
    };
    (rules, p.errors)
}

/// A table between its `*name` line and its `COMMIT`.
struct OpenTable {
    kind_name: String,
    line: u32,
    /// `None` while skipping the content of a table that was refused (unsupported, duplicate).
    table: Option<Table>,
}

struct FileParser<'a> {
    ctx: &'a Ctx<'a>,
    tables: Vec<Table>,
    open: Option<OpenTable>,
    errors: Vec<RuleError>,
}

impl FileParser<'_> {
    fn line(&mut self, line_no: u32, line: &str) {
        let toks = match tokenize(line) {
            Ok(t) => t,
            Err((col, msg)) => {
                self.errors.push(self.ctx.err(line_no, col, msg));
                return;
            }
        };
        let Some(first) = toks.first() else { return };
        if first.text.starts_with('#') && !first.quoted {
            return;
        }
        let res = if first.text.starts_with('*') && !first.quoted {
            self.table_header(line_no, &toks)
        } else if first.text == "COMMIT" {
            self.commit(line_no, &toks)
        } else {
            match self.open.as_mut() {
                None => Err(self.ctx.err(
                    line_no,
                    first.col,
                    format!(
                        "{:?} outside a table (a table starts with *filter, *nat or *raw)",
                        first.text
                    ),
                )),
                Some(OpenTable { table: None, .. }) => Ok(()),
                Some(OpenTable {
                    table: Some(table), ..
                }) => {
                    if first.text.starts_with(':') && !first.quoted {
                        chain_decl(self.ctx, table, line_no, &toks)
                    } else {
                        rule_line(self.ctx, table, line_no, &toks)
                    }
                }
            }
        };
        if let Err(e) = res {
            self.errors.push(e);
        }
    }

    fn table_header(&mut self, line_no: u32, toks: &[Token]) -> Result<(), RuleError> {
        let name = &toks[0].text[1..];
        if let Some(open) = self.open.take() {
            self.errors.push(self.ctx.err(
                line_no,
                toks[0].col,
                format!(
                    "COMMIT expected before *{name}: table {} (opened at line {}) is not committed",
                    open.kind_name, open.line
                ),
            ));
            self.close(open, 0);
        }
        let mut open = OpenTable {
            kind_name: name.to_string(),
            line: line_no,
            table: None,
        };
        let res = if let Some(extra) = toks.get(1) {
            Err(self.ctx.err(
                line_no,
                extra.col,
                format!("unexpected {:?} after *{name}", extra.text),
            ))
        } else if let Some(kind) = TableKind::from_name(name) {
            if let Some(prev) = self.tables.iter().find(|t| t.kind == kind) {
                Err(self.ctx.err(
                    line_no,
                    toks[0].col,
                    format!("table {name} appears twice (first at line {})", prev.line),
                ))
            } else {
                open.table = Some(new_table(kind, line_no));
                Ok(())
            }
        } else if name.is_empty() {
            Err(self
                .ctx
                .err(line_no, toks[0].col, "missing table name after *"))
        } else {
            Err(self.ctx.err(
                line_no,
                toks[0].col,
                format!(
                    "unsupported table {name} (Rampart supports filter, nat and raw, and mangle \
                     and security when their rules change nothing)"
                ),
            ))
        };
        self.open = Some(open);
        res
    }

    fn commit(&mut self, line_no: u32, toks: &[Token]) -> Result<(), RuleError> {
        let Some(open) = self.open.take() else {
            return Err(self.ctx.err(line_no, toks[0].col, "COMMIT without a table"));
        };
        self.close(open, line_no);
        match toks.get(1) {
            Some(extra) => Err(self.ctx.err(
                line_no,
                extra.col,
                format!("unexpected {:?} after COMMIT", extra.text),
            )),
            None => Ok(()),
        }
    }

    /// Ends the open table at its `COMMIT` (line `end`, 0 when there is none: an error).
    fn close(&mut self, open: OpenTable, end: u32) {
        if let Some(mut table) = open.table {
            table.end = end;
            self.errors
                .extend(super::validate::validate_table(self.ctx, &table));
            self.tables.push(table);
        }
    }
}

fn new_table(kind: TableKind, line: u32) -> Table {
    let chains = kind
        .builtin_chains()
        .iter()
        .map(|&h| Chain {
            name: h.chain_name().to_string(),
            hook: Some(h),
            policy: Some(Policy::Accept),
            counters: None,
            line: 0,
            rules: Vec::new(),
        })
        .collect();
    Table {
        kind,
        line,
        end: 0,
        chains,
    }
}

fn counters(ctx: &Ctx<'_>, line: u32, tok: &Token) -> Result<Counters, RuleError> {
    let bad = || {
        ctx.err(
            line,
            tok.col,
            format!("invalid counters {:?} (expected [PACKETS:BYTES])", tok.text),
        )
    };
    let inner = tok
        .text
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(bad)?;
    let (p, b) = inner.split_once(':').ok_or_else(bad)?;
    Ok(Counters {
        packets: p.parse().map_err(|_| bad())?,
        bytes: b.parse().map_err(|_| bad())?,
    })
}

/// `:NAME POLICY [packets:bytes]`.
fn chain_decl(
    ctx: &Ctx<'_>,
    table: &mut Table,
    line: u32,
    toks: &[Token],
) -> Result<(), RuleError> {
    let name = &toks[0].text[1..];
    let col = toks[0].col;
    let Some(policy_tok) = toks.get(1) else {
        return Err(ctx.err(
            line,
            col,
            format!("chain {name}: missing policy (ACCEPT, DROP, or - for a user chain)"),
        ));
    };
    let ctrs = toks.get(2).map(|t| counters(ctx, line, t)).transpose()?;
    if let Some(extra) = toks.get(3) {
        return Err(ctx.err(
            line,
            extra.col,
            format!("unexpected {:?} after the chain counters", extra.text),
        ));
    }
    if let Some(hook) = HookPoint::from_chain_name(name) {
        let Some(chain) = table.chains.iter_mut().find(|c| c.hook == Some(hook)) else {
            return Err(ctx.err(
                line,
                col,
                format!("table {} has no built-in chain {name}", table.kind.name()),
            ));
        };
        if chain.line != 0 {
            return Err(ctx.err(
                line,
                col,
                format!("chain {name} declared twice (first at line {})", chain.line),
            ));
        }
        chain.policy = Some(match policy_tok.text.as_ref() {
            "ACCEPT" | "-" => Policy::Accept,
            "DROP" if !table.kind.applied() && table.kind != TableKind::Mangle => {
                return Err(ctx.err(
                    line,
                    policy_tok.col,
                    format!(
                        "policy DROP in the {} table is not supported (Rampart applies filter, \
                         nat and raw; the {} table may only hold rules that change nothing)",
                        table.kind.name(),
                        table.kind.name()
                    ),
                ));
            }
            "DROP" => Policy::Drop,
            other => {
                return Err(ctx.err(
                    line,
                    policy_tok.col,
                    format!("invalid policy {other:?} for {name} (ACCEPT or DROP)"),
                ));
            }
        });
        chain.line = line;
        chain.counters = ctrs;
        return Ok(());
    }
    check_chain_name(name).map_err(|m| ctx.err(line, col + 1, m))?;
    if let Some(prev) = table.chain(name) {
        return Err(ctx.err(
            line,
            col,
            format!("chain {name} declared twice (first at line {})", prev.line),
        ));
    }
    if policy_tok.text != "-" {
        return Err(ctx.err(
            line,
            policy_tok.col,
            format!(
                "user chain {name} cannot have a policy (write - instead of {})",
                policy_tok.text
            ),
        ));
    }
    table.chains.push(Chain {
        name: name.to_string(),
        hook: None,
        policy: None,
        counters: ctrs,
        line,
        rules: Vec::new(),
    });
    Ok(())
}

fn check_chain_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing chain name after :".into());
    }
    if name.chars().count() > MAX_CHAIN_NAME {
        return Err(format!(
            "chain name {name} is too long (at most {MAX_CHAIN_NAME} characters)"
        ));
    }
    if name.starts_with('-') || name.starts_with('!') {
        return Err(format!(
            "invalid chain name {name} (may not start with - or !)"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("invalid chain name {name:?} (no blanks)"));
    }
    if RESERVED_CHAIN_NAMES.contains(&name) || UNSUPPORTED_TARGETS.contains(&name) {
        return Err(format!("chain name {name} clashes with a target name"));
    }
    Ok(())
}

/// `[packets:bytes] -A CHAIN options...`, appended to its chain.
fn rule_line(ctx: &Ctx<'_>, table: &mut Table, line: u32, toks: &[Token]) -> Result<(), RuleError> {
    if let Some((chain_idx, mut rule)) = parse_rule(ctx, table, line, toks)? {
        let chain = &mut table.chains[chain_idx];
        rule.number = u32::try_from(chain.rules.len() + 1).unwrap_or(u32::MAX);
        chain.rules.push(rule);
    }
    Ok(())
}

/// One rule line of `table` (whose chains are all declared already): the index of its chain and
/// the rule, numbered 0 (its place in the chain is the caller's business); `None` for a line
/// meant for the other family's tool. Depends only on the line, the table's kind and chains,
/// and `ctx`, which is what lets [`crate::reload`] parse the changed lines of a file alone.
pub(crate) fn parse_rule(
    ctx: &Ctx<'_>,
    table: &Table,
    line: u32,
    toks: &[Token],
) -> Result<Option<(usize, Rule)>, RuleError> {
    let mut i = 0;
    let mut ctrs = None;
    if toks[0].text.starts_with('[') && !toks[0].quoted {
        ctrs = Some(counters(ctx, line, &toks[0])?);
        i = 1;
    }
    let Some(cmd) = toks.get(i) else {
        return Err(ctx.err(line, toks[0].col, "counters without a rule"));
    };
    if cmd.text != "-A" && cmd.text != "--append" {
        return Err(if cmd.text.starts_with('-') {
            ctx.err(
                line,
                cmd.col,
                format!(
                    "unsupported command {} (iptables-save files use only -A)",
                    cmd.text
                ),
            )
        } else {
            ctx.err(
                line,
                cmd.col,
                format!(
                    "unexpected {:?} (expected -A CHAIN, :CHAIN, COMMIT or a comment)",
                    cmd.text
                ),
            )
        });
    }
    let Some(chain_tok) = toks.get(i + 1) else {
        return Err(ctx.err(line, cmd.col, "-A needs a chain name"));
    };
    let Some(chain_idx) = table.chain_index(&chain_tok.text) else {
        return Err(ctx.err(
            line,
            chain_tok.col,
            format!(
                "chain {} is not declared in table {} (declare it with :{} - [0:0])",
                chain_tok.text,
                table.kind.name(),
                chain_tok.text
            ),
        ));
    };
    let hook = table.chains[chain_idx].hook;
    let mut rp = RuleParser {
        ctx,
        table: table.kind,
        hook,
        line,
        toks: &toks[i + 2..],
        pos: 0,
        matches: Vec::new(),
        instances: Vec::new(),
        proto: None,
        proto_used: false,
        seen: Vec::new(),
        target: None,
        counters: ctrs,
        other_family: false,
        addrtypes: Vec::new(),
        iface_limit: None,
        ext: Default::default(),
        ct: Default::default(),
        hashlimit: Default::default(),
        physdev: Default::default(),
        time: Default::default(),
        set: Default::default(),
        connlimit: Default::default(),
        string: Default::default(),
        u32: Default::default(),
        rpfilter: Default::default(),
        nfacct: Default::default(),
    };
    rp.run()?;
    rp.finish_addrtype()?;
    rp.ext_finish()?;
    rp.ct_finish()?;
    rp.hashlimit_finish()?;
    rp.physdev_finish()?;
    rp.time_finish()?;
    rp.set_finish()?;
    rp.connlimit_finish()?;
    rp.string_finish()?;
    rp.u32_finish()?;
    rp.rpfilter_finish()?;
    rp.nfacct_finish()?;
    if rp.other_family {
        // `-6` in iptables-restore (or `-4` in ip6tables-restore): the line is for the other
        // family's tool, which is how iptables-restore treats it too.
        return Ok(None);
    }
    let target = rp.finish_target()?;
    rp.check_modules()?;
    rp.check_per_packet()?;
    let cubes = super::compile::rule_cubes(ctx.family, &rp.matches);
    Ok(Some((
        chain_idx,
        Rule {
            line,
            col: cmd.col,
            number: 0,
            counters: rp.counters,
            matches: rp.matches,
            target,
            cubes,
        },
    )))
}

/// A loaded match extension: which options it has taken so far.
struct Instance {
    module: Module,
    col: u32,
    used: Vec<&'static str>,
}

/// A target being parsed: its options arrive after `-j`.
struct PendingTarget {
    col: u32,
    goto: bool,
    name: String,
    name_col: u32,
    kind: PendingKind,
}

enum PendingKind {
    Accept,
    Drop,
    Return,
    Reject {
        with: Option<(RejectWith, u32)>,
    },
    Log {
        prefix: Option<String>,
        level: Option<u8>,
        /// Which of [`LOG_DETAIL_OPTIONS`] were given.
        details: u8,
    },
    Snat {
        to: Option<NatTo>,
        flags: NatFlags,
    },
    Dnat {
        to: Option<NatTo>,
        flags: NatFlags,
    },
    Masquerade {
        ports: Option<(PortRange, u32)>,
        flags: NatFlags,
    },
    NoTrack,
    Ct(ctzone::Pending),
    /// `CHECKSUM --checksum-fill` (mangle): fills in a checksum left to offload.
    Checksum {
        fill: bool,
    },
    /// `(mask, xor)` once an option gave it.
    Mark {
        op: Option<(u32, u32)>,
    },
    /// CONNMARK's options so far ([`connmark`]).
    ConnMark(connmark::Pending),
    /// NFLOG's options so far ([`nflog`]): a LOG whose records carry the group.
    Nflog(nflog::Pending),
    /// NETMAP's or REDIRECT's options so far ([`natmap`]).
    NatMap(natmap::Pending),
    /// TCPMSS, DSCP, TOS, TTL, HL (mangle): their options as given, read by
    /// [`super::mangle::edit`].
    Edit {
        opts: Vec<super::mangle::EditOpt>,
    },
    Jump(String),
}

use dataplane::classify::RejectWith;

#[derive(Default)]
struct NatFlags {
    random: bool,
    random_fully: bool,
    persistent: bool,
    to_col: u32,
}

struct RuleParser<'a> {
    ctx: &'a Ctx<'a>,
    table: TableKind,
    hook: Option<HookPoint>,
    line: u32,
    toks: &'a [Token<'a>],
    pos: usize,
    matches: Vec<Match>,
    instances: Vec<Instance>,
    /// `-p`: the protocol (`None` = all), negated, and column.
    proto: Option<(Option<u8>, bool, u32)>,
    /// Whether the protocol's match was loaded implicitly already (iptables does it once).
    proto_used: bool,
    /// Generic options given (canonical names).
    seen: Vec<&'static str>,
    target: Option<PendingTarget>,
    counters: Option<Counters>,
    other_family: bool,
    /// `-m addrtype`'s `--src-type`/`--dst-type`: column, negated, destination, types; made
    /// into [`Cond::AddrType`] once `--limit-iface-in/out` are known.
    addrtypes: Vec<(u32, bool, bool, Vec<matches::AddrType>)>,
    /// `--limit-iface-out` (true) or `--limit-iface-in` (false), and its column.
    iface_limit: Option<(bool, u32)>,
    /// The matches of `ext` (`-m recent`) being read.
    ext: ext::State,
    /// The connection matches (`-m conntrack`'s options besides `--ctstate`, `-m connbytes`)
    /// being read.
    ct: ctmatch::State,
    /// The `-m hashlimit` matches being read.
    hashlimit: hashlimit::State,
    /// The `-m physdev` matches being read.
    physdev: physdev::State,
    /// The `-m time` matches being read.
    time: time::State,
    /// The `-m set` matches being read.
    set: set::State,
    /// The `-m connlimit` matches being read.
    connlimit: connlimit::State,
    /// The `-m string` matches being read.
    string: string::State,
    /// The `-m u32` matches being read.
    u32: u32_match::State,
    /// The `-m rpfilter` matches being read.
    rpfilter: rpfilter::State,
    /// The `-m nfacct` matches being read.
    nfacct: nfacct::State,
}

impl<'a> RuleParser<'a> {
    fn err(&self, col: u32, msg: impl Into<String>) -> RuleError {
        self.ctx.err(self.line, col, msg)
    }

    fn next(&mut self) -> Option<&'a Token<'a>> {
        let t = self.toks.get(self.pos)?;
        self.pos += 1;
        Some(t)
    }

    /// The value of option `opt`.
    fn value(&mut self, opt: &Token) -> Result<&'a Token<'a>, RuleError> {
        match self.next() {
            None => Err(self.err(opt.col, format!("option {} needs a value", opt.text))),
            Some(v) if v.text == "!" && !v.quoted => Err(self.err(
                v.col,
                format!("! must come before the option: write ! {} VALUE", opt.text),
            )),
            Some(v) => Ok(v),
        }
    }

    fn once(&mut self, canonical: &'static str, opt: &Token) -> Result<(), RuleError> {
        if self.seen.contains(&canonical) {
            return Err(self.err(
                opt.col,
                format!("multiple {canonical} options are not allowed"),
            ));
        }
        self.seen.push(canonical);
        Ok(())
    }

    fn push(&mut self, col: u32, negated: bool, cond: Cond) {
        self.matches.push(Match { col, negated, cond });
    }

    /// Puts a module's check, made once all its options are read, where the module stood
    /// among the rule's matches (`at`, a position recorded when `-m` was read).
    fn place_check(&mut self, at: usize, col: u32, check: Check) {
        self.matches.insert(
            at.min(self.matches.len()),
            Match {
                col,
                negated: false,
                cond: Cond::Check(check),
            },
        );
    }

    fn run(&mut self) -> Result<(), RuleError> {
        let mut neg: Option<u32> = None;
        while let Some(tok) = self.next() {
            if tok.text == "!" && !tok.quoted {
                if neg.is_some() {
                    return Err(self.err(tok.col, "multiple ! flags are not allowed"));
                }
                neg = Some(tok.col);
                continue;
            }
            if !tok.text.starts_with('-') || tok.text == "-" || tok.quoted {
                return Err(self.err(tok.col, format!("unexpected argument {:?}", tok.text)));
            }
            let negated = neg.take().is_some();
            self.option(tok, negated)?;
            if self.other_family {
                // iptables-restore stops reading the line here and skips it.
                return Ok(());
            }
        }
        if let Some(col) = neg {
            return Err(self.err(col, "! at the end of the rule negates nothing"));
        }
        Ok(())
    }

    fn no_negation(&self, tok: &Token, negated: bool) -> Result<(), RuleError> {
        if negated {
            Err(self.err(tok.col, format!("! is not allowed before {}", tok.text)))
        } else {
            Ok(())
        }
    }

    fn option(&mut self, tok: &'a Token<'a>, negated: bool) -> Result<(), RuleError> {
        let family = self.ctx.family;
        match tok.text.as_ref() {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let src = matches!(tok.text.as_ref(), "-s" | "--source" | "--src");
                self.once(if src { "-s" } else { "-d" }, tok)?;
                let v = self.value(tok)?;
                let mut nets = Vec::new();
                for part in v.text.split(',') {
                    nets.push(parse_net(family, part).map_err(|m| self.err(v.col, m))?);
                }
                if negated && nets.len() > 1 {
                    return Err(self.err(v.col, "! is not allowed with several addresses"));
                }
                self.push(
                    tok.col,
                    negated,
                    if src {
                        Cond::Source(nets)
                    } else {
                        Cond::Destination(nets)
                    },
                );
            }
            "-p" | "--protocol" => {
                self.once("-p", tok)?;
                let v = self.value(tok)?;
                let proto = names::protocol(&v.text).map_err(|m| self.err(v.col, m))?;
                if negated && proto.is_none() {
                    return Err(self.err(tok.col, "! -p all would never match"));
                }
                self.proto = Some((proto, negated, tok.col));
                self.push(tok.col, negated, Cond::Protocol(proto));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let input = matches!(tok.text.as_ref(), "-i" | "--in-interface");
                self.once(if input { "-i" } else { "-o" }, tok)?;
                if let Some(h) = self.hook {
                    if (input && !h.has_in_interface()) || (!input && !h.has_out_interface()) {
                        return Err(self.err(
                            tok.col,
                            format!("can't use {} with {}", tok.text, h.chain_name()),
                        ));
                    }
                }
                let v = self.value(tok)?;
                let iface = self.interface(&v.text).map_err(|m| self.err(v.col, m))?;
                self.push(
                    tok.col,
                    negated,
                    if input {
                        Cond::InInterface(iface)
                    } else {
                        Cond::OutInterface(iface)
                    },
                );
            }
            "-f" | "--fragment" => {
                if family == Family::V6 {
                    return Err(self.err(
                        tok.col,
                        format!(
                            "unsupported option {} (IPv4 only; ip6tables has no -f)",
                            tok.text
                        ),
                    ));
                }
                self.once("-f", tok)?;
                self.push(tok.col, negated, Cond::Fragment);
            }
            "-m" | "--match" => {
                self.no_negation(tok, negated)?;
                let v = self.value(tok)?;
                let module = match (v.text.as_ref(), family) {
                    ("tcp", _) => Module::Tcp,
                    ("udp", _) => Module::Udp,
                    ("icmp", Family::V4) => Module::Icmp,
                    ("icmp6" | "icmpv6" | "ipv6-icmp", Family::V6) => Module::Icmp6,
                    ("multiport", _) => Module::Multiport,
                    ("iprange", _) => Module::Iprange,
                    ("conntrack", _) => Module::Conntrack,
                    ("state", _) => Module::State,
                    ("comment", _) => Module::Comment,
                    ("ttl", Family::V4) => Module::Ttl,
                    ("hl", Family::V6) => Module::Hl,
                    ("length", _) => Module::Length,
                    ("tos", _) => Module::Tos,
                    ("dscp", _) => Module::Dscp,
                    ("ecn", _) => Module::Ecn,
                    ("pkttype", _) => Module::PktType,
                    ("mac", _) => Module::Mac,
                    ("tcpmss", _) => Module::TcpMss,
                    ("limit", _) => Module::Limit,
                    ("addrtype", _) => Module::AddrType,
                    ("rt", Family::V6) => Module::Rt,
                    ("mark", _) => Module::Mark,
                    ("statistic", _) => Module::Statistic,
                    ("connbytes", _) => Module::ConnBytes,
                    ("quota", _) => Module::Quota,
                    ("hashlimit", _) => Module::HashLimit,
                    ("physdev", _) => Module::PhysDev,
                    ("time", _) => Module::Time,
                    ("set", _) => Module::Set,
                    ("connlimit", _) => Module::ConnLimit,
                    ("connmark", _) => Module::ConnMark,
                    ("string", _) => Module::String,
                    ("u32", _) => Module::U32,
                    ("rpfilter", _) => Module::RpFilter,
                    ("nfacct", _) => Module::NfAcct,
                    (n, f) if ext::module(n, f).is_some() => ext::module(n, f).expect("known"),
                    ("ttl", Family::V6) | ("hl", Family::V4) => {
                        let other = if v.text == "ttl" { "hl" } else { "ttl" };
                        return Err(self.err(
                            v.col,
                            format!(
                                "unsupported option -m {} in {} (use -m {other})",
                                v.text,
                                if family == Family::V4 {
                                    "iptables"
                                } else {
                                    "ip6tables"
                                }
                            ),
                        ));
                    }
                    ("icmp", Family::V6) => {
                        return Err(self.err(
                            v.col,
                            "unsupported option -m icmp in ip6tables (use -m icmp6)",
                        ));
                    }
                    ("icmp6" | "icmpv6" | "ipv6-icmp", Family::V4) => {
                        return Err(self.err(
                            v.col,
                            format!("unsupported option -m {} in iptables (IPv6 only)", v.text),
                        ));
                    }
                    (other, _) => {
                        return Err(self.err(
                            tok.col,
                            format!("unsupported option -m {other} ({})", match_refusal(other)),
                        ));
                    }
                };
                self.load(module, tok.col);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                self.no_negation(tok, negated)?;
                if self.target.is_some() {
                    return Err(self.err(tok.col, "multiple -j/-g options are not allowed"));
                }
                let goto = matches!(tok.text.as_ref(), "-g" | "--goto");
                let v = self.value(tok)?;
                let kind = self.target_kind(v)?;
                self.target = Some(PendingTarget {
                    col: tok.col,
                    goto,
                    name: v.text.to_string(),
                    name_col: v.col,
                    kind,
                });
            }
            "-c" | "--set-counters" => {
                self.no_negation(tok, negated)?;
                let p = self.value(tok)?;
                let b = self.value(tok)?;
                let bad = |t: &Token| self.err(t.col, format!("invalid counter {:?}", t.text));
                let packets = p.text.parse().map_err(|_| bad(p))?;
                let bytes = b.text.parse().map_err(|_| bad(b))?;
                self.counters = Some(Counters { packets, bytes });
            }
            "-4" | "--ipv4" | "-6" | "--ipv6" => {
                self.no_negation(tok, negated)?;
                let v4 = matches!(tok.text.as_ref(), "-4" | "--ipv4");
                if v4 != (family == Family::V4) {
                    self.other_family = true;
                }
            }
            _ => return self.extension_option(tok, negated),
        }
        Ok(())
    }

    fn load(&mut self, module: Module, col: u32) {
        self.instances.push(Instance {
            module,
            col,
            used: Vec::new(),
        });
        self.push(col, false, Cond::Module(module));
        self.ext_load(module, col);
        self.hashlimit_load(module, col);
        self.physdev_load(module, col);
        self.time_load(module, col);
        self.set_load(module, col);
        self.connlimit_load(module, col);
        self.string_load(module, col);
        self.u32_load(module, col);
        self.rpfilter_load(module, col);
        self.nfacct_load(module, col);
        if module == Module::Rt {
            // Any packet with a Routing header; the options narrow it.
            self.push(
                col,
                false,
                Cond::Check(Check::Ipv6Rt {
                    rt_type: None,
                    segs_left: (0, u32::MAX, false),
                    len: None,
                }),
            );
        }
        if module == Module::Limit {
            // libxt_limit's defaults: 3/hour, burst 5; the options change this one.
            self.push(
                col,
                false,
                Cond::Limit {
                    avg: 12_000_000,
                    burst: 5,
                },
            );
        }
    }

    /// The fields of the last `-m rt`'s check.
    fn last_rt(&mut self) -> RtFields {
        self.matches
            .iter()
            .rev()
            .find_map(|m| match m.cond {
                Cond::Check(Check::Ipv6Rt {
                    rt_type,
                    segs_left,
                    len,
                }) => Some((rt_type, segs_left, len)),
                _ => None,
            })
            .unwrap_or((None, (0, u32::MAX, false), None))
    }

    /// The last `-m limit`'s condition.
    fn last_limit(&mut self) -> Option<(&mut u32, &mut u32)> {
        self.matches
            .iter_mut()
            .rev()
            .find_map(|m| match &mut m.cond {
                Cond::Limit { avg, burst } => Some((avg, burst)),
                _ => None,
            })
    }

    /// `-m addrtype`'s types as address sets, now that any `--limit-iface-in/out` is known.
    fn finish_addrtype(&mut self) -> Result<(), RuleError> {
        let family = self.ctx.family;
        if let (Some((out, col)), Some(h)) = (self.iface_limit, self.hook) {
            let ok = if out {
                h.has_out_interface()
            } else {
                h.has_in_interface()
            };
            if !ok {
                return Err(self.err(
                    col,
                    format!(
                        "--limit-iface-{} is not valid in chain {}",
                        if out { "out" } else { "in" },
                        h.chain_name()
                    ),
                ));
            }
        }
        for (col, negated, dst, types) in std::mem::take(&mut self.addrtypes) {
            let alts = matches::addr_type_alts(
                family,
                &types,
                self.ctx.host,
                self.iface_limit.is_some(),
                self.ctx.ports.len(),
            );
            self.push(
                col,
                negated,
                Cond::AddrType {
                    dst,
                    out: self.iface_limit.is_some_and(|(o, _)| o),
                    alts,
                },
            );
        }
        Ok(())
    }

    /// Where per-packet conditions cannot go: the nat table (judged without the packet's
    /// bytes), `-m mac` in chains without a received frame.
    fn check_per_packet(&self) -> Result<(), RuleError> {
        for m in &self.matches {
            match &m.cond {
                // The walk's conditions: the nat table has them too.
                Cond::Check(Check::Mark { .. } | Check::ConnMark { .. }) | Cond::Statistic(_) => {
                    continue
                }
                Cond::Check(_) => {}
                Cond::Limit { avg, burst } => {
                    if dataplane::classify::checks::limit_credits(*avg, *burst).is_none() {
                        return Err(self.err(
                            m.col,
                            format!(
                                "-m limit: burst {burst} at this rate is out of range (Linux \
                                 refuses a burst of 0, or a rate times burst its credits \
                                 cannot hold): try a lower burst"
                            ),
                        ));
                    }
                }
                _ => continue,
            }
            if self.table == TableKind::Nat {
                return Err(self.err(
                    m.col,
                    "this match is not supported in the nat table (nat rules are judged on the \
                     connection's addresses and ports only): filter in the filter table instead",
                ));
            }
            if self.table == TableKind::Mangle
                && matches!(&m.cond, Cond::Check(c) if c.reads_conn())
            {
                return Err(self.err(
                    m.col,
                    "this match is not supported in the mangle table (mangle chains are walked \
                     without the connection's view): match in the filter table instead",
                ));
            }
            if matches!(m.cond, Cond::Check(Check::MacSource { .. })) {
                if let Some(h) = self.hook.filter(|h| !mac_hook(*h)) {
                    return Err(self.err(
                        m.col,
                        format!("-m mac is not valid in chain {} (only in PREROUTING, INPUT and FORWARD)", h.chain_name()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn target_kind(&self, v: &Token) -> Result<PendingKind, RuleError> {
        let kind = match v.text.as_ref() {
            "ACCEPT" => PendingKind::Accept,
            "DROP" => PendingKind::Drop,
            "RETURN" => PendingKind::Return,
            "REJECT" => PendingKind::Reject { with: None },
            "NFLOG" => PendingKind::Nflog(nflog::Pending::default()),
            "LOG" => PendingKind::Log {
                prefix: None,
                level: None,
                details: 0,
            },
            "SNAT" => PendingKind::Snat {
                to: None,
                flags: NatFlags::default(),
            },
            "DNAT" => PendingKind::Dnat {
                to: None,
                flags: NatFlags::default(),
            },
            "MASQUERADE" => PendingKind::Masquerade {
                ports: None,
                flags: NatFlags::default(),
            },
            "NOTRACK" => PendingKind::NoTrack,
            "CT" => PendingKind::Ct(ctzone::Pending::default()),
            "CHECKSUM" => PendingKind::Checksum { fill: false },
            "MARK" => PendingKind::Mark { op: None },
            "CONNMARK" => PendingKind::ConnMark(connmark::Pending::default()),
            name if natmap::Pending::of(name).is_some() => {
                PendingKind::NatMap(natmap::Pending::of(name).expect("just matched"))
            }
            name if super::mangle::EDIT_TARGETS.contains(&name) => {
                PendingKind::Edit { opts: Vec::new() }
            }
            name if UNSUPPORTED_TARGETS.contains(&name) => {
                let why = match name {
                    "CLASSIFY" => ": Rampart has no traffic-control classes",
                    "TPROXY" => ": Rampart has no local sockets to divert to",
                    "ULOG" => " (LOG and NFLOG are supported)",
                    "SET" => ": sets change only through the sets file (-m set reads them)",
                    _ => "",
                };
                return Err(self.err(v.col, format!("unsupported target {name}{why}")));
            }
            name if HookPoint::from_chain_name(name).is_some() => {
                return Err(self.err(v.col, format!("cannot jump to built-in chain {name}")));
            }
            "" => return Err(self.err(v.col, "empty target name")),
            name => PendingKind::Jump(name.to_string()),
        };
        Ok(kind)
    }

    /// An option that belongs to the target or to a loaded (or implicitly loadable) match.
    fn extension_option(&mut self, tok: &'a Token<'a>, negated: bool) -> Result<(), RuleError> {
        if self.target_option(tok, negated)? {
            return Ok(());
        }
        let opt = tok.text.as_ref();
        let found = self
            .instances
            .iter()
            .rposition(|inst| module_option(inst.module, opt).is_some());
        let idx = match found {
            Some(i) => i,
            None => {
                let implicit = match self.proto {
                    Some((Some(p), false, _)) if !self.proto_used => match (p, self.ctx.family) {
                        (6, _) => Some(Module::Tcp),
                        (17, _) => Some(Module::Udp),
                        (1, Family::V4) => Some(Module::Icmp),
                        (58, Family::V6) => Some(Module::Icmp6),
                        _ => None,
                    },
                    _ => None,
                };
                match implicit.filter(|&m| module_option(m, opt).is_some()) {
                    Some(m) => {
                        self.proto_used = true;
                        self.load(m, tok.col);
                        self.instances.len() - 1
                    }
                    None => return Err(self.err(tok.col, unsupported_option_message(opt))),
                }
            }
        };
        let module = self.instances[idx].module;
        let Some(canonical) = module_option(module, opt) else {
            return Err(self.err(tok.col, unsupported_option_message(opt)));
        };
        if self.instances[idx].used.contains(&canonical) {
            return Err(self.err(
                tok.col,
                format!("only one {canonical} is allowed per -m {}", module.name()),
            ));
        }
        let conflict: &[&str] = match canonical {
            "--syn" => &["--tcp-flags"],
            "--tcp-flags" => &["--syn"],
            "--sports" | "--dports" | "--ports" => &["--sports", "--dports", "--ports"],
            "--ttl-eq" | "--ttl-lt" | "--ttl-gt" => &["--ttl-eq", "--ttl-lt", "--ttl-gt"],
            "--hl-eq" | "--hl-lt" | "--hl-gt" => &["--hl-eq", "--hl-lt", "--hl-gt"],
            "--dscp" | "--dscp-class" => &["--dscp", "--dscp-class"],
            "--limit-iface-in" | "--limit-iface-out" => &["--limit-iface-in", "--limit-iface-out"],
            _ => &[],
        };
        if let Some(c) = conflict
            .iter()
            .find(|c| self.instances[idx].used.contains(c))
        {
            return Err(self.err(
                tok.col,
                format!(
                    "{canonical} cannot be combined with {c} in one -m {}",
                    module.name()
                ),
            ));
        }
        self.instances[idx].used.push(canonical);
        let family = self.ctx.family;
        let cond = match canonical {
            _ if module == Module::ConnMark => return self.connmark_option(tok, negated),
            c if ext::takes(c) => return self.ext_option(c, tok, negated),
            c if ctmatch::takes(c) => return self.ct_option(c, tok, negated),
            c if hashlimit::takes(c) => return self.hashlimit_option(c, tok, negated),
            c if physdev::takes(c) => return self.physdev_option(c, tok, negated),
            c if time::takes(c) => return self.time_option(c, tok, negated),
            c if set::takes(c) => return self.set_option(c, tok, negated),
            c if connlimit::takes(c) => return self.connlimit_option(c, tok, negated),
            c if string::takes(c) => return self.string_option(c, tok, negated),
            c if u32_match::takes(c) => return self.u32_option(tok, negated),
            c if rpfilter::takes(c) => return self.rpfilter_option(c, tok, negated),
            c if nfacct::takes(c) => return self.nfacct_option(tok, negated),
            "--sport" | "--dport" => {
                let v = self.value(tok)?;
                let r = parse_port_range(&v.text).map_err(|m| self.err(v.col, m))?;
                if canonical == "--sport" {
                    Cond::SourcePorts(vec![r])
                } else {
                    Cond::DestinationPorts(vec![r])
                }
            }
            "--sports" | "--dports" | "--ports" => {
                let v = self.value(tok)?;
                let list = parse_multiport(&v.text).map_err(|m| self.err(v.col, m))?;
                match canonical {
                    "--sports" => Cond::SourcePorts(list),
                    "--dports" => Cond::DestinationPorts(list),
                    _ => Cond::Ports(list),
                }
            }
            "--tcp-flags" => {
                let m = self.value(tok)?;
                let c = self.value(tok)?;
                let mask = names::tcp_flags(&m.text).map_err(|e| self.err(m.col, e))?;
                let comp = names::tcp_flags(&c.text).map_err(|e| self.err(c.col, e))?;
                Cond::TcpFlags { mask, comp }
            }
            "--syn" => Cond::TcpFlags {
                mask: names::tcp_flag::FIN
                    | names::tcp_flag::SYN
                    | names::tcp_flag::RST
                    | names::tcp_flag::ACK,
                comp: names::tcp_flag::SYN,
            },
            "--icmp-type" | "--icmpv6-type" => {
                let v = self.value(tok)?;
                let fam = if canonical == "--icmp-type" {
                    Family::V4
                } else {
                    Family::V6
                };
                let (ty, lo, hi) =
                    names::icmp_type(fam, &v.text).map_err(|m| self.err(v.col, m))?;
                if fam == Family::V4 && ty == 0xff {
                    Cond::Icmp(IcmpMatch::Any)
                } else {
                    Cond::Icmp(IcmpMatch::Type {
                        ty,
                        code_lo: lo,
                        code_hi: hi,
                    })
                }
            }
            "--src-range" | "--dst-range" => {
                let v = self.value(tok)?;
                let r = parse_addr_range(family, &v.text).map_err(|m| self.err(v.col, m))?;
                if canonical == "--src-range" {
                    Cond::SourceRange(r)
                } else {
                    Cond::DestinationRange(r)
                }
            }
            "--ctstate" | "--state" => {
                let v = self.value(tok)?;
                let bits = names::ct_states(&v.text, canonical == "--ctstate")
                    .map_err(|m| self.err(v.col, m))?;
                Cond::ConnState(bits)
            }
            "--ttl-eq" | "--ttl-lt" | "--ttl-gt" | "--hl-eq" | "--hl-lt" | "--hl-gt" => {
                let cmp = match &canonical[canonical.len() - 2..] {
                    "eq" => Cmp::Eq,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Gt,
                };
                if cmp != Cmp::Eq {
                    self.no_negation(tok, negated)?;
                }
                let v = self.value(tok)?;
                let what = if canonical.starts_with("--ttl") {
                    "TTL"
                } else {
                    "hop limit"
                };
                let value = matches::number(&v.text, 255, what).map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::Hops {
                        cmp,
                        value: value as u8,
                        invert: negated,
                    },
                );
            }
            "--length" => {
                let v = self.value(tok)?;
                let (lo, hi) =
                    matches::range(&v.text, 65535, "length").map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::Length {
                        lo: lo as u16,
                        hi: hi as u16,
                        invert: negated,
                    },
                );
            }
            "--tos" => {
                let v = self.value(tok)?;
                let (value, mask) = matches::tos(&v.text).map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::Tos {
                        value,
                        mask,
                        invert: negated,
                    },
                );
            }
            "--dscp" | "--dscp-class" => {
                let v = self.value(tok)?;
                let d = if canonical == "--dscp" {
                    matches::number(&v.text, 63, "DSCP value").map_err(|m| self.err(v.col, m))?
                        as u8
                } else {
                    matches::dscp_class(&v.text).map_err(|m| self.err(v.col, m))?
                };
                return self.check(
                    tok.col,
                    Check::Tos {
                        value: d << 2,
                        mask: 0xfc,
                        invert: negated,
                    },
                );
            }
            "--ecn-ip-ect" => {
                let v = self.value(tok)?;
                let ect =
                    matches::number(&v.text, 3, "ECT value").map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::Tos {
                        value: ect as u8,
                        mask: 3,
                        invert: negated,
                    },
                );
            }
            // ECE and CWR are TCP flags (0x40, 0x80), which the classifier tests itself.
            "--ecn-tcp-ece" => Cond::TcpFlags {
                mask: 0x40,
                comp: 0x40,
            },
            "--ecn-tcp-cwr" => Cond::TcpFlags {
                mask: 0x80,
                comp: 0x80,
            },
            "--pkt-type" => {
                let v = self.value(tok)?;
                let ty = matches::pkt_type(&v.text).map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::PktType {
                        ty,
                        invert: negated,
                    },
                );
            }
            "--mac-source" => {
                let v = self.value(tok)?;
                let mac = matches::mac(&v.text).map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::MacSource {
                        mac,
                        invert: negated,
                    },
                );
            }
            "--mss" => {
                let v = self.value(tok)?;
                let (lo, hi) =
                    matches::range(&v.text, 65535, "MSS").map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::TcpMss {
                        lo: lo as u16,
                        hi: hi as u16,
                        invert: negated,
                    },
                );
            }
            "--tcp-option" => {
                let v = self.value(tok)?;
                let kind =
                    matches::number(&v.text, 255, "TCP option").map_err(|m| self.err(v.col, m))?;
                if kind == 0 {
                    // Linux's tcp match takes option 0 for "no option test".
                    return Ok(());
                }
                return self.check(
                    tok.col,
                    Check::TcpOption {
                        kind: kind as u8,
                        invert: negated,
                    },
                );
            }
            "--limit" | "--limit-burst" => {
                if negated {
                    return Err(self.err(tok.col, "-m limit does not support !"));
                }
                let v = self.value(tok)?;
                let n = if canonical == "--limit" {
                    matches::rate(&v.text)
                } else {
                    matches::number(&v.text, 10_000, "burst")
                }
                .map_err(|m| self.err(v.col, m))?;
                if let Some((avg, burst)) = self.last_limit() {
                    if canonical == "--limit" {
                        *avg = n;
                    } else {
                        *burst = n;
                    }
                }
                return Ok(());
            }
            "--src-type" | "--dst-type" => {
                let v = self.value(tok)?;
                let types = matches::addr_types(&v.text, family).map_err(|m| self.err(v.col, m))?;
                self.addrtypes
                    .push((tok.col, negated, canonical == "--dst-type", types));
                return Ok(());
            }
            "--rt-type" | "--rt-segsleft" | "--rt-len" => {
                let v = self.value(tok)?;
                let (lo, hi) = if canonical == "--rt-segsleft" {
                    matches::range(&v.text, u32::MAX, "segments left")
                } else {
                    let max = if canonical == "--rt-type" {
                        255
                    } else {
                        u32::MAX
                    };
                    matches::number(&v.text, max, "routing header value").map(|n| (n, n))
                }
                .map_err(|m| self.err(v.col, m))?;
                let mut rt = self.last_rt();
                match canonical {
                    "--rt-type" => rt.0 = Some((lo as u8, negated)),
                    "--rt-segsleft" => rt.1 = (lo, hi, negated),
                    _ => rt.2 = Some((lo, negated)),
                }
                if let Some(c) = self
                    .matches
                    .iter_mut()
                    .rev()
                    .find_map(|m| match &mut m.cond {
                        Cond::Check(c @ Check::Ipv6Rt { .. }) => Some(c),
                        _ => None,
                    })
                {
                    *c = Check::Ipv6Rt {
                        rt_type: rt.0,
                        segs_left: rt.1,
                        len: rt.2,
                    };
                }
                return Ok(());
            }
            "--rt-0" => {
                return Err(self.err(
                    tok.col,
                    format!(
                        "unsupported option {opt} (type 0 routing headers are deprecated, RFC \
                         5095; -m rt supports --rt-type, --rt-segsleft and --rt-len)"
                    ),
                ));
            }
            "--limit-iface-in" | "--limit-iface-out" => {
                self.no_negation(tok, negated)?;
                self.iface_limit = Some((canonical == "--limit-iface-out", tok.col));
                return Ok(());
            }
            "--mark" => {
                let v = self.value(tok)?;
                let (value, mask) =
                    super::marks::value_mask(&v.text).map_err(|m| self.err(v.col, m))?;
                return self.check(
                    tok.col,
                    Check::Mark {
                        value,
                        mask,
                        invert: negated,
                    },
                );
            }
            "--mode" | "--probability" | "--every" | "--packet" => {
                return self.statistic_option(tok, canonical, negated);
            }
            "--comment" => {
                self.no_negation(tok, negated)?;
                let v = self.value(tok)?;
                if v.text.chars().count() > MAX_COMMENT {
                    return Err(self.err(
                        v.col,
                        format!("comment is longer than {MAX_COMMENT} characters"),
                    ));
                }
                Cond::Comment(v.text.to_string())
            }
            _ => return Err(self.err(tok.col, unsupported_option_message(opt))),
        };
        self.push(tok.col, negated, cond);
        Ok(())
    }

    /// Adds a check (its `!` is inside it).
    fn check(&mut self, col: u32, c: Check) -> Result<(), RuleError> {
        self.push(col, false, Cond::Check(c));
        Ok(())
    }

    /// Handles `tok` if the pending target takes it.
    fn target_option(&mut self, tok: &'a Token<'a>, negated: bool) -> Result<bool, RuleError> {
        let Some(mut t) = self.target.take() else {
            return Ok(false);
        };
        let res = self.target_option_inner(&mut t, tok, negated);
        self.target = Some(t);
        res
    }

    fn target_option_inner(
        &mut self,
        t: &mut PendingTarget,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<bool, RuleError> {
        let opt = tok.text.as_ref();
        let dup = |this: &Self| this.err(tok.col, format!("only one {opt} is allowed"));
        let family = self.ctx.family;
        match (&mut t.kind, opt) {
            (PendingKind::ConnMark(p), _) => return self.connmark_target_option(p, tok, negated),
            (PendingKind::Ct(p), _) => return self.ct_target_option(p, tok, negated),
            (PendingKind::Nflog(p), _) => return self.nflog_target_option(p, tok, negated),
            (PendingKind::NatMap(p), _) => return self.natmap_target_option(p, tok, negated),
            (PendingKind::Reject { with }, "--reject-with") => {
                self.no_negation(tok, negated)?;
                if with.is_some() {
                    return Err(dup(self));
                }
                let v = self.value(tok)?;
                *with = Some((
                    names::reject_with(family, &v.text).map_err(|m| self.err(v.col, m))?,
                    v.col,
                ));
            }
            (PendingKind::Log { prefix, .. }, "--log-prefix") => {
                self.no_negation(tok, negated)?;
                if prefix.is_some() {
                    return Err(dup(self));
                }
                let v = self.value(tok)?;
                if v.text.chars().count() > MAX_LOG_PREFIX {
                    return Err(self.err(
                        v.col,
                        format!("--log-prefix is longer than {MAX_LOG_PREFIX} characters"),
                    ));
                }
                if v.text.contains('\n') {
                    return Err(self.err(v.col, "newlines are not allowed in --log-prefix"));
                }
                *prefix = Some(v.text.to_string());
            }
            (PendingKind::Log { level, .. }, "--log-level") => {
                self.no_negation(tok, negated)?;
                if level.is_some() {
                    return Err(dup(self));
                }
                let v = self.value(tok)?;
                *level = Some(names::log_level(&v.text).map_err(|m| self.err(v.col, m))?);
            }
            (PendingKind::Log { details, .. }, o) if LOG_DETAIL_OPTIONS.contains(&o) => {
                self.no_negation(tok, negated)?;
                let bit = 1 << LOG_DETAIL_OPTIONS.iter().position(|&d| d == o).unwrap_or(0);
                if *details & bit != 0 {
                    return Err(dup(self));
                }
                *details |= bit;
            }
            (PendingKind::Snat { to, flags }, "--to-source")
            | (PendingKind::Dnat { to, flags }, "--to-destination") => {
                self.no_negation(tok, negated)?;
                if to.is_some() {
                    return Err(self.err(tok.col, format!("only one {opt} is supported")));
                }
                let v = self.value(tok)?;
                *to = Some(parse_nat_to(family, &v.text).map_err(|m| self.err(v.col, m))?);
                flags.to_col = v.col;
            }
            (PendingKind::Mark { op }, o) if super::marks::mark_op(o, "0").is_some() => {
                self.no_negation(tok, negated)?;
                if op.is_some() {
                    return Err(self.err(
                        tok.col,
                        "MARK takes one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark",
                    ));
                }
                let v = self.value(tok)?;
                let got = super::marks::mark_op(o, &v.text).unwrap_or(Err(String::new()));
                *op = Some(got.map_err(|m| self.err(v.col, m))?);
            }
            (PendingKind::Masquerade { ports, .. }, "--to-ports") => {
                self.no_negation(tok, negated)?;
                if ports.is_some() {
                    return Err(dup(self));
                }
                let v = self.value(tok)?;
                *ports = Some((
                    parse_nat_ports(&v.text).map_err(|m| self.err(v.col, m))?,
                    v.col,
                ));
            }
            (
                PendingKind::Snat { flags, .. }
                | PendingKind::Dnat { flags, .. }
                | PendingKind::Masquerade { flags, .. },
                "--random",
            ) => {
                self.no_negation(tok, negated)?;
                flags.random = true;
            }
            (
                PendingKind::Snat { flags, .. } | PendingKind::Masquerade { flags, .. },
                "--random-fully",
            ) => {
                self.no_negation(tok, negated)?;
                flags.random_fully = true;
            }
            (PendingKind::Snat { flags, .. } | PendingKind::Dnat { flags, .. }, "--persistent") => {
                self.no_negation(tok, negated)?;
                flags.persistent = true;
            }
            (PendingKind::Edit { opts }, o) if super::mangle::takes_value(&t.name, o).is_some() => {
                self.no_negation(tok, negated)?;
                let value = match super::mangle::takes_value(&t.name, o) {
                    Some(true) => {
                        let v = self.value(tok)?;
                        Some((v.text.to_string(), v.col))
                    }
                    _ => None,
                };
                opts.push(super::mangle::EditOpt {
                    name: o.to_string(),
                    col: tok.col,
                    value,
                });
            }
            (PendingKind::Checksum { fill }, "--checksum-fill") => {
                self.no_negation(tok, negated)?;
                *fill = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the target against the rule and table, and builds it.
    fn finish_target(&mut self) -> Result<Option<TargetSpec>, RuleError> {
        let Some(t) = self.target.take() else {
            return Ok(None);
        };
        let table = self.table;
        let family = self.ctx.family;
        let tcp_only = matches!(self.proto, Some((Some(6), false, _)));
        let l4_ports = matches!(self.proto, Some((Some(6 | 17 | 33 | 132), false, _)));
        let need_table = |want: TableKind| -> Result<(), RuleError> {
            if table == want {
                Ok(())
            } else {
                Err(self.err(
                    t.name_col,
                    format!(
                        "target {} is only valid in the {} table",
                        t.name,
                        want.name()
                    ),
                ))
            }
        };
        let need_hooks = |ok: &[HookPoint]| -> Result<(), RuleError> {
            match self.hook {
                Some(h) if !ok.contains(&h) => Err(self.err(
                    t.name_col,
                    format!(
                        "target {} is not valid in chain {} (only in {})",
                        t.name,
                        h.chain_name(),
                        ok.iter()
                            .map(|h| h.chain_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                _ => Ok(()),
            }
        };
        let nat_ports_need_proto = |ports: bool, col: u32| -> Result<(), RuleError> {
            if ports && !l4_ports {
                Err(self.err(
                    col,
                    "a port mapping needs -p tcp, -p udp, -p sctp or -p dccp",
                ))
            } else {
                Ok(())
            }
        };
        // xt_CHECKSUM fills in the checksum of a packet whose checksum was left to offload
        // (`CHECKSUM_PARTIAL`: locally made, or from a virtual NIC); every packet Rampart
        // receives carries its checksum whole, so the target changes nothing here: the rule
        // reads as one without a target (libvirt puts one on DHCP replies in mangle).
        if let PendingKind::Checksum { fill } = t.kind {
            need_table(TableKind::Mangle)?;
            if !fill {
                return Err(self.err(t.name_col, "CHECKSUM needs --checksum-fill"));
            }
            return Ok(None);
        }
        let mangle_target = table == TableKind::Mangle
            && matches!(
                t.kind,
                PendingKind::Drop
                    | PendingKind::Mark { .. }
                    | PendingKind::ConnMark(_)
                    | PendingKind::Edit { .. }
            );
        if !table.applied()
            && !mangle_target
            && !matches!(
                t.kind,
                PendingKind::Accept | PendingKind::Return | PendingKind::Jump(_)
            )
        {
            return Err(self.err(
                t.name_col,
                format!(
                    "target {} in the {} table is not supported (Rampart applies filter, nat and \
                     raw, and in mangle DROP, MARK, CONNMARK, TCPMSS, DSCP, TOS, TTL and HL; security may \
                     only hold what changes nothing: ACCEPT, RETURN, jumps)",
                    t.name,
                    table.name()
                ),
            ));
        }
        let target = match t.kind {
            PendingKind::Accept => Target::Accept,
            PendingKind::Drop => {
                if table == TableKind::Nat {
                    return Err(self.err(
                        t.name_col,
                        "DROP is not allowed in the nat table (it is not for filtering)",
                    ));
                }
                Target::Drop
            }
            PendingKind::Return => Target::Return,
            PendingKind::Reject { with } => {
                need_table(TableKind::Filter)?;
                let with = match with {
                    Some((RejectWith::TcpReset, col)) if !tcp_only => {
                        return Err(self.err(col, "--reject-with tcp-reset needs -p tcp"));
                    }
                    Some((w, _)) => w,
                    None => names::default_reject(family),
                };
                Target::Reject(with)
            }
            PendingKind::Log { prefix, level, .. } => Target::Log(LogSpec {
                prefix: prefix.unwrap_or_default(),
                level: level.unwrap_or(4),
                group: None,
            }),
            PendingKind::Nflog(p) => Target::Log(p.spec()),
            PendingKind::Snat { to, flags } => {
                need_table(TableKind::Nat)?;
                need_hooks(&[HookPoint::Postrouting, HookPoint::Input])?;
                let Some(to) = to else {
                    return Err(self.err(t.name_col, "SNAT needs --to-source"));
                };
                nat_ports_need_proto(to.ports.is_some(), flags.to_col)?;
                Target::Snat(NatTo {
                    random: flags.random,
                    random_fully: flags.random_fully,
                    persistent: flags.persistent,
                    ..to
                })
            }
            PendingKind::Dnat { to, flags } => {
                need_table(TableKind::Nat)?;
                need_hooks(&[HookPoint::Prerouting, HookPoint::Output])?;
                let Some(to) = to else {
                    return Err(self.err(t.name_col, "DNAT needs --to-destination"));
                };
                nat_ports_need_proto(to.ports.is_some(), flags.to_col)?;
                Target::Dnat(NatTo {
                    random: flags.random,
                    random_fully: flags.random_fully,
                    persistent: flags.persistent,
                    ..to
                })
            }
            PendingKind::Masquerade { ports, flags } => {
                need_table(TableKind::Nat)?;
                need_hooks(&[HookPoint::Postrouting])?;
                if let Some((_, col)) = ports {
                    nat_ports_need_proto(true, col)?;
                }
                Target::Masquerade {
                    ports: ports.map(|p| p.0),
                    random: flags.random,
                    random_fully: flags.random_fully,
                }
            }
            PendingKind::NoTrack => {
                need_table(TableKind::Raw)?;
                Target::NoTrack
            }
            PendingKind::Ct(p) => {
                need_table(TableKind::Raw)?;
                self.finish_ct(&p)
            }
            PendingKind::Checksum { .. } => unreachable!("handled above"),
            PendingKind::Mark { op } => {
                if table == TableKind::Raw {
                    return Err(self.err(
                        t.name_col,
                        "MARK in the raw table is not supported (it would mark every packet \
                         before connection tracking): mark in the nat or filter table",
                    ));
                }
                let Some((mask, xor)) = op else {
                    return Err(self.err(
                        t.name_col,
                        "MARK needs one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark",
                    ));
                };
                Target::Mark { mask, xor }
            }
            PendingKind::ConnMark(p) => Target::ConnMark(self.finish_connmark(&p, t.name_col)?),
            PendingKind::NatMap(p) => self.finish_natmap(p, t.name_col, l4_ports)?,
            PendingKind::Edit { opts } => {
                let rule = super::mangle::RuleView {
                    table,
                    hook: self.hook,
                    family,
                    tcp: tcp_only,
                };
                Target::Edit(
                    super::mangle::edit(&t.name, t.name_col, &opts, &rule)
                        .map_err(|(col, m)| self.err(col, m))?,
                )
            }
            PendingKind::Jump(name) => Target::Jump(name),
        };
        if t.goto && !matches!(target, Target::Jump(_)) {
            return Err(self.err(t.name_col, format!("-g needs a user chain, not {}", t.name)));
        }
        Ok(Some(TargetSpec {
            col: t.col,
            goto: t.goto,
            target,
        }))
    }

    /// Match extensions that need a protocol or an option.
    fn check_modules(&self) -> Result<(), RuleError> {
        for inst in &self.instances {
            let proto = match self.proto {
                Some((p, false, _)) => p,
                _ => None,
            };
            let need = |want: &[u8], what: &str| -> Result<(), RuleError> {
                match proto {
                    Some(p) if want.contains(&p) => Ok(()),
                    _ => Err(self.err(inst.col, format!("-m {} needs {what}", inst.module.name()))),
                }
            };
            let need_option = |what: &str| -> Result<(), RuleError> {
                if inst.used.is_empty() {
                    Err(self.err(inst.col, format!("-m {} needs {what}", inst.module.name())))
                } else {
                    Ok(())
                }
            };
            match inst.module {
                Module::Tcp => need(&[6], "-p tcp")?,
                Module::Udp => need(&[17], "-p udp")?,
                Module::Icmp => need(&[1], "-p icmp")?,
                Module::Icmp6 => {
                    need(&[58], "-p icmpv6")?;
                    need_option("--icmpv6-type")?;
                }
                Module::Multiport => {
                    need(&[6, 17], "-p tcp or -p udp")?;
                    need_option("--sports, --dports or --ports")?;
                }
                Module::Iprange => need_option("--src-range or --dst-range")?,
                Module::Conntrack => need_option("--ctstate or another option")?,
                Module::ConnBytes => need_option("--connbytes")?,
                Module::Quota => need_option("--quota")?,
                Module::State => need_option("--state")?,
                Module::Comment => need_option("--comment")?,
                Module::Ttl => need_option("--ttl-eq, --ttl-lt or --ttl-gt")?,
                Module::Hl => need_option("--hl-eq, --hl-lt or --hl-gt")?,
                Module::Length => need_option("--length")?,
                Module::Tos => need_option("--tos")?,
                Module::Dscp => need_option("--dscp or --dscp-class")?,
                Module::Ecn => {
                    need_option("--ecn-tcp-cwr, --ecn-tcp-ece or --ecn-ip-ect")?;
                    if inst.used.iter().any(|o| o.starts_with("--ecn-tcp")) {
                        need(&[6], "-p tcp for --ecn-tcp-cwr and --ecn-tcp-ece")?;
                    }
                }
                Module::PktType => need_option("--pkt-type")?,
                Module::Mac => need_option("--mac-source")?,
                Module::TcpMss => {
                    need(&[6], "-p tcp")?;
                    need_option("--mss")?;
                }
                Module::Limit
                | Module::Rt
                | Module::Time
                | Module::String
                | Module::U32
                | Module::RpFilter
                | Module::NfAcct => {}
                Module::PhysDev => need_option(
                    "--physdev-in, --physdev-out, --physdev-is-in, --physdev-is-out or \
                     --physdev-is-bridged",
                )?,
                Module::Mark | Module::ConnMark => need_option("--mark")?,
                Module::Statistic => self.check_statistic(inst.col)?,
                Module::AddrType => {
                    if !inst.used.iter().any(|o| o.ends_with("-type")) {
                        return Err(
                            self.err(inst.col, "-m addrtype needs --src-type or --dst-type")
                        );
                    }
                }
                m => self.ext_check_module(m, inst.col, proto)?,
            }
        }
        Ok(())
    }
}

/// The canonical name of `opt` if `module` defines it.
fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    Some(match (module, opt) {
        (Module::Tcp | Module::Udp, "--sport" | "--source-port") => "--sport",
        (Module::Tcp | Module::Udp, "--dport" | "--destination-port") => "--dport",
        (Module::Tcp, "--tcp-flags") => "--tcp-flags",
        (Module::Tcp, "--syn") => "--syn",
        (Module::Icmp, "--icmp-type") => "--icmp-type",
        (Module::Icmp6, "--icmpv6-type") => "--icmpv6-type",
        (Module::Multiport, "--sports" | "--source-ports") => "--sports",
        (Module::Multiport, "--dports" | "--destination-ports") => "--dports",
        (Module::Multiport, "--ports") => "--ports",
        (Module::Iprange, "--src-range") => "--src-range",
        (Module::Iprange, "--dst-range") => "--dst-range",
        (Module::Conntrack, "--ctstate") => "--ctstate",
        (Module::State, "--state") => "--state",
        (Module::Comment, "--comment") => "--comment",
        (Module::Tcp, "--tcp-option") => "--tcp-option",
        (Module::Ttl, "--ttl-eq") => "--ttl-eq",
        (Module::Ttl, "--ttl-lt") => "--ttl-lt",
        (Module::Ttl, "--ttl-gt") => "--ttl-gt",
        (Module::Hl, "--hl-eq") => "--hl-eq",
        (Module::Hl, "--hl-lt") => "--hl-lt",
        (Module::Hl, "--hl-gt") => "--hl-gt",
        (Module::Length, "--length") => "--length",
        (Module::Tos, "--tos") => "--tos",
        (Module::Dscp, "--dscp") => "--dscp",
        (Module::Dscp, "--dscp-class") => "--dscp-class",
        (Module::Ecn, "--ecn-tcp-cwr") => "--ecn-tcp-cwr",
        (Module::Ecn, "--ecn-tcp-ece") => "--ecn-tcp-ece",
        (Module::Ecn, "--ecn-ip-ect") => "--ecn-ip-ect",
        (Module::PktType, "--pkt-type") => "--pkt-type",
        (Module::Mac, "--mac-source") => "--mac-source",
        (Module::TcpMss, "--mss") => "--mss",
        (Module::Limit, "--limit") => "--limit",
        (Module::Limit, "--limit-burst") => "--limit-burst",
        (Module::AddrType, "--src-type") => "--src-type",
        (Module::AddrType, "--dst-type") => "--dst-type",
        (Module::AddrType, "--limit-iface-in") => "--limit-iface-in",
        (Module::AddrType, "--limit-iface-out") => "--limit-iface-out",
        (Module::Rt, "--rt-type") => "--rt-type",
        (Module::Rt, "--rt-segsleft") => "--rt-segsleft",
        (Module::Rt, "--rt-len") => "--rt-len",
        (Module::Rt, "--rt-0-res" | "--rt-0-addrs" | "--rt-0-not-strict") => "--rt-0",
        (Module::Mark, "--mark") => "--mark",
        (Module::Statistic, "--mode") => "--mode",
        (Module::Statistic, "--probability") => "--probability",
        (Module::Statistic, "--every") => "--every",
        (Module::Statistic, "--packet") => "--packet",
        _ => {
            return ext::module_option(module, opt)
                .or_else(|| ctmatch::module_option(module, opt))
                .or_else(|| hashlimit::module_option(module, opt))
                .or_else(|| physdev::module_option(module, opt))
                .or_else(|| time::module_option(module, opt))
                .or_else(|| set::module_option(module, opt))
                .or_else(|| connlimit::module_option(module, opt))
                .or_else(|| connmark::module_option(module, opt))
                .or_else(|| string::module_option(module, opt))
                .or_else(|| u32_match::module_option(module, opt))
                .or_else(|| rpfilter::module_option(module, opt))
                .or_else(|| nfacct::module_option(module, opt))
        }
    })
}

/// `-m rt`'s fields: the type (and `!`), the segments-left range (and `!`), the length (and `!`).
type RtFields = (Option<(u8, bool)>, (u32, u32, bool), Option<(u32, bool)>);

/// Why match `name` is refused: for matches that have no meaning in Rampart or are not
/// implemented, the reason; otherwise that it is not supported.
fn match_refusal(name: &str) -> String {
    let why = match name {
        "owner" | "cgroup" | "socket" => {
            "it tests the local socket or process a packet belongs to; Rampart has none"
        }
        "realm" | "devgroup" => {
            "it consults the host's own addresses and routing tables, which the rule file does \
             not carry"
        }
        "helper" | "conntrack-helper" => "Rampart runs no connection tracking helpers",
        "policy" => "Rampart does no IPsec",
        _ => return format!("match {name} is not supported"),
    };
    format!("match {name} is not supported: {why}")
}

fn unsupported_option_message(opt: &str) -> String {
    let hint = match opt {
        "--sport" | "--source-port" | "--dport" | "--destination-port" => {
            " (it needs -p tcp or -p udp, or -m tcp/-m udp, before it)"
        }
        "--tcp-flags" | "--syn" => " (it needs -p tcp or -m tcp before it)",
        "--icmp-type" => " (it needs -p icmp or -m icmp before it; IPv4 only)",
        "--icmpv6-type" => " (it needs -p icmpv6 or -m icmp6 before it; IPv6 only)",
        "--sports" | "--source-ports" | "--dports" | "--destination-ports" | "--ports" => {
            " (it needs -m multiport before it)"
        }
        "--src-range" | "--dst-range" => " (it needs -m iprange before it)",
        "--ctstate" | "--ctproto" | "--ctorigsrc" | "--ctorigdst" | "--ctreplsrc"
        | "--ctrepldst" | "--ctorigsrcport" | "--ctorigdstport" | "--ctreplsrcport"
        | "--ctrepldstport" | "--ctstatus" | "--ctexpire" | "--ctdir" => {
            " (it needs -m conntrack before it)"
        }
        "--connbytes" | "--connbytes-dir" | "--connbytes-mode" => {
            " (it needs -m connbytes before it)"
        }
        "--quota" => " (it needs -m quota before it)",
        "--zone" | "--zone-orig" | "--zone-reply" => " (it needs -j CT before it)",
        "--helper" | "--ctevents" | "--expevents" | "--timeout" => {
            " (target CT supports --notrack, --zone, --zone-orig and --zone-reply only)"
        }
        "--state" => " (it needs -m state before it)",
        "--comment" => " (it needs -m comment before it)",
        "--reject-with" => " (it needs -j REJECT before it)",
        "--log-prefix" | "--log-level" => " (it needs -j LOG before it)",
        _ => "",
    };
    format!("unsupported option {opt}{hint}")
}

/// The hooks where a packet has a received frame (`-m mac`).
pub(crate) fn mac_hook(h: HookPoint) -> bool {
    matches!(
        h,
        HookPoint::Prerouting | HookPoint::Input | HookPoint::Forward
    )
}

/// The loopback interface's name: when no port has it, `-i lo`/`-o lo` match nothing.
const LOOPBACK: &str = "lo";

/// `-i`/`-o` name (with an optional `+` wildcard suffix) against the configured ports.
fn resolve_iface(ports: &[String], name: &str) -> Result<Iface, String> {
    if name.is_empty() {
        return Err("empty interface name".into());
    }
    if name.chars().count() > MAX_IFACE_NAME {
        return Err(format!(
            "interface name {name} is too long (at most {MAX_IFACE_NAME} characters)"
        ));
    }
    let (stem, wildcard) = match name.strip_suffix('+') {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let mut mask: PortMask = 0;
    for (i, p) in ports.iter().enumerate() {
        let hit = if wildcard {
            p.starts_with(stem)
        } else {
            p == stem
        };
        if hit {
            if i >= 32 {
                return Err(format!(
                    "port {p} is port number {i}; rules can name only the first 32 ports"
                ));
            }
            mask |= 1 << i;
        }
    }
    if mask == 0 && name == LOOPBACK {
        // Every Linux host has it and rule sets accept from it (`-i lo -j ACCEPT`); nothing
        // Rampart forwards or receives comes from it or goes to it, so it names no port.
        return Ok(Iface {
            name: name.to_string(),
            mask: 0,
        });
    }
    if mask == 0 {
        let known = if ports.is_empty() {
            "none are configured".to_string()
        } else {
            ports.join(", ")
        };
        return Err(if wildcard {
            format!("no configured port matches {name} (ports: {known})")
        } else {
            format!("unknown port {name} (ports: {known})")
        });
    }
    Ok(Iface {
        name: name.to_string(),
        mask,
    })
}

fn v4_u128(a: Ipv4Addr) -> u128 {
    u128::from_be_bytes(IpAddr128::from_v4(a).0)
}

fn addr128(v: u128) -> IpAddr128 {
    IpAddr128(v.to_be_bytes())
}

fn parse_ip(family: Family, s: &str) -> Result<IpAddr, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if family == Family::V4 => Ok(IpAddr::V4(a)),
        Ok(IpAddr::V6(a)) if family == Family::V6 => Ok(IpAddr::V6(a)),
        Ok(IpAddr::V4(_)) => Err(format!("IPv4 address {s} in an ip6tables (IPv6) rule set")),
        Ok(IpAddr::V6(_)) => Err(format!("IPv6 address {s} in an iptables (IPv4) rule set")),
        Err(_) => Err(format!(
            "invalid address {s:?} (host names are not resolved)"
        )),
    }
}

/// `addr`, `addr/len`, or (IPv4) `addr/dotted.mask`, as the range it covers.
pub(crate) fn parse_net(family: Family, s: &str) -> Result<AddrRange, String> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr = parse_ip(family, a)?;
    let bits: u32 = if family == Family::V4 { 32 } else { 128 };
    let len = match m {
        None => bits,
        Some(m) if m.contains('.') || m.contains(':') => {
            let mask = parse_ip(family, m).map_err(|_| format!("invalid mask {m:?} in {s:?}"))?;
            let (v, width) = match mask {
                IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            };
            let ones = v.leading_ones();
            if v.checked_shl(ones).unwrap_or(0) != 0 || ones > width {
                return Err(format!("non-contiguous mask {m} in {s:?} is not supported"));
            }
            ones
        }
        Some(m) => match m.parse::<u32>() {
            Ok(n) if n <= bits && !m.starts_with('+') => n,
            _ => return Err(format!("invalid prefix length {m:?} in {s:?} (0-{bits})")),
        },
    };
    let (base, host_bits) = match addr {
        IpAddr::V4(v) => (v4_u128(v), 32 - len),
        IpAddr::V6(v) => (u128::from(v), 128 - len),
    };
    let host: u128 = if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    };
    Ok(AddrRange {
        lo: addr128(base & !host),
        hi: addr128(base | host),
    })
}

/// `A-B` or `A` (iprange).
fn parse_addr_range(family: Family, s: &str) -> Result<AddrRange, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let to = |x: &str| -> Result<u128, String> {
        Ok(match parse_ip(family, x)? {
            IpAddr::V4(v) => v4_u128(v),
            IpAddr::V6(v) => u128::from(v),
        })
    };
    let (lo, hi) = (to(a)?, to(b)?);
    if lo > hi {
        return Err(format!(
            "empty address range {s} (the first address is above the second)"
        ));
    }
    Ok(AddrRange {
        lo: addr128(lo),
        hi: addr128(hi),
    })
}

/// `--sport`/`--dport`: `N`, `N:M`, `N:`, `:M`.
pub(crate) fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let (lo, hi) = match s.split_once(':') {
        None => {
            let p = names::port(s)?;
            (p, p)
        }
        Some((a, b)) => (
            if a.is_empty() { 0 } else { names::port(a)? },
            if b.is_empty() {
                u16::MAX
            } else {
                names::port(b)?
            },
        ),
    };
    if lo > hi {
        return Err(format!("invalid port range {s} (min > max)"));
    }
    Ok((lo, hi))
}

/// `-m multiport` lists: `P[,P|,N:M]...`, at most 15 ports (a range counts twice).
fn parse_multiport(s: &str) -> Result<Vec<PortRange>, String> {
    let mut out = Vec::new();
    let mut count = 0;
    for item in s.split(',') {
        let r = match item.split_once(':') {
            None => {
                let p = names::port(item)?;
                count += 1;
                (p, p)
            }
            Some((a, b)) => {
                let (a, b) = (names::port(a)?, names::port(b)?);
                // libxt_multiport refuses a range whose ends are equal too.
                if a >= b {
                    return Err(format!(
                        "invalid port range {item} (multiport needs min < max)"
                    ));
                }
                count += 2;
                (a, b)
            }
        };
        out.push(r);
    }
    if count > MAX_MULTIPORT {
        return Err(format!(
            "too many ports in {s} (at most {MAX_MULTIPORT}, a range counts as 2)"
        ));
    }
    Ok(out)
}

/// NAT port range `P` or `P-Q`.
fn parse_nat_ports(s: &str) -> Result<PortRange, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (names::port(a)?, names::port(b)?);
    if a > b {
        return Err(format!("invalid port range {s} (min > max)"));
    }
    Ok((a, b))
}

/// `--to-source`/`--to-destination`: `A[-B][:P[-Q]]`; IPv6 with ports as `[A[-B]]:P[-Q]`,
/// as ip6tables writes it (it refuses `[A]-[B]`, reading `:B]` as a port).
fn parse_nat_to(family: Family, s: &str) -> Result<NatTo, String> {
    let (addr_part, port_part) = match family {
        Family::V4 => match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        },
        Family::V6 => {
            if s.starts_with('[') {
                // [A] or [A-B], then optional :P[-Q].
                let (addrs, rest) = match s.find(']') {
                    Some(i) => (&s[..=i], &s[i + 1..]),
                    None => return Err(format!("invalid address {s:?} (missing ])")),
                };
                let port = match rest {
                    "" => None,
                    r => Some(
                        r.strip_prefix(':')
                            .ok_or_else(|| format!("invalid NAT mapping {s:?}"))?,
                    ),
                };
                (addrs, port)
            } else {
                (s, None)
            }
        }
    };
    let addrs = if addr_part.is_empty() {
        None
    } else {
        let plain = addr_part.strip_prefix('[').unwrap_or(addr_part);
        let plain = plain.strip_suffix(']').unwrap_or(plain);
        let (a, b) = plain.split_once('-').unwrap_or((plain, plain));
        Some(parse_addr_range(family, &format!("{a}-{b}"))?)
    };
    let ports = port_part.map(parse_nat_ports).transpose()?;
    if addrs.is_none() && ports.is_none() {
        return Err(format!("invalid NAT mapping {s:?}"));
    }
    Ok(NatTo {
        addrs,
        ports,
        random: false,
        random_fully: false,
        persistent: false,
    })
}

/// `-m statistic` (the options are gathered into the rule's last [`Cond::Statistic`]).
impl<'a> RuleParser<'a> {
    fn statistic_option(
        &mut self,
        tok: &'a Token<'a>,
        canonical: &str,
        negated: bool,
    ) -> Result<(), RuleError> {
        let v = self.value(tok)?;
        let mut st = match self.matches.last().map(|m| &m.cond) {
            Some(Cond::Statistic(st)) => *st,
            _ => {
                self.push(tok.col, false, Cond::Statistic(Statistic::default()));
                Statistic::default()
            }
        };
        match canonical {
            "--mode" => {
                self.no_negation(tok, negated)?;
                st.random = Some(match v.text.as_ref() {
                    "random" => true,
                    "nth" => false,
                    other => {
                        return Err(
                            self.err(v.col, format!("invalid --mode {other:?} (random or nth)"))
                        )
                    }
                });
            }
            "--probability" => {
                st.probability =
                    Some(super::marks::probability(&v.text).map_err(|m| self.err(v.col, m))?);
                st.invert = negated;
            }
            "--every" => {
                let n = matches::number(&v.text, u32::MAX, "--every")
                    .map_err(|m| self.err(v.col, m))?;
                if n == 0 {
                    return Err(self.err(v.col, "--every must be at least 1"));
                }
                st.every = Some(n);
                st.invert = negated;
            }
            _ => {
                self.no_negation(tok, negated)?;
                st.packet = Some(
                    matches::number(&v.text, u32::MAX, "--packet")
                        .map_err(|m| self.err(v.col, m))?,
                );
            }
        }
        if let Some(Match {
            cond: Cond::Statistic(last),
            ..
        }) = self.matches.last_mut()
        {
            *last = st;
        }
        Ok(())
    }

    /// libxt_statistic's final check: a mode, and only its options.
    fn check_statistic(&self, col: u32) -> Result<(), RuleError> {
        let st = self.matches.iter().rev().find_map(|m| match m.cond {
            Cond::Statistic(st) => Some(st),
            _ => None,
        });
        let err = |m: &str| Err(self.err(col, format!("-m statistic: {m}")));
        let Some(st) = st else {
            return err("needs --mode");
        };
        match st.random {
            None => err("needs --mode"),
            Some(true) if st.probability.is_none() => err("--mode random needs --probability"),
            Some(true) if st.every.is_some() || st.packet.is_some() => {
                err("--every and --packet go with --mode nth")
            }
            Some(false) if st.every.is_none() => err("--mode nth needs --every"),
            Some(false) if st.probability.is_some() => err("--probability goes with --mode random"),
            Some(false) if st.packet.unwrap_or(0) >= st.every.unwrap_or(1) => {
                err("--packet must be below --every")
            }
            _ => Ok(()),
        }
    }
}
