//! The daemon's control plane: rule loading and publication, management requests, metrics.
//!
//! Runs on the control thread (main lcore). Rule files are compiled here; a file that fails
//! changes nothing. A compiled snapshot is published to the workers RCU-style and the previous one
//! is freed only after every worker has passed a quiescent state.

use crate::config::RulesConf;
use crate::load::{load_filter, MakeClassifier, NatSettings, RuleFiles};
use crate::metrics::Exposition;
use crate::mgmt::{error, Request};
use crate::reload::Reloader;
use crate::rules::Hook;
use dataplane::classify::ipset::{IpSets, SetsCell};
use dataplane::conntrack::filter::CtFilter;
use dataplane::conntrack::ConnInfo;
use dataplane::filter::FilterSnapshot;
use dataplane::rcu::{Publisher, Reader};
use dataplane::stats::{StatsSnapshot, WorkerStats};
use dataplane::verdict::DropReason;
use dataplane::wire::Family;
use dataplane::worker::{CtCommand, LIST_CHUNK};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker may take to answer one chunk of a conntrack request.
const WORKER_ANSWER: Duration = Duration::from_secs(2);

/// Sends a worker the conntrack request `make` builds around a reply channel, and waits for
/// its answer at most [`WORKER_ANSWER`].
fn ask<A>(
    q: &crossbeam_channel::Sender<CtCommand>,
    make: impl FnOnce(crossbeam_channel::Sender<A>) -> CtCommand,
) -> Option<A> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    q.send(make(tx))
        .ok()
        .and_then(|_| rx.recv_timeout(WORKER_ANSWER).ok())
}

/// How long a swap may wait for every worker to pick up the new rules.
const SWAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Swap statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwapStats {
    pub swaps: u64,
    pub failures: u64,
    pub last_compile: Duration,
    pub last_publish: Duration,
}

/// The control plane of a running daemon.
pub struct ControlPlane<'a> {
    make: Box<MakeClassifier<'a>>,
    publisher: Publisher<FilterSnapshot>,
    files: RulesConf,
    ports: Vec<String>,
    workers: usize,
    nat: NatSettings,
    pub swaps: SwapStats,
    /// Each worker's request queue for its conntrack table (empty without tracking).
    conntrack: Vec<crossbeam_channel::Sender<CtCommand>>,
    /// What the last load made of each rule file, so the next load compiles only what changed.
    reloader: Reloader,
    /// The live ipset sets the rules in force test (`ctl ipset` changes them).
    sets: Arc<SetsCell>,
    /// Set snapshots replaced but possibly still in a worker's cache.
    retired_sets: Vec<Arc<IpSets>>,
}

/// The sets of an `ipset save` file in a new cell (none: an empty one).
fn read_sets(path: Option<&std::path::Path>) -> Result<Arc<SetsCell>, String> {
    let Some(p) = path else {
        return Ok(SetsCell::new(IpSets::default()));
    };
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
    crate::rules::ipsets::parse_ipsets(&p.display().to_string(), &text)
        .map(SetsCell::new)
        .map_err(|e| crate::load::LoadError::Rules(e).to_string())
}

fn source_of(files: &RulesConf) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("ipv4", &files.ipv4),
        ("ipv6", &files.ipv6),
        ("groups", &files.groups),
    ] {
        if let Some(p) = v {
            parts.push(format!("{k}={}", p.display()));
        }
    }
    if parts.is_empty() {
        "no rules".into()
    } else {
        parts.join(" ")
    }
}

