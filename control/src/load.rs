//! Loading rule files into the filter: iptables-save (IPv4), ip6tables-save (IPv6) and
//! security groups (both families).

use crate::config::Mode;
use crate::groups::compile_groups;
use crate::rules::{compile_nat, compile_parsed, compile_raw, Hook, RuleError};
use dataplane::classify::{Classifier, FlatRule, RuleSet, Tree};
use dataplane::filter::Filter;
use dataplane::nat::{NatRules, NatTables, OneToOne, Steering};
use dataplane::wire::{Family, IpAddr128};
use std::path::Path;

/// Why rule files could not be loaded; nothing is applied when any file fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error(transparent)]
    Groups(#[from] crate::groups::GroupsError),
    #[error("{0}")]
    Conflict(String),
    #[error("building the classifier: {0}")]
    Classifier(String),
}

/// Builds the classifier for a compiled rule set.
pub type MakeClassifier<'a> = dyn Fn(&[FlatRule]) -> Result<Box<dyn Classifier>, String> + 'a;

/// The decision tree (the default; the linear scan is the reference).
pub fn tree_classifier(rules: &[FlatRule]) -> Result<Box<dyn Classifier>, String> {
    Ok(Box::new(Tree::new(rules)))
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Where the rules come from.
#[derive(Clone, Debug, Default)]
pub struct RuleFiles<'a> {
    pub rules: Option<&'a Path>,
    pub rules6: Option<&'a Path>,
    pub groups: Option<&'a Path>,
    /// ipset sets (`ipset save` output) for `-m set`.
    pub ipsets: Option<&'a Path>,
    /// Live sets (the daemon's, changed at run time) for `-m set` when `ipsets` is `None`.
    pub live_sets: Option<&'a std::sync::Arc<dataplane::classify::ipset::SetsCell>>,
    /// What the nat table is compiled for.
    pub nat: NatEnv<'a>,
}

/// What compiling the nat table needs besides the files.
#[derive(Clone, Debug, Default)]
pub struct NatEnv<'a> {
    /// Workers that split the NAT ports (at least 1).
    pub workers: u16,
    /// Port addresses MASQUERADE may use (replies to them are steered by port owner).
    pub masquerade: &'a [IpAddr128],
    /// Floating addresses from the configuration (placed before the files' rules).
    pub one_to_one: &'a [OneToOne],
    /// Router mode: the ports' addresses (`-m addrtype` LOCAL and directed BROADCAST).
    pub host: Option<&'a crate::rules::HostAddrs>,
}

/// [`NatEnv`] as the daemon keeps it between loads.
#[derive(Clone, Debug, Default)]
pub struct NatSettings {
    /// Bridge or router: which filter chains a rule file gives.
    pub mode: crate::config::Mode,
    pub masquerade: Vec<IpAddr128>,
    pub one_to_one: Vec<OneToOne>,
    /// Router mode: the ports' addresses.
    pub host: crate::rules::HostAddrs,
    /// Why a nat table cannot be used here (connection tracking off, no room for bindings):
    /// a rule set that translates is then refused with this message.
    pub refuse: Option<String>,
}

impl NatSettings {
    /// The settings of a configuration: its mode, the port addresses MASQUERADE may use, its
    /// 1:1 mappings, and whether connection tracking leaves room for NAT.
    pub fn of(cfg: &crate::config::Config) -> NatSettings {
        NatSettings {
            mode: cfg.mode,
            masquerade: cfg.port_addrs().iter().flatten().map(|a| a.addr).collect(),
            one_to_one: cfg.one_to_one(),
            host: crate::rules::HostAddrs {
                ports: if cfg.mode == crate::config::Mode::Router {
                    cfg.port_addrs()
                } else {
                    Vec::new()
                },
                routed: cfg.mode == crate::config::Mode::Router,
                bridge: match cfg.mode {
                    crate::config::Mode::Bridge => cfg.bridge.name.clone(),
                    crate::config::Mode::Router => None,
                },
                rpf: cfg.rp_fib(),
            },
            refuse: if !cfg.conntrack.enabled {
                Some("connection tracking is off ([conntrack] enabled = false)".into())
            } else if !cfg.conntrack.nat {
                Some("no room for NAT bindings ([conntrack] nat = false)".into())
            } else {
                None
            },
        }
    }

