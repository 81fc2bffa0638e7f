//! Incremental rule loads for the daemon (`rules load`, SIGHUP).
//!
//! [`Reloader::load_filter`] answers what [`crate::load::load_filter`] answers for the same files
//! (the same flat rules, origins, logs and so verdicts, or the same errors), but keeps, per
//! iptables-save file, what the last successful load made of it: the text, the parse, the flat
//! rule sets, and for the tree classifier an [`Updatable`] tree.
//!
//! A new text is compared with the kept one by lines: the lines before the first difference and
//! after the last one are the same. When the lines in between, old and new, hold only rules,
//! comments and blank lines inside one table, only the new lines are parsed; their rules replace
//! the old lines' rules in the kept parse, the rules after them move (line numbers, positions in
//! their chains), and the table is validated again. The flat rules are patched where the change
//! allows it (`rules::compile::patch`: rules of a built-in chain that neither jump nor return)
//! and flattened again from each rule's cubes (computed when its line was parsed) otherwise; the
//! classifier takes the flat rules that differ (a common prefix and suffix compared by match,
//! actions aside) into its update tier. See `docs/design/control-plane.md`.
//! Anything else takes the full path, a fresh parse and compile: a table, chain, policy or
//! COMMIT line that changed, a line that does not parse, a rule in a chain declared after it,
//! a table that no longer validates. The full path's answer, rule set or errors, is then what
//! a full load gives, by construction.
//!
//! Invariants:
//! - The kept state is that of the rules in force: a load that fails (any file) leaves every
//!   file's state as it was (an in-place change of a parse is undone).
//! - A kept parse equals [`crate::rules::parse_iptables`] of the kept text, and its flat rule
//!   sets equal what [`crate::rules::compile_parsed`] and [`crate::rules::compile_raw`] make of
//!   it; the property tests `incremental_loads_equal_full_loads` and
//!   `patched_loads_equal_full_loads` check both.
//! - An [`Updatable`] is kept only for the tree classifier; its current list matches (as
//!   [`FlatRule::matches`] sees rules) the kept flat rules. Other classifiers are built anew
//!   from the flat rules on each load, as before.
//! - The state is kept for one set of ports, one hook and one classifier kind; a change of any
//!   of them, or security groups, starts afresh.

use crate::config::ClassifierKind;
use crate::load::{load_filter, LoadError, MakeClassifier, RuleFiles};
use crate::rules::compile::FlatKeys;
use crate::rules::lex::{tokenize, Token};
use crate::rules::parse::{parse_rule, Ctx};
use crate::rules::validate::validate_table;
use crate::rules::{self, Cond, Hook, ParsedRules, Rule, RuleError, TableKind, Target};
use dataplane::classify::{FlatRule, Origin, RuleSet, Updatable};
use dataplane::filter::Filter;
use dataplane::wire::Family;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the last [`Reloader::load_filter`] did, and where its time went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files loaded by changing the kept state.
    pub incremental: u32,
    /// Files parsed and compiled from scratch.
    pub full: u32,
    /// Lines parsed (on the incremental path, the changed ones).
    pub lines_parsed: usize,
    /// Flat rules deleted and inserted in update tiers.
    pub rules_changed: usize,
    /// Trees built from scratch.
    pub trees_built: u32,
    /// Flat rule sets changed in place rather than flattened again.
    pub flats_patched: u32,
    /// Reading the files.
    pub read: Duration,
    /// Comparing, parsing, splicing and validating.
    pub parse: Duration,
    /// Flattening chains and making origins.
    pub flatten: Duration,
    /// Classifier updates and builds.
    pub classifier: Duration,
}

impl Report {
    /// As the daemon's answer to `rules load` carries it.
    pub fn json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_micros() as u64;
        serde_json::json!({
            "incremental": self.incremental,
            "full": self.full,
            "lines_parsed": self.lines_parsed,
            "rules_changed": self.rules_changed,
            "trees_built": self.trees_built,
            "flats_patched": self.flats_patched,
            "read_us": us(self.read),
            "parse_us": us(self.parse),
            "flatten_us": us(self.flatten),
            "classifier_us": us(self.classifier),
        })
    }
}

/// What the state is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    ports: Vec<String>,
    /// What the rules know of the host (bridge mode, the bridge's name).
    host: crate::rules::HostAddrs,
    hook: Hook,
    kind: ClassifierKind,
}

/// Per-file state kept between loads; see the module docs.
#[derive(Default)]
pub struct Reloader {
    key: Option<Key>,
    /// IPv4, IPv6.
    files: [Option<FileState>; 2],
    last: Report,
}

struct FileState {
    path: PathBuf,
    text: String,
    parsed: ParsedRules,
    filter: Compiled,
    raw: Option<Compiled>,
}

/// One flat rule set as kept.
struct Compiled {
    /// The flat rules, with their origins as keys and where the built-in chain's rules start.
    flat: FlatKeys,
    /// Its origins, shared with the rule sets made of it while their keys and file stay.
    origins: Arc<Vec<Origin>>,
    file: String,
    /// The tree and its update tier over `rules` (tree classifier only).
    tree: Option<Updatable>,
}

/// Why one file did not load.
enum Failure {
    /// Rule errors are collected over the files, as `load_filter` does.
    Rules(Vec<RuleError>),
    /// Anything else ends the load.
    Load(LoadError),
}

/// The result of one file's load, not yet made the kept state.
enum Prepared {
    /// The kept parse was changed in place; `undo` puts it back.
    Spliced {
        undo: Undo,
        text: String,
        filter: Compiled,
        raw: Option<Compiled>,
    },
    Fresh(FileState),
}