impl<'a> ControlPlane<'a> {
    /// Compiles the configured rule files (an error here stops start-up) for `workers` workers.
    pub fn new(
        files: RulesConf,
        ports: Vec<String>,
        workers: usize,
        nat: NatSettings,
        make: Box<MakeClassifier<'a>>,
    ) -> Result<ControlPlane<'a>, String> {
        let mut reloader = Reloader::new();
        let sets = read_sets(files.ipsets.as_deref())?;
        let snap = compile(&files, &sets, &ports, workers, &nat, &*make, &mut reloader)?;
        Ok(ControlPlane {
            sets,
            retired_sets: Vec::new(),
            make,
            publisher: Publisher::new(snap, workers),
            files,
            ports,
            workers,
            nat,
            swaps: SwapStats::default(),
            conntrack: Vec::new(),
            reloader,
        })
    }

    /// Connects `conntrack list` and `flush` to the workers' tables (one queue per worker, in
    /// worker order).
    pub fn set_conntrack(&mut self, queues: Vec<crossbeam_channel::Sender<CtCommand>>) {
        self.conntrack = queues;
    }

    /// Every worker's connections `filter` selects, at most `max` (walked a chunk at a time).
    fn conntrack_list(&self, max: u64, filter: CtFilter) -> Value {
        match self.walk(max, Arc::new(filter), |_| true, conn_json) {
            Ok((out, truncated)) => {
                json!({ "ok": true, "count": out.len(), "truncated": truncated, "connections": out })
            }
            Err(e) => e,
        }
    }

    /// Every translated connection (NAT binding), at most `max`.
    fn nat_list(&self, max: u64) -> Value {
        let translated = |c: &ConnInfo| c.reply != c.orig.reply();
        match self.walk(max, Arc::default(), translated, binding_json) {
            Ok((out, truncated)) => {
                json!({ "ok": true, "count": out.len(), "truncated": truncated, "bindings": out })
            }
            Err(e) => e,
        }
    }

    /// Walks every worker's table a chunk at a time; `show` the connections `keep` keeps, at
    /// most `max`. Returns them and whether `max` cut the walk short.
    fn walk(
        &self,
        max: u64,
        filter: Arc<CtFilter>,
        keep: impl Fn(&ConnInfo) -> bool,
        show: impl Fn(usize, &ConnInfo) -> Value,
    ) -> Result<(Vec<Value>, bool), Value> {
        if self.conntrack.is_empty() {
            return Err(error(
                "connection tracking is off ([conntrack] enabled = false)",
            ));
        }
        let mut out = Vec::new();
        let mut truncated = false;
        'workers: for (w, q) in self.conntrack.iter().enumerate() {
            let mut from = Some(0);
            while let Some(f) = from {
                let left = max.saturating_sub(out.len() as u64);
                if left == 0 {
                    truncated = true;
                    break 'workers;
                }
                let buf = Vec::with_capacity(LIST_CHUNK.min(left as usize));
                let chunk = match ask(q, |reply| CtCommand::List {
                    from: f,
                    filter: filter.clone(),
                    buf,
                    reply,
                }) {
                    Some(c) => c,
                    None => return Err(error(format!("worker {w} did not answer in time"))),
                };
                for c in chunk.conns.iter().filter(|c| keep(c)) {
                    if out.len() as u64 >= max {
                        truncated = true;
                        break 'workers;
                    }
                    out.push(show(w, c));
                }
                from = chunk.next;
            }
        }
        Ok((out, truncated))
    }

    /// Removes every worker's connections.
    fn conntrack_flush(&self) -> Value {
        if self.conntrack.is_empty() {
            return error("connection tracking is off ([conntrack] enabled = false)");
        }
        let mut removed = 0u64;
        for (w, q) in self.conntrack.iter().enumerate() {
            let mut from = Some(0);
            while let Some(f) = from {
                let chunk = match ask(q, |reply| CtCommand::Flush { from: f, reply }) {
                    Some(c) => c,
                    None => return error(format!("worker {w} did not answer in time")),
                };
                removed += u64::from(chunk.removed);
                from = chunk.next;
            }
        }
        json!({ "ok": true, "removed": removed })
    }

    /// Counts, and with `delete` removes, the connections `filter` selects in every worker's
    /// table: each worker walks its own table a chunk of slots per answer
    /// ([`dataplane::worker::SELECT_CHUNK`]), between bursts, so forwarding never waits long.
    fn conntrack_select(&self, filter: CtFilter, delete: bool) -> Value {
        if self.conntrack.is_empty() {
            return error("connection tracking is off ([conntrack] enabled = false)");
        }
        let filter = Arc::new(filter);
        let mut selected = 0u64;
        for (w, q) in self.conntrack.iter().enumerate() {
            let mut from = Some(0);
            while let Some(f) = from {
                let chunk = match ask(q, |reply| CtCommand::Select {
                    from: f,
                    filter: filter.clone(),
                    delete,
                    reply,
                }) {
                    Some(c) => c,
                    // What was deleted so far stays deleted: say how much.
                    None if delete => {
                        return error(format!(
                            "worker {w} did not answer in time ({selected} connection(s) deleted before)"
                        ))
                    }
                    None => return error(format!("worker {w} did not answer in time")),
                };
                selected += u64::from(chunk.removed);
                from = chunk.next;
            }
        }
        if delete {
            json!({ "ok": true, "deleted": selected })
        } else {
            json!({ "ok": true, "count": selected })
        }
    }

    /// One reader per worker, in worker order.
    pub fn readers(&mut self) -> Vec<Reader<FilterSnapshot>> {
        (0..self.workers)
            .map_while(|_| self.publisher.reader())
            .collect()
    }

    /// The rules now in force.
    pub fn current(&self) -> Arc<FilterSnapshot> {
        self.publisher.current()
    }

    /// Compiles `files` and, if they compile, publishes them and waits for every worker.
    /// Returns the time from request to every worker running the new rules. The rules test
    /// the live sets, or with `sets` (a sets file given with the request) those, which become
    /// the live sets.
    pub fn load(
        &mut self,
        files: RulesConf,
        sets: Option<Arc<SetsCell>>,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        // The accounting objects the rules in force name are kept from here on, whatever
        // the new rules name.
        dataplane::classify::nfacct::settle();
        let sets = sets.unwrap_or_else(|| self.sets.clone());
        let snap = match compile(
            &files,
            &sets,
            &self.ports,
            self.workers,
            &self.nat,
            &*self.make,
            &mut self.reloader,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.swaps.failures += 1;
                // Objects only the refused rules made are forgotten.
                dataplane::classify::nfacct::settle();
                return Err(e);
            }
        };
        let compiled = t0.elapsed();
        let epoch = self.publisher.publish(snap);
        if !self.publisher.wait(epoch, SWAP_TIMEOUT) {
            return Err(format!(
                "published, but not every worker picked the rules up within {SWAP_TIMEOUT:?}"
            ));
        }
        // Every worker runs the new rules: that is the swap. Freeing the old ones follows.
        let swapped = t0.elapsed();
        self.publisher.reclaim();
        self.files = files;
        if !Arc::ptr_eq(&self.sets, &sets) {
            // The replaced cell's snapshot may still be in a worker's cache: freed here, by
            // `reclaim`, once none holds it.
            self.retired_sets.push(self.sets.snapshot());
        }
        self.sets = sets;
        self.swaps.swaps += 1;
        self.swaps.last_compile = compiled;
        self.swaps.last_publish = swapped;
        Ok(swapped)
    }

    /// Reloads the configured rule files (SIGHUP), keeping the live sets' contents.
    pub fn reload(&mut self) -> Result<Duration, String> {
        self.load(self.files.clone(), None)
    }

    /// Frees snapshots no worker uses any more (call periodically).
    pub fn reclaim(&mut self) {
        self.publisher.reclaim();
        // Only this list holds the snapshot: no worker's cache has it, and none can take it.
        self.retired_sets.retain(|s| Arc::strong_count(s) > 1);
    }

    /// The live sets.
    pub fn sets(&self) -> Arc<IpSets> {
        self.sets.snapshot()
    }

    /// Puts changed sets in force: swaps them into the live cell (a worker's next check
    /// takes them); the replaced snapshot is freed here once no worker's cache holds it.
    fn publish_sets(&mut self, next: IpSets) -> Result<(), String> {
        let old = self.sets.replace(next);
        self.retired_sets.push(old);
        self.reclaim();
        Ok(())
    }

    /// `ctl ipset ...`: one command against the live sets.
    fn ipset(&mut self, line: &str) -> Value {
        use crate::rules::ipset_live::{command, Outcome};
        let cur = self.sets.snapshot();
        let at = live_at(&cur, false);
        match command(&cur, line, at) {
            Ok(Outcome::Changed(next)) => match self.publish_sets(next) {
                Ok(()) => json!({ "ok": true }),
                Err(e) => error(e),
            },
            Ok(Outcome::Tested(yes, text)) => json!({ "ok": true, "in_set": yes, "text": text }),
            Ok(Outcome::Listed(text)) => json!({ "ok": true, "text": text }),
            Err((col, m)) => error(format!("ipset: column {col}: {m}")),
        }
    }

    /// `ctl ipset restore`: every line or none.
    fn ipset_restore(&mut self, file: Option<String>, text: Option<String>, exist: bool) -> Value {
        let (name, text) = match (file, text) {
            (Some(f), None) => match std::fs::read_to_string(&f) {
                Ok(t) => (f, t),
                Err(e) => return error(format!("{f}: cannot read: {e}")),
            },
            (None, Some(t)) => ("-".to_string(), t),
            _ => return error("ipset restore takes a file or text, one of them"),
        };
        let cur = self.sets.snapshot();
        let at = live_at(&cur, exist);
        match crate::rules::ipset_live::restore(&cur, &name, &text, at) {
            Ok(next) => match self.publish_sets(next) {
                Ok(()) => json!({ "ok": true }),
                Err(e) => error(e),
            },
            Err(errors) => error(crate::load::LoadError::Rules(errors).to_string()),
        }
    }

    /// Answers a management request. `stats` gives the workers' counters.
    pub fn handle(&mut self, req: Request, stats: &dyn Fn() -> Value) -> Value {
        match req {
            Request::RulesLoad {
                file,
                file6,
                groups,
                ipsets,
            } => {
                let mut files = if file.is_none() && file6.is_none() && groups.is_none() {
                    self.files.clone()
                } else {
                    RulesConf {
                        ipv4: file.map(Into::into),
                        ipv6: file6.map(Into::into),
                        groups: groups.map(Into::into),
                        ipsets: self.files.ipsets.clone(),
                        classifier: self.files.classifier,
                    }
                };
                let mut sets = None;
                if let Some(s) = ipsets {
                    files.ipsets = Some(s.into());
                    match read_sets(files.ipsets.as_deref()) {
                        Ok(c) => sets = Some(c),
                        Err(e) => {
                            self.swaps.failures += 1;
                            return error(e);
                        }
                    }
                }
                match self.load(files, sets) {
                    Ok(t) => {
                        json!({ "ok": true, "swap_us": t.as_micros() as u64, "compile_us": self.swaps.last_compile.as_micros() as u64, "rules": self.rule_counts(), "reload": self.reloader.report().json() })
                    }
                    Err(e) => error(e),
                }
            }
            Request::RulesShow => {
                json!({ "ok": true, "source": self.current().source, "rules": self.rules_show() })
            }
            Request::Stats => {
                let mut v = stats();
                v["ok"] = true.into();
                v
            }
            Request::ConntrackList { max, filter } => {
                match filter.as_ref().map(crate::ctfilter::from_json).transpose() {
                    Ok(f) => self.conntrack_list(
                        max.unwrap_or(crate::mgmt::CONNTRACK_LIST_MAX),
                        f.unwrap_or_default(),
                    ),
                    Err(e) => error(e),
                }
            }
            Request::ConntrackFlush => self.conntrack_flush(),
            Request::ConntrackDelete { filter } => match crate::ctfilter::from_json(&filter) {
                Ok(f) => self.conntrack_select(f, true),
                Err(e) => error(e),
            },
            Request::ConntrackCount { filter } => {
                match filter.as_ref().map(crate::ctfilter::from_json).transpose() {
                    Ok(f) => self.conntrack_select(f.unwrap_or_default(), false),
                    Err(e) => error(e),
                }
            }
            Request::ClockShift { ns } => {
                crate::run::shift_wall_clock(ns);
                json!({ "ok": true, "ns": ns })
            }
            Request::NatList { max } => {
                self.nat_list(max.unwrap_or(crate::mgmt::CONNTRACK_LIST_MAX))
            }
            Request::Ipset { line } => self.ipset(&line),
            Request::IpsetRestore { file, text, exist } => self.ipset_restore(file, text, exist),
            Request::Nfacct { op, name, reset } => {
                let in_use = nfacct_in_use(&self.current().filter);
                nfacct_request(&op, name.as_deref(), reset, &in_use)
            }
        }
    }

    fn rule_counts(&self) -> Value {
        let s = self.current();
        json!({
            "ipv4": s.filter.v4.as_ref().map(|r| r.rules.len()),
            "ipv6": s.filter.v6.as_ref().map(|r| r.rules.len()),
        })
    }

    /// Per-rule counters, one entry per source rule (flat rules of one origin summed), like
    /// `iptables -L -v -n` with line numbers.
    pub fn rules_show(&self) -> Value {
        let s = self.current();
        let mut out = Vec::new();
        for (family, name) in [(Family::V4, "ipv4"), (Family::V6, "ipv6")] {
            let Some(rs) = s.filter.rules(family) else {
                continue;
            };
            let mut per_origin = vec![(0u64, 0u64); rs.origins.len()];
            for (i, r) in rs.rules.iter().enumerate() {
                let (p, b) = s.rule_totals(family, i);
                if let Some(o) = per_origin.get_mut(r.origin as usize) {
                    o.0 += p;
                    o.1 += b;
                }
            }
            for (o, (p, b)) in rs.origins.iter().zip(per_origin) {
                out.push(json!({ "family": name, "file": o.file, "line": o.line, "rule": o.label, "packets": p, "bytes": b }));
            }
        }
        Value::Array(out)
    }

    /// Metrics text for everything the control plane knows, plus the workers' counters.
    pub fn metrics(
        &self,
        ports: &[String],
        total: &StatsSnapshot,
        workers: &[StatsSnapshot],
    ) -> String {
        let mut e = Exposition::default();
        let f = |e: &mut Exposition,
                 name: &str,
                 help: &str,
                 get: &dyn Fn(&dataplane::stats::PortTotals) -> u64| {
            e.family(name, "counter", help);
            for (i, p) in ports.iter().enumerate() {
                e.sample(name, &[("port", p)], get(&total.ports[i]) as f64);
            }
        };
        f(
            &mut e,
            "rampart_port_rx_packets_total",
            "Packets received per port",
            &|p| p.rx_packets,
        );
        f(
            &mut e,
            "rampart_port_rx_bytes_total",
            "Bytes received per port",
            &|p| p.rx_bytes,
        );
        f(
            &mut e,
            "rampart_port_tx_packets_total",
            "Packets sent per port",
            &|p| p.tx_packets,
        );
        f(
            &mut e,
            "rampart_port_tx_bytes_total",
            "Bytes sent per port",
            &|p| p.tx_bytes,
        );
        f(
            &mut e,
            "rampart_port_tx_refused_total",
            "Packets the device refused at TX",
            &|p| p.tx_dropped,
        );
        e.family(
            "rampart_worker_rx_packets_total",
            "counter",
            "Packets received per worker",
        );
        for (w, s) in workers.iter().enumerate() {
            e.sample(
                "rampart_worker_rx_packets_total",
                &[("worker", &w.to_string())],
                s.rx_packets() as f64,
            );
        }
        e.family(
            "rampart_drops_total",
            "counter",
            "Packets dropped per worker and reason",
        );
        for (w, s) in workers.iter().enumerate() {
            for r in DropReason::all() {
                let n = s.drops[r.index()];
                if n > 0 {
                    e.sample(
                        "rampart_drops_total",
                        &[("worker", &w.to_string()), ("reason", r.name())],
                        n as f64,
                    );
                }
            }
        }
        e.family(
            "rampart_rule_packets_total",
            "counter",
            "Packets that matched each rule",
        );
        for r in self.rules_show().as_array().into_iter().flatten() {
            let labels = [
                ("family", r["family"].as_str().unwrap_or("")),
                ("rule", r["rule"].as_str().unwrap_or("")),
                ("line", &r["line"].to_string()),
            ];
            e.sample(
                "rampart_rule_packets_total",
                &labels,
                r["packets"].as_u64().unwrap_or(0) as f64,
            );
        }
        let ct = &total.ct;
        e.family(
            "rampart_conntrack_entries",
            "gauge",
            "Tracked connections per worker",
        );
        for (w, s) in workers.iter().enumerate() {
            e.sample(
                "rampart_conntrack_entries",
                &[("worker", &w.to_string())],
                s.ct.entries as f64,
            );
        }
        let r = &total.router;
        for (name, help, v) in [
            (
                "rampart_router_arp_answered_total",
                "ARP requests answered",
                r.arp_answered,
            ),
            (
                "rampart_router_nd_answered_total",
                "Neighbour solicitations answered",
                r.nd_answered,
            ),
            (
                "rampart_router_solicits_sent_total",
                "ARP requests and neighbour solicitations sent",
                r.solicits_sent,
            ),
            (
                "rampart_router_echo_replies_total",
                "Echo replies sent",
                r.echo_replies,
            ),
            (
                "rampart_router_icmp_errors_total",
                "ICMP errors sent",
                r.icmp_sent,
            ),
            (
                "rampart_router_icmp_ratelimited_total",
                "ICMP errors not sent: rate limit",
                r.icmp_ratelimited,
            ),
            (
                "rampart_router_icmp_unresolved_total",
                "ICMP errors not sent: no way back to the source",
                r.icmp_unresolved,
            ),
        ] {
            e.family(name, "counter", help);
            e.sample(name, &[], v as f64);
        }
        e.family(
            "rampart_router_neighbours",
            "gauge",
            "Neighbour (ARP/NDP) entries",
        );
        e.sample("rampart_router_neighbours", &[], r.neighbours as f64);
        e.family(
            "rampart_nat_bindings",
            "gauge",
            "Translated connections (NAT port use) per worker",
        );
        for (w, s) in workers.iter().enumerate() {
            e.sample(
                "rampart_nat_bindings",
                &[("worker", &w.to_string())],
                s.ct.nat_bindings as f64,
            );
        }
        for (name, help, v) in [
            (
                "rampart_conntrack_created_total",
                "Connections confirmed",
                ct.created,
            ),
            (
                "rampart_conntrack_expired_total",
                "Connections timed out",
                ct.expired,
            ),
            (
                "rampart_conntrack_early_drop_total",
                "Unassured connections evicted to make room",
                ct.early_drop,
            ),
            (
                "rampart_conntrack_clash_total",
                "New connections found already confirmed",
                ct.clash,
            ),
            (
                "rampart_frag_held_total",
                "Fragments held until their datagram was whole",
                ct.frag_held,
            ),
            (
                "rampart_frag_timeout_total",
                "Datagrams given up, not whole within the fragment timeout",
                ct.frag_timeouts,
            ),
            (
                "rampart_frag_overflow_total",
                "Datagrams given up for room among the held fragments",
                ct.frag_overflows,
            ),
            (
                "rampart_frag_bad_checksum_total",
                "Reassembled datagrams whose L4 checksum did not verify",
                ct.frag_bad_checksum,
            ),
        ] {
            e.family(name, "counter", help);
            e.sample(name, &[], v as f64);
        }
        for (name, help, v) in [
            (
                "rampart_frag_held_fragments",
                "Fragments held now for reassembly",
                ct.frag_held_fragments,
            ),
            (
                "rampart_frag_held_datagrams",
                "Incomplete datagrams held now",
                ct.frag_held_datagrams,
            ),
        ] {
            e.family(name, "gauge", help);
            e.sample(name, &[], v as f64);
        }
        e.family(
            "rampart_conntrack_invalid_total",
            "counter",
            "Packets conntrack judged INVALID, by reason",
        );
        for r in dataplane::conntrack::Invalid::ALL {
            e.sample(
                "rampart_conntrack_invalid_total",
                &[("reason", r.name())],
                ct.invalid[r.index()] as f64,
            );
        }
        e.family("rampart_rule_swaps_total", "counter", "Rule sets published");
        e.sample("rampart_rule_swaps_total", &[], self.swaps.swaps as f64);
        e.family(
            "rampart_rule_swap_failures_total",
            "counter",
            "Rule loads refused",
        );
        e.sample(
            "rampart_rule_swap_failures_total",
            &[],
            self.swaps.failures as f64,
        );
        e.family(
            "rampart_rule_swap_seconds",
            "gauge",
            "Last swap: request to every worker on the new rules",
        );
        e.sample(
            "rampart_rule_swap_seconds",
            &[],
            self.swaps.last_publish.as_secs_f64(),
        );
        e.finish()
    }
}