    /// The environment for compiling with `workers` workers.
    pub fn env(&self, workers: usize) -> NatEnv<'_> {
        NatEnv {
            workers: u16::try_from(workers).unwrap_or(u16::MAX),
            masquerade: &self.masquerade,
            one_to_one: &self.one_to_one,
            host: Some(&self.host),
        }
    }

    /// `Err` when `filter` translates and that is not possible here.
    pub fn check(&self, filter: &Filter) -> Result<(), String> {
        let mangles = filter.mangle_v4.is_some() || filter.mangle_v6.is_some();
        if let (true, Some(why)) = (mangles, &self.refuse) {
            // The mangle table is applied on the tracked path only.
            if why.starts_with("connection tracking is off") {
                return Err(format!("the mangle table's targets cannot be used: {why}"));
            }
        }
        match (&filter.nat, &self.refuse) {
            (Some(_), Some(why)) => Err(format!("the nat table cannot be used: {why}")),
            _ => Ok(()),
        }
    }
}

/// Whether the mangle table of iptables-save text `t` may have an effect (a rule with a target
/// Rampart applies there, or a DROP policy): such a file is compiled whole, not by the
/// incremental reloader. A table of ACCEPTs, RETURNs and jumps (firewalld's) says no.
pub fn mangle_may_apply(t: &str) -> bool {
    let mut in_mangle = false;
    for l in t.lines() {
        let l = l.trim();
        if l.starts_with('*') {
            in_mangle = l == "*mangle";
        } else if in_mangle {
            let mut w = l.split_whitespace();
            if l.starts_with(':') && w.nth(1) == Some("DROP") {
                return true;
            }
            let mut w = l.split_whitespace();
            while let Some(x) = w.next() {
                if x == "-j"
                    && matches!(
                        w.next(),
                        Some("DROP" | "MARK" | "TCPMSS" | "DSCP" | "TOS" | "TTL" | "HL")
                    )
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether a compiled nat table translates anything.
fn translates(n: &NatRules) -> bool {
    let any = |c: &dataplane::nat::NatChain| {
        (0..c.rule_set().rules.len()).any(|i| c.target_of(i) != dataplane::nat::rules::NO_NAT)
    };
    any(&n.prerouting) || any(&n.postrouting)
}

/// The nat tables of both families with the configured 1:1 mappings, or `None` when nothing
/// would be translated.
pub(crate) fn nat_tables(
    mut nat: [Option<NatRules>; 2],
    env: &NatEnv<'_>,
) -> Option<Box<NatTables>> {
    if !env.one_to_one.is_empty() {
        for (slot, family) in nat.iter_mut().zip([Family::V4, Family::V6]) {
            let n = slot.take().unwrap_or_else(|| NatRules::accept_all(family));
            *slot = Some(n.with_one_to_one(env.one_to_one));
        }
    }
    let [v4, v6] = nat.map(|n| n.filter(translates));
    if v4.is_none() && v6.is_none() {
        return None;
    }
    let workers = env.workers.max(1);
    let mut steering = Steering::new(workers);
    for n in v4.iter().chain(v6.iter()) {
        steering.extend(&n.steering(workers, env.masquerade));
    }
    Some(Box::new(NatTables { v4, v6, steering }))
}

/// Compiles every given file; a family with neither iptables rules nor groups is not filtered.
///
/// In router mode (`mode`), each iptables file's filter INPUT chain is compiled as well, into
/// `input_v4`/`input_v6`: it judges the packets addressed to Rampart itself. Security groups
/// describe traffic to and from their members, not to the gateway: with groups the INPUT rule
/// sets stay `None` (no filtering of traffic to Rampart, which answers echo requests only).
pub fn load_filter(
    files: &RuleFiles<'_>,
    ports: &[String],
    hook: Hook,
    mode: Mode,
    make: &MakeClassifier<'_>,
) -> Result<Filter, LoadError> {
    let with = |rs: RuleSet| -> Result<RuleSet, LoadError> {
        let c = make(&rs.rules).map_err(LoadError::Classifier)?;
        Ok(rs.with_classifier(c))
    };
    if files.groups.is_some() && (files.rules.is_some() || files.rules6.is_some()) {
        return Err(LoadError::Conflict(
            "security groups and iptables rules together are not supported yet: give one or the other".into(),
        ));
    }
    let mut filter = Filter::default();
    let mut errors = Vec::new();
    let mut nat: [Option<NatRules>; 2] = [None, None];
    let sets = match files.ipsets {
        Some(p) => Some(dataplane::classify::ipset::SetsCell::new(
            crate::rules::ipsets::parse_ipsets(&p.display().to_string(), &read(p)?)
                .map_err(LoadError::Rules)?,
        )),
        None => files.live_sets.cloned(),
    };
    for (path, family) in [(files.rules, Family::V4), (files.rules6, Family::V6)] {
        let Some(path) = path else { continue };
        let text = read(path)?;
        let compiled = crate::rules::parse_iptables_sets(
            &path.display().to_string(),
            &text,
            family,
            ports,
            files.nat.host.unwrap_or(&crate::rules::parse::NO_HOST),
            sets.as_ref(),
        )
        .and_then(|parsed| {
            let input = match mode {
                Mode::Router => Some(compile_parsed(&parsed, Hook::Input)?),
                Mode::Bridge => None,
            };
            Ok((
                compile_parsed(&parsed, hook)?,
                compile_raw(&parsed)?,
                input,
                compile_nat(&parsed)?,
                crate::rules::compile_mangle(&parsed, &with)?,
            ))
        });
        match compiled {
            Ok((mut rs, raw, input, n, mangle)) => {
                let raw = raw.map(&with).transpose()?;
                let input = input.map(&with).transpose()?;
                let mangle = mangle?.map(Box::new);
                // Mangle is judged per packet: no verdict is cached while it has effect.
                if mangle.is_some() {
                    rs.cacheable = false;
                }
                match family {
                    Family::V4 => filter.mangle_v4 = mangle,
                    Family::V6 => filter.mangle_v6 = mangle,
                }
                match family {
                    Family::V4 => {
                        (filter.v4, filter.raw_v4, filter.input_v4) = (Some(with(rs)?), raw, input)
                    }
                    Family::V6 => {
                        (filter.v6, filter.raw_v6, filter.input_v6) = (Some(with(rs)?), raw, input)
                    }
                }
                nat[usize::from(family == Family::V6)] = Some(n);
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Rules(errors));
    }
    filter.nat = nat_tables(nat, &files.nat);
    if let Some(path) = files.groups {
        let text = read(path)?;
        let name = path.display().to_string();
        filter.v4 = Some(with(compile_groups(&name, &text, Family::V4)?)?);
        filter.v6 = Some(with(compile_groups(&name, &text, Family::V6)?)?);
    }
    filter.note_conn_marks();
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::filter::{judge_rules, packet_meta, FilterVerdict};
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::parse_frame;

    const RULES: &str = "*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -j ACCEPT
COMMIT
";

    #[test]
    fn router_mode_compiles_the_input_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.v4");
        std::fs::write(&path, RULES).unwrap();
        let files = RuleFiles {
            rules: Some(&path),
            ..RuleFiles::default()
        };
        let ports = ["inside".to_string(), "outside".to_string()];
        let bridge = load_filter(
            &files,
            &ports,
            Hook::Forward,
            Mode::Bridge,
            &tree_classifier,
        )
        .unwrap();
        assert!(bridge.v4.is_some() && bridge.input_v4.is_none());
        let router = load_filter(
            &files,
            &ports,
            Hook::Forward,
            Mode::Router,
            &tree_classifier,
        )
        .unwrap();
        assert!(router.v4.is_some() && router.input_v6.is_none());
        let input = router.input_v4.as_ref().expect("INPUT compiled");
        let judge = |l4| {
            let f =
                FrameSpec::new(IpSpec::v4([10, 0, 0, 2].into(), [10, 0, 0, 1].into()), l4).build();
            let meta = packet_meta(&f, &parse_frame(&f).unwrap(), 0, 0).unwrap();
            judge_rules(input, &meta, &dataplane::classify::Wire::NONE, |_, _, _| {})
        };
        assert!(matches!(
            judge(L4Spec::icmp_echo(1, 1)),
            FilterVerdict::Accept { .. }
        ));
        assert!(matches!(
            judge(L4Spec::udp(1, 53, b"x")),
            FilterVerdict::Drop { .. }
        ));
        // FORWARD is the policy ACCEPT there.
        let f = FrameSpec::new(
            IpSpec::v4([10, 0, 0, 2].into(), [8, 8, 8, 8].into()),
            L4Spec::udp(1, 53, b"x"),
        )
        .build();
        let meta = packet_meta(&f, &parse_frame(&f).unwrap(), 0, 1).unwrap();
        assert!(matches!(
            judge_rules(
                router.v4.as_ref().unwrap(),
                &meta,
                &dataplane::classify::Wire::NONE,
                |_, _, _| {}
            ),
            FilterVerdict::Accept { .. }
        ));
        // Security groups: no INPUT chain.
        let groups = dir.path().join("groups.toml");
        std::fs::write(
            &groups,
            "[[group]]\nname = \"web\"\nmembers = [\"10.0.0.10\"]\n[[group.ingress]]\nprotocol = \"tcp\"\nports = \"80\"\n",
        )
        .unwrap();
        let sg = load_filter(
            &RuleFiles {
                groups: Some(&groups),
                ..RuleFiles::default()
            },
            &ports,
            Hook::Forward,
            Mode::Router,
            &tree_classifier,
        )
        .unwrap();
        assert!(sg.v4.is_some() && sg.input_v4.is_none() && sg.input_v6.is_none());
    }
}