/// What a splice changed in a kept parse.
struct Undo {
    /// The kept file name, when the new text comes from another file.
    file: Option<(PathBuf, String)>,
    table: usize,
    /// The old lines `a..b` became the new lines `a..c` (1-based).
    b: u32,
    c: u32,
    /// Per chain changed: its index, where the change starts, how many new rules went in, and
    /// the old rules taken out.
    chains: Vec<(usize, usize, usize, Vec<Rule>)>,
}

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + CHUNK <= n && a[i..i + CHUNK] == b[i..i + CHUNK] {
        i += CHUNK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The length of the common suffix of `a` and `b`, at most `max`.
fn common_suffix(a: &[u8], b: &[u8], max: usize) -> usize {
    const CHUNK: usize = 64;
    let n = a.len().min(b.len()).min(max);
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + CHUNK <= n && a[n - i - CHUNK..n - i] == b[n - i - CHUNK..n - i] {
        i += CHUNK;
    }
    while i < n && a[n - 1 - i] == b[n - 1 - i] {
        i += 1;
    }
    i
}

fn newlines(bytes: &[u8]) -> usize {
    // Counted 64 bytes at a time in bytes, which the compiler turns into vector compares.
    let chunks = bytes.chunks_exact(64);
    let rest = chunks.remainder();
    let mut n: usize = chunks
        .map(|c| usize::from(c.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>()))
        .sum();
    n += rest.iter().filter(|&&b| b == b'\n').count();
    n
}

/// How many lines `str::lines` gives.
fn line_count(text: &[u8]) -> usize {
    newlines(text) + usize::from(text.last().is_some_and(|&c| c != b'\n'))
}

/// Compares two texts by lines: `(pre, suf, q)`, the number of leading and trailing lines that
/// are the same (as `str::lines` gives them), with `pre + suf` at most either text's line count,
/// and the byte offset where line `pre` starts (in both). A line may be counted as changed when
/// it is not (a line ending changed from `\r\n` to `\n`), never the other way.
fn line_diff(old: &[u8], new: &[u8]) -> (usize, usize, usize) {
    if old == new {
        return (line_count(old), 0, old.len());
    }
    let p = common_prefix(old, new);
    // Whole lines, with their `\n`, before the first difference; `q` is where the next starts.
    let pre = newlines(&old[..p]);
    let q = old[..p]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let s = common_suffix(old, new, old.len().min(new.len()) - q);
    // Lines starting inside the common suffix, after a `\n` that is part of it...
    let (x_old, x_new) = (old.len() - s, new.len() - s);
    let mut suf = newlines(&old[x_old..old.len().saturating_sub(1).max(x_old)]);
    // ...and the one starting right where it starts, if that is a line start in both texts.
    let starts = |t: &[u8], x: usize| x == 0 || t[x - 1] == b'\n';
    if x_old < old.len() && starts(old, x_old) && starts(new, x_new) {
        suf += 1;
    }
    (pre, suf, q)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether two flat rules match the same packets field for field (actions and origins aside):
/// what a classifier looks at.
fn same_match(a: &FlatRule, b: &FlatRule) -> bool {
    a.family == b.family
        && a.src == b.src
        && a.dst == b.dst
        && a.proto == b.proto
        && a.sport == b.sport
        && a.dport == b.dport
        && a.in_ports == b.in_ports
        && a.out_ports == b.out_ports
        && a.ct_states == b.ct_states
        && a.tcp_flags == b.tcp_flags
        && a.frag == b.frag
}

/// Moves every line number at or after `from` by `delta`: table headers and COMMITs, chain
/// declarations, rules.
fn shift_lines(parsed: &mut ParsedRules, from: u32, delta: i64) {
    let shift = |l: &mut u32| {
        if *l >= from {
            *l = u32::try_from(i64::from(*l) + delta).unwrap_or(u32::MAX);
        }
    };
    for t in &mut parsed.tables {
        shift(&mut t.line);
        shift(&mut t.end);
        for c in &mut t.chains {
            if c.line != 0 {
                shift(&mut c.line);
            }
            let at = c.rules.partition_point(|r| r.line < from);
            for r in &mut c.rules[at..] {
                shift(&mut r.line);
            }
        }
    }
}

/// Replaces the rules of lines `a..b` of table `table` by `new` (rules of lines `a..c`, with
/// their chain indexes, in line order), moving later lines by `c - b`.
fn splice(
    parsed: &mut ParsedRules,
    table: usize,
    (a, b, c): (u32, u32, u32),
    mut new: Vec<(usize, Rule)>,
) -> Undo {
    // Where each chain holds the old lines, before any line number moves.
    let mut spans = Vec::new();
    for (ci, chain) in parsed.tables[table].chains.iter().enumerate() {
        let i0 = chain.rules.partition_point(|r| r.line < a);
        let i1 = chain.rules.partition_point(|r| r.line < b);
        if i0 < i1 || new.iter().any(|(nc, _)| *nc == ci) {
            spans.push((ci, i0, i1));
        }
    }
    // The old lines' rules are below `b`, so they stay where they are.
    let delta = i64::from(c) - i64::from(b);
    if delta != 0 {
        shift_lines(parsed, b, delta);
    }
    let t = &mut parsed.tables[table];
    let mut chains = Vec::with_capacity(spans.len());
    for (ci, i0, i1) in spans {
        let rules = &mut t.chains[ci].rules;
        let (mine, rest): (Vec<_>, Vec<_>) = new.into_iter().partition(|(nc, _)| *nc == ci);
        new = rest;
        let ins = mine.len();
        let removed = replace(rules, i0..i1, mine.into_iter().map(|(_, r)| r).collect());
        chains.push((ci, i0, ins, removed));
    }
    Undo {
        file: None,
        table,
        b,
        c,
        chains,
    }
}

/// Replaces `rules[range]` by `with` (in place when the counts agree, so the rest of the chain
/// does not move), numbers the rules that changed place, and gives the old ones back.
fn replace(rules: &mut Vec<Rule>, range: std::ops::Range<usize>, with: Vec<Rule>) -> Vec<Rule> {
    let (at, same) = (range.start, range.len() == with.len());
    let old: Vec<Rule> = if same {
        rules[range]
            .iter_mut()
            .zip(with)
            .map(|(slot, r)| std::mem::replace(slot, r))
            .collect()
    } else {
        rules.splice(range, with).collect()
    };
    let end = if same { at + old.len() } else { rules.len() };
    for (i, r) in rules.iter_mut().enumerate().take(end).skip(at) {
        r.number = to_u32(i + 1);
    }
    old
}

/// Puts a spliced parse back as it was.
fn unsplice(state: &mut FileState, undo: Undo) {
    if let Some((path, file)) = undo.file {
        (state.path, state.parsed.file) = (path, file);
    }
    let parsed = &mut state.parsed;
    // The new lines' rules are below `c`, so they stay where they are.
    let delta = i64::from(undo.c) - i64::from(undo.b);
    if delta != 0 {
        shift_lines(parsed, undo.c, -delta);
    }
    for (ci, i0, ins, removed) in undo.chains {
        let rules = &mut parsed.tables[undo.table].chains[ci].rules;
        replace(rules, i0..i0 + ins, removed);
    }
}

/// What a line is to the parser: nothing (blank, comment), structure (a table, chain or COMMIT
/// line), or a rule line with its words. `None` for a line that does not lex.
enum LineKind<'a> {
    Nothing,
    Structure,
    Rule(Vec<Token<'a>>),
}

fn line_kind(line: &str) -> Option<LineKind<'_>> {
    let toks = tokenize(line).ok()?;
    let Some(first) = toks.first() else {
        return Some(LineKind::Nothing);
    };
    let bare = |c: char| first.text.starts_with(c) && !first.quoted;
    Some(if bare('#') {
        LineKind::Nothing
    } else if bare('*') || bare(':') || first.text == "COMMIT" {
        LineKind::Structure
    } else {
        LineKind::Rule(toks)
    })
}

/// The tree for `rules`: the kept one with the flat rules that differ applied to its update
/// tier, or a new one when there is none or the changes are many.
fn tree_for(prev: Option<&Compiled>, rules: &[FlatRule], report: &mut Report) -> Updatable {
    let fresh = |report: &mut Report| {
        report.trees_built += 1;
        Updatable::new(rules.to_vec())
    };
    let Some((old, tree)) = prev.and_then(|p| Some((&p.flat.rules, p.tree.as_ref()?))) else {
        return fresh(report);
    };
    let n = old.len().min(rules.len());
    let pre = (0..n)
        .take_while(|&i| same_match(&old[i], &rules[i]))
        .count();
    let suf = (0..n - pre)
        .take_while(|&i| same_match(&old[old.len() - 1 - i], &rules[rules.len() - 1 - i]))
        .count();
    let removed = old.len() - pre - suf;
    let added = rules.len() - pre - suf;
    let (pending_added, pending_deleted) = tree.pending();
    if pending_added + added > (rules.len() / 100).max(256)
        || pending_deleted + removed > (rules.len() / 10).max(256)
    {
        return fresh(report);
    }
    let mut u = tree.clone();
    let applied = (0..removed)
        .try_for_each(|_| u.delete(pre).map(drop))
        .and_then(|()| {
            rules[pre..pre + added]
                .iter()
                .enumerate()
                .try_for_each(|(j, r)| u.insert(pre + j, r.clone()))
        });
    if applied.is_err() || u.needs_rebuild() {
        return fresh(report);
    }
    report.rules_changed += removed + added;
    u
}

impl Reloader {
    pub fn new() -> Reloader {
        Reloader::default()
    }

    /// What the last load did.
    pub fn report(&self) -> &Report {
        &self.last
    }

    /// Forgets every kept state.
    pub fn clear(&mut self) {
        self.key = None;
        self.files = [None, None];
    }

    /// [`crate::load::load_filter`] with the state kept from the previous successful load;
    /// `kind` says which classifier `make` builds (the tree's update tier is used for
    /// [`ClassifierKind::Tree`] only).
    pub fn load_filter(
        &mut self,
        files: &RuleFiles<'_>,
        ports: &[String],
        hook: Hook,
        kind: ClassifierKind,
        make: &MakeClassifier<'_>,
    ) -> Result<Filter, LoadError> {
        self.last = Report::default();
        if files.groups.is_some() {
            self.clear();
            return load_filter(files, ports, hook, crate::config::Mode::Bridge, make);
        }
        let key = Key {
            ports: ports.to_vec(),
            host: files
                .nat
                .host
                .cloned()
                .unwrap_or_else(|| crate::rules::parse::NO_HOST.clone()),
            hook,
            kind,
        };
        if self.key.as_ref() != Some(&key) {
            self.clear();
        }
        let mut filter = Filter::default();
        let mut errors = Vec::new();
        let mut prepared: [Option<Prepared>; 2] = [None, None];
        let mut failure = None;
        for (slot, (path, family)) in [(files.rules, Family::V4), (files.rules6, Family::V6)]
            .into_iter()
            .enumerate()
        {
            let Some(path) = path else { continue };
            match self.load_file(slot, path, family, &key, make) {
                Ok((p, rs, raw)) => {
                    prepared[slot] = Some(p);
                    match family {
                        Family::V4 => (filter.v4, filter.raw_v4) = (Some(rs), raw),
                        Family::V6 => (filter.v6, filter.raw_v6) = (Some(rs), raw),
                    }
                }
                Err(Failure::Rules(e)) => errors.extend(e),
                Err(Failure::Load(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && !errors.is_empty() {
            failure = Some(LoadError::Rules(errors));
        }
        for (slot, p) in prepared.into_iter().enumerate() {
            match (p, failure.is_some()) {
                (Some(Prepared::Spliced { undo, .. }), true) => {
                    if let Some(state) = &mut self.files[slot] {
                        unsplice(state, undo);
                    }
                }
                (
                    Some(Prepared::Spliced {
                        text, filter, raw, ..
                    }),
                    false,
                ) => {
                    if let Some(state) = &mut self.files[slot] {
                        (state.text, state.filter, state.raw) = (text, filter, raw);
                    }
                }
                (Some(Prepared::Fresh(state)), false) => self.files[slot] = Some(state),
                (None, false) => self.files[slot] = None,
                (_, true) => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.key = Some(key);
        filter.note_conn_marks();
        Ok(filter)
    }

    /// One file: the incremental path when its state is kept and the change allows it, else
    /// the full one.
    fn load_file(
        &mut self,
        slot: usize,
        path: &Path,
        family: Family,
        key: &Key,
        make: &MakeClassifier<'_>,
    ) -> Result<(Prepared, RuleSet, Option<RuleSet>), Failure> {
        let t0 = Instant::now();
        let text = std::fs::read_to_string(path).map_err(|source| {
            Failure::Load(LoadError::Read {
                path: path.display().to_string(),
                source,
            })
        })?;
        self.last.read += t0.elapsed();
        let name = path.display().to_string();
        let last = &mut self.last;
        if let Some(state) = self.files[slot]
            .as_mut()
            .filter(|s| s.parsed.family == family)
        {
            match incremental(state, path, &name, text, key, make, last) {
                Ok(done) => return done,
                Err(text) => return full(path, &name, text, family, key, make, &mut self.last),
            }
        }
        full(path, &name, text, family, key, make, &mut self.last)
    }
}

/// One flattened chain made a rule set with its classifier, and kept.
fn finish(
    parsed: &ParsedRules,
    flat: FlatKeys,
    origins: Arc<Vec<Origin>>,
    prev: Option<&Compiled>,
    key: &Key,
    make: &MakeClassifier<'_>,
    report: &mut Report,
) -> Result<(Compiled, RuleSet), Failure> {
    let tree = (key.kind == ClassifierKind::Tree).then(|| tree_for(prev, &flat.rules, report));
    let rs = RuleSet::with_shared_origins(
        parsed.family,
        flat.rules.clone(),
        origins.clone(),
        flat.logs.clone(),
    );
    let c: Box<dyn dataplane::classify::Classifier> = match &tree {
        Some(u) => Box::new(u.clone()),
        None => make(&rs.rules).map_err(|e| Failure::Load(LoadError::Classifier(e)))?,
    };
    let kept = Compiled {
        flat,
        origins,
        file: parsed.file.clone(),
        tree,
    };
    Ok((kept, rs.with_classifier(c)))
}

/// The flat rules of table `kind` after the change `undo` made to `parsed`, from the kept ones
/// when the change allows it (see [`rules::compile::patch`]).
fn changed_flat(
    parsed: &ParsedRules,
    kind: TableKind,
    prev: Option<&Compiled>,
    undo: Option<&Undo>,
) -> Option<FlatKeys> {
    let (prev, undo) = (prev?, undo?);
    let table = parsed.tables.iter().position(|t| t.kind == kind)?;
    let shift = (undo.b, i64::from(undo.c) - i64::from(undo.b));
    if undo.chains.is_empty() || undo.table != table {
        return Some(rules::compile::moved_lines(&prev.flat, shift));
    }
    let [(chain, at, inserted, removed)] = undo.chains.as_slice() else {
        return None;
    };
    rules::patch_flat(
        parsed,
        kind,
        &prev.flat,
        (*chain, *at, removed, *inserted),
        shift,
    )
}

/// Flattens the filter chain of `hook` and the raw table of `parsed`, with their classifiers.
#[allow(clippy::type_complexity)]
fn compile_file(
    parsed: &ParsedRules,
    prev: Option<(&Compiled, Option<&Compiled>)>,
    undo: Option<&Undo>,
    key: &Key,
    make: &MakeClassifier<'_>,
    report: &mut Report,
) -> Result<(Compiled, Option<Compiled>, RuleSet, Option<RuleSet>), Failure> {
    let t0 = Instant::now();
    let (prev_filter, prev_raw) = (prev.map(|p| p.0), prev.and_then(|p| p.1));
    let flat = match changed_flat(parsed, TableKind::Filter, prev_filter, undo) {
        Some(f) => {
            report.flats_patched += 1;
            f
        }
        None => rules::flatten_filter(parsed, key.hook).map_err(Failure::Rules)?,
    };
    let raw = match (
        rules::raw_present(parsed),
        changed_flat(parsed, TableKind::Raw, prev_raw, undo),
    ) {
        (true, Some(f)) => {
            report.flats_patched += 1;
            Some(f)
        }
        _ => rules::flatten_raw(parsed).map_err(Failure::Rules)?,
    };
    // The kept origins when every rule kept its line and place.
    let origins = |flat: &FlatKeys, kind: TableKind, prev: Option<&Compiled>| match prev {
        Some(p) if p.file == parsed.file && p.flat.origin_keys == flat.origin_keys => {
            p.origins.clone()
        }
        _ => Arc::new(rules::origins(parsed, kind, &flat.origin_keys)),
    };
    let filter_origins = origins(&flat, TableKind::Filter, prev_filter);
    let raw = raw.map(|r| {
        let o = origins(&r, TableKind::Raw, prev_raw);
        (r, o)
    });
    let t1 = Instant::now();
    report.flatten += t1 - t0;
    // As load_filter: the raw table's classifier first.
    let raw = match raw {
        Some((r, o)) => Some(finish(parsed, r, o, prev_raw, key, make, report)?),
        None => None,
    };
    let (filter, rs) = finish(parsed, flat, filter_origins, prev_filter, key, make, report)?;
    report.classifier += t1.elapsed();
    let (raw_kept, raw_rs) = raw.unzip();
    Ok((filter, raw_kept, rs, raw_rs))
}

/// The full path: parse and compile `text` from scratch.
#[allow(clippy::too_many_arguments)]
fn full(
    path: &Path,
    name: &str,
    text: String,
    family: Family,
    key: &Key,
    make: &MakeClassifier<'_>,
    report: &mut Report,
) -> Result<(Prepared, RuleSet, Option<RuleSet>), Failure> {
    let t0 = Instant::now();
    let parsed = rules::parse_iptables_with(name, &text, family, &key.ports, &key.host)
        .map_err(Failure::Rules)?;
    report.parse += t0.elapsed();
    report.lines_parsed += line_count(text.as_bytes());
    report.full += 1;
    let (filter, raw, rs, raw_rs) = compile_file(&parsed, None, None, key, make, report)?;
    let state = FileState {
        path: path.to_path_buf(),
        text,
        parsed,
        filter,
        raw,
    };
    Ok((Prepared::Fresh(state), rs, raw_rs))
}

/// The incremental path; gives the text back (`Err`) when the full path must run instead.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn incremental(
    state: &mut FileState,
    path: &Path,
    name: &str,
    text: String,
    key: &Key,
    make: &MakeClassifier<'_>,
    report: &mut Report,
) -> Result<Result<(Prepared, RuleSet, Option<RuleSet>), Failure>, String> {
    let t0 = Instant::now();
    let (n_old, n_new) = (
        line_count(state.text.as_bytes()),
        line_count(text.as_bytes()),
    );
    let (pre, suf, q) = line_diff(state.text.as_bytes(), text.as_bytes());
    // Old lines a..b became new lines a..c (1-based).
    let (a, b, c) = (
        to_u32(pre + 1),
        to_u32(n_old - suf + 1),
        to_u32(n_new - suf + 1),
    );
    let parsed = &state.parsed;
    let in_old = |l: u32| (a..b).contains(&l);
    let structure_changed = parsed.tables.iter().any(|t| {
        in_old(t.line) || in_old(t.end) || t.chains.iter().any(|c| c.line != 0 && in_old(c.line))
    });
    let table = parsed.tables.iter().position(|t| t.line < a && t.end >= b);
    if structure_changed {
        return Err(text);
    }
    let ctx = Ctx {
        file: name,
        family: parsed.family,
        ports: &key.ports,
        host: &key.host,
        sets: None,
    };
    let mut new_rules = Vec::new();
    for (i, line) in text[q..].lines().take(n_new - suf - pre).enumerate() {
        let i = pre + i;
        let toks = match line_kind(line) {
            Some(LineKind::Nothing) => continue,
            Some(LineKind::Rule(toks)) => toks,
            Some(LineKind::Structure) | None => return Err(text),
        };
        let Some(t) = table.map(|t| &parsed.tables[t]) else {
            // A rule outside a table is an error for the full path to report.
            return Err(text);
        };
        let line = to_u32(i + 1);
        match parse_rule(&ctx, t, line, &toks) {
            Ok(Some((ci, rule))) => {
                let chain = &t.chains[ci];
                if chain.hook.is_none() && chain.line >= a {
                    // The chain is declared after this rule: an error for the full path.
                    return Err(text);
                }
                new_rules.push((ci, rule));
            }
            Ok(None) => {}
            Err(_) => return Err(text),
        }
    }
    // `--ctstate SNAT` is checked against the nat table file-wide: a change that names it,
    // or that translates, takes the full path.
    if new_rules.iter().any(|(_, r)| {
        r.target.as_ref().is_some_and(|t| t.target.translates()) || r.matches.iter().any(|m| {
            matches!(m.cond, Cond::ConnState(bits) if bits > u16::from(dataplane::classify::ct::ANY))
        })
    }) {
        return Err(text);
    }
    report.lines_parsed += (c - a) as usize;
    // What the table-wide checks look at: jumps, and interfaces and NAT targets in chains that
    // jumps reach. Without any of them among the new rules, the table (valid before) still is.
    let recheck = new_rules.iter().any(|(_, r)| {
        r.target
            .as_ref()
            .is_some_and(|t| matches!(t.target, Target::Jump(_)) || t.target.translates())
            || r.matches.iter().any(|m| {
                matches!(
                    m.cond,
                    Cond::InInterface(_)
                        | Cond::OutInterface(_)
                        | Cond::Check(dataplane::classify::Check::MacSource { .. })
                )
            })
    });
    let undo = match table {
        Some(t) => splice(&mut state.parsed, t, (a, b, c), new_rules),
        None => {
            // Comments and blank lines outside tables: only line numbers move.
            let delta = i64::from(c) - i64::from(b);
            if delta != 0 {
                shift_lines(&mut state.parsed, b, delta);
            }
            Undo {
                file: None,
                table: 0,
                b,
                c,
                chains: Vec::new(),
            }
        }
    };
    let mut undo = undo;
    if state.path != path {
        let old_file = std::mem::replace(&mut state.parsed.file, name.to_string());
        undo.file = Some((
            std::mem::replace(&mut state.path, path.to_path_buf()),
            old_file,
        ));
    }
    if let Some(t) = table.filter(|_| recheck) {
        if !validate_table(&ctx, &state.parsed.tables[t]).is_empty() {
            unsplice(state, undo);
            return Err(text);
        }
    }
    report.parse += t0.elapsed();
    let prev = (&state.filter, state.raw.as_ref());
    match compile_file(&state.parsed, Some(prev), Some(&undo), key, make, report) {
        Ok((filter, raw, rs, raw_rs)) => {
            report.incremental += 1;
            Ok(Ok((
                Prepared::Spliced {
                    undo,
                    text,
                    filter,
                    raw,
                },
                rs,
                raw_rs,
            )))
        }
        Err(Failure::Load(e)) => {
            unsplice(state, undo);
            Ok(Err(Failure::Load(e)))
        }
        Err(Failure::Rules(_)) => {
            unsplice(state, undo);
            Err(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tree_classifier;
    use crate::rules::tests::{gen_packet, gen_ruleset, ports};
    use dataplane::classify::{Judgement, PacketMeta};
    use proptest::prelude::*;

    /// Lines edits draw from besides the generated ones: comments, blanks, a raw table's rules,
    /// and lines that fail in the lexer, the parser or the table's validation.
    const EXTRA: &[&str] = &[
        "# a comment",
        "",
        "   ",
        "-A FORWARD -p tcp --dport 22 -j ACCEPT",
        "-A FORWARD -j U1",
        "-A U1 -j FORWARD",
        "-A U2 -j U1",
        "-A FORWARD -j NOWHERE",
        "-A FORWARD --bogus -j ACCEPT",
        "-A FORWARD -m comment --comment \"open",
        "-A PREROUTING -p udp -j DROP",
        "-A PREROUTING -p tcp --dport 80 -j NOTRACK",
        ":U9 - [0:0]",
        ":FORWARD DROP [0:0]",
        "COMMIT",
        "*raw",
        ":PREROUTING ACCEPT [0:0]",
        "-A FORWARD -j LOG --log-prefix \"x \"",
        "-6 -A FORWARD -j DROP",
        "[1:2] -A FORWARD -j DROP",
    ];

    const RAW: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp --dport 53 -j NOTRACK\n-A PREROUTING -p tcp --dport 23 -j DROP\nCOMMIT\n";

    #[derive(Clone, Debug)]
    enum Edit {
        Delete(usize),
        Insert(usize, String),
        Replace(usize, String),
    }

    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for e in edits {
            match e {
                Edit::Delete(i) if !lines.is_empty() => {
                    let i = i % lines.len();
                    lines.remove(i);
                }
                Edit::Insert(i, l) => {
                    let i = i % (lines.len() + 1);
                    lines.insert(i, l.clone());
                }
                Edit::Replace(i, l) if !lines.is_empty() => {
                    let i = i % lines.len();
                    lines[i] = l.clone();
                }
                _ => {}
            }
        }
        lines.join("\n") + "\n"
    }

    fn gen_edits(v6: bool) -> impl Strategy<Value = Vec<Edit>> {
        let line = prop_oneof![
            3 => gen_ruleset(v6).prop_flat_map(|t| {
                let lines: Vec<String> = t.lines().map(str::to_string).collect();
                prop::sample::select(lines)
            }),
            1 => prop::sample::select(EXTRA).prop_map(str::to_string),
        ];
        let edit = prop_oneof![
            2 => any::<usize>().prop_map(Edit::Delete),
            2 => (any::<usize>(), line.clone()).prop_map(|(i, l)| Edit::Insert(i, l)),
            3 => (any::<usize>(), line).prop_map(|(i, l)| Edit::Replace(i, l)),
        ];
        prop::collection::vec(edit, 0..3)
    }

    fn judge(rs: &RuleSet, p: &PacketMeta) -> (Judgement, Vec<u32>) {
        let mut logs = Vec::new();
        let j = rs.evaluate(p, |i, _, _| logs.push(i));
        (j, logs)
    }

    fn same_rule_set(
        a: Option<&RuleSet>,
        b: Option<&RuleSet>,
        packets: &[PacketMeta],
    ) -> Result<(), TestCaseError> {
        match (a, b) {
            (None, None) => Ok(()),
            (Some(a), Some(b)) => {
                prop_assert_eq!(&a.rules, &b.rules);
                prop_assert_eq!(&a.origins, &b.origins);
                prop_assert_eq!(&a.logs, &b.logs);
                for p in packets.iter().filter(|p| p.key.family == a.family) {
                    prop_assert_eq!(judge(a, p), judge(b, p), "{:?}", p);
                }
                Ok(())
            }
            _ => Err(TestCaseError::fail("a rule set on one side only")),
        }
    }

    /// Loads `texts` (IPv4, IPv6) through `r` and through a full load; both must agree.
    fn check(
        r: &mut Reloader,
        dir: &Path,
        step: usize,
        texts: &[Option<String>; 2],
        packets: &[PacketMeta],
    ) -> Result<(), TestCaseError> {
        let mut paths: [Option<PathBuf>; 2] = [None, None];
        for (i, t) in texts.iter().enumerate() {
            if let Some(t) = t {
                // Two names per family, used in turn: a load may name another file.
                let p = dir.join(format!("f{i}-{}.rules", step % 2));
                std::fs::write(&p, t).unwrap();
                paths[i] = Some(p);
            }
        }
        let files = RuleFiles {
            rules: paths[0].as_deref(),
            rules6: paths[1].as_deref(),
            groups: None,
            ..RuleFiles::default()
        };
        let ports = ports();
        let want = load_filter(
            &files,
            &ports,
            Hook::Forward,
            crate::config::Mode::Bridge,
            &tree_classifier,
        );
        let got = r.load_filter(
            &files,
            &ports,
            Hook::Forward,
            ClassifierKind::Tree,
            &tree_classifier,
        );
        // The kept state is always the parse of the kept text.
        for state in r.files.iter().flatten() {
            let fresh =
                rules::parse_iptables(&state.parsed.file, &state.text, state.parsed.family, &ports);
            prop_assert_eq!(fresh.as_ref(), Ok(&state.parsed));
            prop_assert_eq!(state.parsed.file.clone(), state.path.display().to_string());
        }
        match (want, got) {
            (Err(w), Err(g)) => prop_assert_eq!(w.to_string(), g.to_string()),
            (Ok(w), Ok(g)) => {
                same_rule_set(w.v4.as_ref(), g.v4.as_ref(), packets)?;
                same_rule_set(w.v6.as_ref(), g.v6.as_ref(), packets)?;
                same_rule_set(w.raw_v4.as_ref(), g.raw_v4.as_ref(), packets)?;
                same_rule_set(w.raw_v6.as_ref(), g.raw_v6.as_ref(), packets)?;
            }
            (w, g) => {
                return Err(TestCaseError::fail(format!(
                    "full load {:?}, incremental load {:?}\n{texts:?}",
                    w.err().map(|e| e.to_string()),
                    g.err().map(|e| e.to_string())
                )))
            }
        }
        Ok(())
    }

    fn base(v6: bool) -> impl Strategy<Value = String> {
        (gen_ruleset(v6), any::<bool>()).prop_map(|(t, raw)| if raw { t + RAW } else { t })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(160))]

        /// Random edits loaded one after another (both families, sometimes only one edited,
        /// sometimes failing): the incremental loads equal fresh full loads every time, in
        /// rule sets, origins, logs, verdicts and errors.
        #[test]
        fn incremental_loads_equal_full_loads(
            v4 in base(false),
            v6 in base(true),
            steps in prop::collection::vec((gen_edits(false), gen_edits(true), 0..4u8), 1..6),
            packets4 in prop::collection::vec(gen_packet(false), 16),
            packets6 in prop::collection::vec(gen_packet(true), 16),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let packets: Vec<PacketMeta> = packets4.into_iter().chain(packets6).collect();
            let mut r = Reloader::new();
            let mut texts = [Some(v4), Some(v6)];
            check(&mut r, dir.path(), 0, &texts, &packets)?;
            for (step, (e4, e6, which)) in steps.into_iter().enumerate() {
                let mut next = texts.clone();
                if which != 1 {
                    next[0] = next[0].as_deref().map(|t| apply(t, &e4));
                }
                if which != 0 {
                    next[1] = next[1].as_deref().map(|t| apply(t, &e6));
                }
                check(&mut r, dir.path(), step + 1, &next, &packets)?;
                // A failed load leaves the rules in force; the next edit starts from them or
                // from the failed text, as an operator fixing a file would.
                if which != 3 {
                    texts = next;
                }
            }
        }
    }

    /// Rules of FORWARD the flat patch handles (some of several cubes, some LOG).
    const SIMPLE: &[&str] = &[
        "-A FORWARD -p tcp -j ACCEPT",
        "-A FORWARD ! -s 10.0.0.0/8 -j DROP",
        "-A FORWARD -p udp -m multiport --ports 53,123 -j LOG --log-prefix \"u \"",
        "-A FORWARD -s 10.1.0.0/16 -j REJECT",
        "-A FORWARD -d 192.168.0.0/16",
        "-A FORWARD -p tcp --tcp-flags SYN,ACK SYN -j DROP",
        "-A FORWARD -p icmp -j ACCEPT",
        "-A FORWARD -i in0 -j LOG",
        "-A FORWARD -p tcp ! --dport 22 -j ACCEPT",
        "-A FORWARD -p tcp -p udp -j ACCEPT",
        "-A FORWARD -j U1",
    ];

    /// FORWARD holds `parts` (indexes into [`SIMPLE`]) around a jump to a chain that returns,
    /// logs and goes to another; then a raw table.
    fn layered(parts: &[Vec<usize>; 3]) -> String {
        let mut t = String::from("*filter\n:FORWARD DROP [0:0]\n:U1 - [0:0]\n:U2 - [0:0]\n");
        for (k, part) in parts.iter().enumerate() {
            for &i in part {
                t += SIMPLE[i % SIMPLE.len()];
                t += "\n";
            }
            if k < 2 {
                t += "-A FORWARD -s 10.0.0.0/9 -j U1\n";
            }
        }
        t += "-A U1 -p tcp -j RETURN\n-A U1 -j LOG --log-prefix \"one \"\n-A U1 -p udp -g U2\n-A U1 -d 10.2.0.0/16 -j ACCEPT\n";
        t += "-A U2 -p udp --dport 53 -j RETURN\n-A U2 -j DROP\nCOMMIT\n";
        t + RAW
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Rule changes in a built-in chain with inlined chains between them, where flat rule
        /// sets are patched rather than flattened again: the same as full loads.
        #[test]
        fn patched_loads_equal_full_loads(
            parts in prop::array::uniform3(prop::collection::vec(0..11usize, 0..5)),
            edits in prop::collection::vec((0..3usize, any::<usize>(), 0..3u8, 0..11usize), 1..8),
            packets in prop::collection::vec(gen_packet(false), 24),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut r = Reloader::new();
            let mut parts = parts;
            check(&mut r, dir.path(), 0, &[Some(layered(&parts)), None], &packets)?;
            for (step, (part, at, op, rule)) in edits.into_iter().enumerate() {
                let v = &mut parts[part];
                match op {
                    0 => v.insert(at % (v.len() + 1), rule),
                    1 if !v.is_empty() => {
                        v.remove(at % v.len());
                    }
                    _ if !v.is_empty() => {
                        let i = at % v.len();
                        v[i] = rule;
                    }
                    _ => v.push(rule),
                }
                check(&mut r, dir.path(), step + 1, &[Some(layered(&parts)), None], &packets)?;
            }
        }
    }

    fn text(rules: &[&str], policy: &str) -> String {
        let mut t = format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n:U1 - [0:0]\n");
        for r in rules {
            t += r;
            t += "\n";
        }
        // Enough rules that a few changes stay in the tree's update tier.
        for i in 0..300 {
            t += &format!("-A FORWARD -s 10.1.{}.{} -j DROP\n", i / 200, i % 200);
        }
        t + "COMMIT\n"
    }

    fn load(r: &mut Reloader, dir: &Path, t: &str) -> Result<Filter, String> {
        let p = dir.join("r.rules");
        std::fs::write(&p, t).unwrap();
        let files = RuleFiles {
            rules: Some(&p),
            ..RuleFiles::default()
        };
        r.load_filter(
            &files,
            &ports(),
            Hook::Forward,
            ClassifierKind::Tree,
            &tree_classifier,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn rule_changes_take_the_incremental_path_and_others_the_full_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reloader::new();
        let rules = [
            "-A FORWARD -p tcp --dport 22 -j ACCEPT",
            "-A FORWARD -s 10.0.0.0/8 -j U1",
            "-A U1 -p udp -j DROP",
            "-A FORWARD -p tcp --dport 80 -j ACCEPT",
        ];
        load(&mut r, dir.path(), &text(&rules, "DROP")).unwrap();
        assert_eq!((r.report().full, r.report().incremental), (1, 0));
        // A rule changed, one inserted, one deleted: incremental, no tree built.
        let mut changed = rules.to_vec();
        changed[3] = "-A FORWARD -p tcp --dport 8080 -j ACCEPT";
        let f = load(&mut r, dir.path(), &text(&changed, "DROP")).unwrap();
        assert_eq!(
            (
                r.report().incremental,
                r.report().trees_built,
                r.report().lines_parsed
            ),
            (1, 0, 1)
        );
        assert_eq!(f.v4.as_ref().unwrap().rules[2].dport, (8080, 8080));
        changed.insert(1, "-A U1 -p icmp -j ACCEPT");
        load(&mut r, dir.path(), &text(&changed, "DROP")).unwrap();
        assert_eq!((r.report().incremental, r.report().trees_built), (1, 0));
        changed.remove(0);
        load(&mut r, dir.path(), &text(&changed, "DROP")).unwrap();
        assert_eq!((r.report().incremental, r.report().trees_built), (1, 0));
        // A bad line: the error names it, and the state stays that of the rules in force.
        let mut bad = changed.clone();
        bad[1] = "-A FORWARD -p tcp --dport nope -j ACCEPT";
        let e = load(&mut r, dir.path(), &text(&bad, "DROP")).unwrap_err();
        assert!(e.contains("r.rules:7:"), "{e}");
        changed[2] = "-A FORWARD -p tcp --dport 443 -j ACCEPT";
        load(&mut r, dir.path(), &text(&changed, "DROP")).unwrap();
        assert_eq!(r.report().incremental, 1);
        // A policy change is structure: the full path.
        load(&mut r, dir.path(), &text(&changed, "ACCEPT")).unwrap();
        assert_eq!((r.report().full, r.report().incremental), (1, 0));
    }

    /// Rules that only the table-wide checks refuse (interfaces and NAT targets in chains that
    /// jumps reach) are refused on the incremental path too.
    #[test]
    fn table_wide_checks_still_apply_to_changed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let base = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:U1 - [0:0]\n-A INPUT -j U1\n-A U1 -p tcp -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:N1 - [0:0]\n-A PREROUTING -j N1\n-A N1 -p tcp -j ACCEPT\nCOMMIT\n";
        let ctstate = base.replace(
            "-A U1 -p tcp -j ACCEPT",
            "-A U1 -p tcp -j ACCEPT\n-A U1 -m conntrack --ctstate SNAT -j ACCEPT",
        );
        let dnat = base.replace(
            "-A N1 -p tcp -j ACCEPT",
            "-A N1 -p tcp -j DNAT --to-destination 10.0.0.1",
        );
        let mac = base.replace(
            "-A U1 -p tcp -j ACCEPT",
            "-A U1 -m mac --mac-source 00:11:22:33:44:55 -j ACCEPT",
        );
        for (base, bad, message) in [
            // -m mac, which the kernel refuses in a chain OUTPUT reaches, by a new jump.
            (mac.as_str(), "-A INPUT -j U1", "-A OUTPUT -j U1"),
            (
                base,
                "-A N1 -p tcp -j ACCEPT",
                "-A N1 -p tcp -j SNAT --to-source 10.0.0.1",
            ),
            // File-wide: --ctstate SNAT against the nat table's translating rules, either one new.
            (
                ctstate.as_str(),
                "-A N1 -p tcp -j ACCEPT",
                "-A N1 -p tcp -j DNAT --to-destination 10.0.0.1",
            ),
            (
                dnat.as_str(),
                "-A U1 -p tcp -j ACCEPT",
                "-A U1 -m conntrack --ctstate RELATED,SNAT -j ACCEPT",
            ),
        ]
        .map(|(base, old, new)| (base, base.replace(old, new), new))
        {
            let mut r = Reloader::new();
            load(&mut r, dir.path(), base).unwrap();
            let got = load(&mut r, dir.path(), &bad).unwrap_err();
            let p = dir.path().join("r.rules");
            let files = RuleFiles {
                rules: Some(&p),
                ..RuleFiles::default()
            };
            let want = load_filter(
                &files,
                &ports(),
                Hook::Forward,
                crate::config::Mode::Bridge,
                &tree_classifier,
            )
            .unwrap_err()
            .to_string();
            assert_eq!(got, want, "{message}");
            assert!(
                got.contains("reached from") || got.contains("--ctstate SNAT"),
                "{got}"
            );
        }
    }

    #[test]
    fn security_groups_load_as_load_filter_does() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(
            &p,
            "[[group]]\nname = \"web\"\nmembers = [\"10.0.0.0/24\"]\n[[group.ingress]]\nprotocol = \"tcp\"\nports = \"80\"\nremote = \"0.0.0.0/0\"\n",
        )
        .unwrap();
        let files = RuleFiles {
            groups: Some(&p),
            ..RuleFiles::default()
        };
        let want = load_filter(
            &files,
            &ports(),
            Hook::Forward,
            crate::config::Mode::Bridge,
            &tree_classifier,
        );
        let mut r = Reloader::new();
        let got = r.load_filter(
            &files,
            &ports(),
            Hook::Forward,
            ClassifierKind::Tree,
            &tree_classifier,
        );
        let (w, g) = (want.unwrap(), got.unwrap());
        assert_eq!(w.v4.unwrap().rules, g.v4.unwrap().rules);
        assert_eq!(w.v6.unwrap().rules, g.v6.unwrap().rules);
        assert_eq!((r.report().full, r.report().incremental), (0, 0));
    }

    proptest! {
        /// `line_diff` never counts a changed line as the same.
        #[test]
        fn line_diff_is_exact_or_cautious(
            old in prop::collection::vec(prop::sample::select(vec!["a", "b", "", "a\r", "ab"]), 0..8),
            new in prop::collection::vec(prop::sample::select(vec!["a", "b", "", "a\r", "ab"]), 0..8),
            old_nl in any::<bool>(),
            new_nl in any::<bool>(),
        ) {
            let join = |v: &[&str], nl: bool| v.join("\n") + if nl { "\n" } else { "" };
            let (o, n) = (join(&old, old_nl), join(&new, new_nl));
            let (ol, nl): (Vec<&str>, Vec<&str>) = (o.lines().collect(), n.lines().collect());
            prop_assert_eq!(line_count(o.as_bytes()), ol.len());
            let (pre, suf, q) = line_diff(o.as_bytes(), n.as_bytes());
            prop_assert_eq!(&o[q..].lines().next(), &ol.get(pre).copied());
            prop_assert!(pre + suf <= ol.len().min(nl.len()));
            prop_assert_eq!(&ol[..pre], &nl[..pre]);
            prop_assert_eq!(&ol[ol.len() - suf..], &nl[nl.len() - suf..]);
            if o == n {
                prop_assert_eq!(pre, ol.len());
            }
        }
    }
}