/// When a runtime command applies: now on the workers' clock, in the sets' time.
fn live_at(sets: &IpSets, exist: bool) -> crate::rules::ipsets::At {
    crate::rules::ipsets::At {
        now_ms: sets.elapsed_ms(dataplane::worker::clock_ns()),
        exist,
    }
}

fn compile(
    files: &RulesConf,
    sets: &Arc<SetsCell>,
    ports: &[String],
    workers: usize,
    nat: &NatSettings,
    make: &MakeClassifier<'_>,
    reloader: &mut Reloader,
) -> Result<FilterSnapshot, String> {
    let rf = RuleFiles {
        rules: files.ipv4.as_deref(),
        rules6: files.ipv6.as_deref(),
        groups: files.groups.as_deref(),
        ipsets: None,
        live_sets: (!sets.snapshot().sets.is_empty()).then_some(sets),
        nat: nat.env(workers),
    };
    // The incremental reloader compiles the filter and raw tables; a rule set with a nat
    // table or a mangle table that may apply, and router mode (INPUT chain), take the full
    // path.
    let filter = if nat.mode == crate::config::Mode::Router
        || has_nat_table(&rf)
        || rf.live_sets.is_some()
    {
        reloader.clear();
        load_filter(&rf, ports, Hook::Forward, nat.mode, make)
    } else {
        reloader.load_filter(&rf, ports, Hook::Forward, files.classifier, make)
    }
    .map_err(|e| e.to_string())?;
    nat.check(&filter)?;
    Ok(FilterSnapshot::new(filter, source_of(files), workers))
}

/// Whether an iptables-save file of `files` holds a nat table (a file that cannot be read says
/// yes: the full path reports the error).
fn has_nat_table(files: &RuleFiles<'_>) -> bool {
    [files.rules, files.rules6].into_iter().flatten().any(|p| {
        std::fs::read_to_string(p).map_or(true, |t| {
            t.lines().any(|l| l.trim() == "*nat") || crate::load::mangle_may_apply(&t)
        })
    })
}

/// Conntrack counters as `stats` shows them.
pub fn ct_json(t: &dataplane::stats::CtTotals) -> Value {
    use dataplane::conntrack::Invalid;
    let invalid: serde_json::Map<String, Value> = Invalid::ALL
        .iter()
        .filter(|r| t.invalid[r.index()] > 0)
        .map(|r| (r.name().to_string(), t.invalid[r.index()].into()))
        .collect();
    json!({
        "entries": t.entries, "created": t.created, "expired": t.expired,
        "early_drop": t.early_drop, "clash": t.clash, "invalid": invalid,
        "frag_completed": t.frag_completed, "frag_held": t.frag_held,
        "frag_timeouts": t.frag_timeouts, "frag_overflows": t.frag_overflows,
        "frag_bad_checksum": t.frag_bad_checksum,
        "frag_held_fragments": t.frag_held_fragments,
        "frag_held_datagrams": t.frag_held_datagrams,
        "nat_bindings": t.nat_bindings,
    })
}

/// Router-stage counters as `stats` shows them.
pub fn router_json(t: &dataplane::stats::RouterTotals) -> Value {
    json!({
        "arp_answered": t.arp_answered, "nd_answered": t.nd_answered,
        "solicits_sent": t.solicits_sent, "released": t.released,
        "echo_replies": t.echo_replies, "icmp_sent": t.icmp_sent,
        "icmp_ratelimited": t.icmp_ratelimited, "icmp_unresolved": t.icmp_unresolved,
        "neighbours": t.neighbours,
    })
}

/// One NAT binding as `nat list` shows it: the connection's original tuple, the tuple it
/// leaves with, and which sides are translated.
pub fn binding_json(worker: usize, c: &ConnInfo) -> Value {
    use dataplane::conntrack::Dir;
    let b = dataplane::nat::Binding {
        orig: c.orig,
        reply: c.reply,
    };
    let mut v = conn_json(worker, c);
    let t = b.translated_orig();
    v["translated"] = json!({ "src": t.src.to_std().to_string(), "dst": t.dst.to_std().to_string(), "sport": t.src_port, "dport": t.dst_port });
    v["snat"] = b.rewrites_src(Dir::Orig).into();
    v["dnat"] = b.rewrites_dst(Dir::Orig).into();
    v
}

/// One connection as `conntrack list` shows it (both tuples, like `conntrack -L`).
pub fn conn_json(worker: usize, c: &ConnInfo) -> Value {
    use dataplane::wire::ip_proto;
    let tuple = |k: &dataplane::wire::FlowKey| json!({ "src": k.src.to_std().to_string(), "dst": k.dst.to_std().to_string(), "sport": k.src_port, "dport": k.dst_port });
    let proto = match c.orig.proto {
        ip_proto::TCP => "tcp".to_string(),
        ip_proto::UDP => "udp".to_string(),
        ip_proto::ICMP => "icmp".to_string(),
        ip_proto::ICMPV6 => "icmpv6".to_string(),
        p => p.to_string(),
    };
    json!({
        "worker": worker,
        "family": match c.orig.family { Family::V4 => "ipv4", Family::V6 => "ipv6" },
        "proto": proto,
        "state": c.tcp_state.map(|s| s.name()),
        "timeout_s": c.timeout_left_ns / 1_000_000_000,
        "orig": tuple(&c.orig),
        "reply": tuple(&c.reply),
        "seen_reply": c.seen_reply,
        "assured": c.assured,
        "mark": c.mark,
        // The conntrack zone (0: the default) and the directions it applies to.
        "zone": c.zone.id(),
        "zone_dir": match c.zone.label() {
            Some(("zone-orig", _)) => "orig",
            Some(("zone-reply", _)) => "reply",
            _ => "both",
        },
        "packets": c.packets,
        "bytes": c.bytes,
    })
}

/// Totals over workers.
pub fn totals(stats: &[Arc<WorkerStats>]) -> StatsSnapshot {
    let mut t = StatsSnapshot::default();
    for s in stats {
        s.add_to(&mut t);
    }
    t
}

/// A `nfacct` management request ([`dataplane::classify::nfacct`]): the objects read (name,
/// packets, bytes) or an error.
fn nfacct_request(op: &str, name: Option<&str>, reset: bool, in_use: &[String]) -> Value {
    use dataplane::classify::nfacct;
    nfacct::settle();
    let objects = |list: Vec<nfacct::Reading>| {
        list.into_iter()
            .map(|(n, p, b)| json!({ "name": n, "pkts": p, "bytes": b }))
            .collect::<Vec<_>>()
    };
    let need = || name.ok_or_else(|| format!("nfacct {op} needs a name"));
    let r = match op {
        "add" => need()
            .and_then(|n| nfacct::add(n).map_err(|e| e.to_string()))
            .map(|_| vec![]),
        "list" => Ok(objects(nfacct::list(reset))),
        "get" => need().and_then(|n| {
            nfacct::get(n, reset)
                .map(|r| objects(vec![r]))
                .map_err(|e| e.to_string())
        }),
        "delete" => need()
            .and_then(|n| nfacct::delete(n, in_use).map_err(|e| e.to_string()))
            .map(|_| vec![]),
        "flush" => {
            nfacct::flush(in_use);
            Ok(vec![])
        }
        _ => Err(format!(
            "unknown nfacct operation {op:?} (add, list, get, delete, flush)"
        )),
    };
    match r {
        Ok(o) => json!({ "ok": true, "objects": o }),
        Err(e) => crate::mgmt::error(e),
    }
}

/// The accounting objects the rules in force name (`-m nfacct`; the nat table has none).
fn nfacct_in_use(f: &dataplane::filter::Filter) -> Vec<String> {
    use dataplane::classify::{Check, RuleSet};
    let mut sets: Vec<&RuleSet> = Vec::new();
    for rs in [&f.v4, &f.v6, &f.raw_v4, &f.raw_v6, &f.input_v4, &f.input_v6] {
        sets.extend(rs.iter());
    }
    for m in f.mangle_v4.iter().chain(&f.mangle_v6) {
        sets.extend(m.chains().map(|c| &c.rules));
    }
    let mut names: Vec<String> = sets
        .iter()
        .flat_map(|rs| rs.rules.iter())
        .flat_map(|r| r.checks.iter().flat_map(|c| c.iter()))
        .filter_map(|c| match c {
            Check::NfAcct { acct, .. } => Some(acct.name().to_string()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
