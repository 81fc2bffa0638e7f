//! Security groups (the cloud model), compiled into the same flat rule set as iptables input.
//!
//! A group has member addresses and ingress/egress rules. Semantics, per family:
//! - stateful: packets of established or related connections pass; INVALID ones are dropped;
//! - a packet from a member must be allowed by an egress rule of one of the member's groups
//!   (a group without egress rules allows all egress: default allow egress);
//! - a packet to a member must be allowed by an ingress rule of one of the member's groups
//!   (default deny ingress);
//! - traffic neither from nor to a member is not the groups' business and passes.
//!
//! Compiled as: `ESTABLISHED,RELATED -> ACCEPT`, `INVALID -> DROP`, then the egress section
//! (allow rules continue to the ingress section; then members -> DROP), then the ingress section
//! (allow rules -> ACCEPT; then members -> DROP), then a catch-all ACCEPT.

use crate::prefix::Prefix;
use dataplane::classify::{ct, Action, FlatRule, FragMatch, Origin, RuleSet};
use dataplane::wire::{ip_proto, Family, IpAddr128};
use serde::Deserialize;
use std::net::IpAddr;

/// A groups file error, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    #[serde(rename = "group", default)]
    groups: Vec<Group>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    ingress: Vec<SgRule>,
    #[serde(default)]
    egress: Vec<SgRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SgRule {
    /// tcp, udp, icmp, icmpv6, any, or a protocol number.
    #[serde(default = "any_proto")]
    protocol: String,
    /// `"80"`, `"8000-8080"` (TCP/UDP only).
    ports: Option<String>,
    /// ICMP/ICMPv6 type and optional code.
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    /// The other side as a prefix ...
    remote: Option<String>,
    /// ... or as the members of a group.
    remote_group: Option<String>,
}

fn any_proto() -> String {
    "any".into()
}

/// Parses and compiles a security groups file into a rule set for `family`.
pub fn compile_groups(file: &str, text: &str, family: Family) -> Result<RuleSet, GroupsError> {
    let parsed: GroupsFile = toml::from_str(text).map_err(|e| GroupsError::Parse {
        file: file.into(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })?;
    Compiler {
        file,
        family,
        groups: &parsed.groups,
        rules: Vec::new(),
        origins: Vec::new(),
    }
    .compile()
}

struct Compiler<'a> {
    file: &'a str,
    family: Family,
    groups: &'a [Group],
    rules: Vec<FlatRule>,
    origins: Vec<Origin>,
}

/// Protocol, port or type ranges of one security group rule.
struct L4 {
    proto: (u8, u8),
    dport: (u16, u16),
    l4: bool,
}

impl<'a> Compiler<'a> {
    fn invalid(&self, key: String, message: impl Into<String>) -> GroupsError {
        GroupsError::Invalid {
            file: self.file.into(),
            key,
            message: message.into(),
        }
    }

    fn origin(&mut self, label: String) -> u32 {
        self.origins.push(Origin {
            file: self.file.into(),
            line: 0,
            label,
        });
        (self.origins.len() - 1) as u32
    }

    fn members(&self, g: usize) -> Result<Vec<Prefix>, GroupsError> {
        let mut out = Vec::new();
        for (i, m) in self.groups[g].members.iter().enumerate() {
            let p: Prefix = m
                .parse()
                .map_err(|e: String| self.invalid(format!("group[{g}].members[{i}]"), e))?;
            if family_of(p.addr()) == self.family {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn l4(&self, key: &str, r: &SgRule) -> Result<L4, GroupsError> {
        let icmp = if self.family == Family::V4 {
            ip_proto::ICMP
        } else {
            ip_proto::ICMPV6
        };
        let proto = match r.protocol.to_ascii_lowercase().as_str() {
            "any" | "all" | "-1" => None,
            "tcp" => Some(ip_proto::TCP),
            "udp" => Some(ip_proto::UDP),
            "icmp" if self.family == Family::V4 => Some(ip_proto::ICMP),
            "icmpv6" | "ipv6-icmp" | "icmp" => Some(icmp),
            n => Some(n.parse::<u8>().map_err(|_| {
                self.invalid(
                    format!("{key}.protocol"),
                    format!("{n:?}: tcp, udp, icmp, icmpv6, any or a number"),
                )
            })?),
        };
        let mut out = L4 {
            proto: proto.map_or((0, 255), |p| (p, p)),
            dport: (0, u16::MAX),
            l4: false,
        };
        if let Some(ports) = &r.ports {
            if !matches!(proto, Some(ip_proto::TCP) | Some(ip_proto::UDP)) {
                return Err(self.invalid(format!("{key}.ports"), "ports need protocol tcp or udp"));
            }
            let bad = || {
                self.invalid(
                    format!("{key}.ports"),
                    format!("{ports:?}: a port or a range LOW-HIGH"),
                )
            };
            let (lo, hi) = match ports.split_once('-') {
                Some((a, b)) => (
                    a.trim().parse::<u16>().map_err(|_| bad())?,
                    b.trim().parse::<u16>().map_err(|_| bad())?,
                ),
                None => {
                    let p = ports.trim().parse::<u16>().map_err(|_| bad())?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(bad());
            }
            out.dport = (lo, hi);
            out.l4 = true;
        }
        if r.icmp_type.is_some() || r.icmp_code.is_some() {
            if proto != Some(icmp) {
                return Err(self.invalid(
                    format!("{key}.icmp_type"),
                    "icmp_type/icmp_code need protocol icmp (icmpv6 for IPv6)",
                ));
            }
            let Some(t) = r.icmp_type else {
                return Err(self.invalid(format!("{key}.icmp_code"), "icmp_code needs icmp_type"));
            };
            let t = u16::from(t) << 8;
            out.dport = match r.icmp_code {
                Some(c) => (t | u16::from(c), t | u16::from(c)),
                None => (t, t | 0xff),
            };
            out.l4 = true;
        }
        Ok(out)
    }

    fn remotes(&self, key: &str, r: &SgRule) -> Result<Vec<Prefix>, GroupsError> {
        match (&r.remote, &r.remote_group) {
            (Some(_), Some(_)) => {
                Err(self.invalid(key.into(), "give remote or remote_group, not both"))
            }
            (Some(p), None) => {
                let p: Prefix = p
                    .parse()
                    .map_err(|e: String| self.invalid(format!("{key}.remote"), e))?;
                Ok(if family_of(p.addr()) == self.family {
                    vec![p]
                } else {
                    Vec::new()
                })
            }
            (None, Some(g)) => {
                let idx = self
                    .groups
                    .iter()
                    .position(|x| &x.name == g)
                    .ok_or_else(|| {
                        self.invalid(
                            format!("{key}.remote_group"),
                            format!("no group named {g:?}"),
                        )
                    })?;
                self.members(idx)
            }
            (None, None) => Ok(vec![self.any_prefix()]),
        }
    }

    fn any_prefix(&self) -> Prefix {
        if self.family == Family::V4 {
            "0.0.0.0/0"
        } else {
            "::/0"
        }
        .parse()
        .expect("valid")
    }

    fn rule(&self, action: Action, origin: u32) -> FlatRule {
        FlatRule::any(self.family, action, origin)
    }

    fn compile(mut self) -> Result<RuleSet, GroupsError> {
        for (i, g) in self.groups.iter().enumerate() {
            if self.groups[..i].iter().any(|h| h.name == g.name) {
                return Err(self.invalid(
                    format!("group[{i}].name"),
                    format!("{:?} is used twice", g.name),
                ));
            }
        }
        let o = self.origin("stateful: established, related".into());
        self.rules.push(FlatRule {
            ct_states: ct::states(ct::ESTABLISHED | ct::RELATED),
            ..self.rule(Action::Accept, o)
        });
        let o = self.origin("stateful: invalid".into());
        self.rules.push(FlatRule {
            ct_states: ct::INVALID,
            ..self.rule(Action::Drop, o)
        });

        // Egress: allow rules continue to the ingress section (patched below).
        let mut continues = Vec::new();
        let mut all_members = Vec::new();
        for g in 0..self.groups.len() {
            let members = self.members(g)?;
            all_members.extend(members.iter().copied());
            let name = self.groups[g].name.clone();
            let egress = self.groups[g].egress.clone();
            if egress.is_empty() {
                let o = self.origin(format!("sg {name} egress default allow"));
                for m in &members {
                    continues.push(self.rules.len());
                    self.rules.push(FlatRule {
                        src: range(*m),
                        ..self.rule(Action::ContinueAt(0), o)
                    });
                }
            }
            for (j, r) in egress.iter().enumerate() {
                let key = format!("group[{g}].egress[{j}]");
                let l4 = self.l4(&key, r)?;
                let remotes = self.remotes(&key, r)?;
                let o = self.origin(format!("sg {name} egress {}", j + 1));
                for m in &members {
                    for rem in &remotes {
                        continues.push(self.rules.len());
                        self.rules.push(FlatRule {
                            src: range(*m),
                            dst: range(*rem),
                            proto: l4.proto,
                            dport: l4.dport,
                            frag: if l4.l4 {
                                FragMatch::NotLater
                            } else {
                                FragMatch::Any
                            },
                            ..self.rule(Action::ContinueAt(0), o)
                        });
                    }
                }
            }
        }
        let o = self.origin("sg egress default deny".into());
        for m in &all_members {
            self.rules.push(FlatRule {
                src: range(*m),
                ..self.rule(Action::Drop, o)
            });
        }
        let ingress_start = self.rules.len() as u32;
        for i in continues {
            self.rules[i].action = Action::ContinueAt(ingress_start);
        }

        for g in 0..self.groups.len() {
            let members = self.members(g)?;
            let name = self.groups[g].name.clone();
            let ingress = self.groups[g].ingress.clone();
            for (j, r) in ingress.iter().enumerate() {
                let key = format!("group[{g}].ingress[{j}]");
                let l4 = self.l4(&key, r)?;
                let remotes = self.remotes(&key, r)?;
                let o = self.origin(format!("sg {name} ingress {}", j + 1));
                for m in &members {
                    for rem in &remotes {
                        self.rules.push(FlatRule {
                            src: range(*rem),
                            dst: range(*m),
                            proto: l4.proto,
                            dport: l4.dport,
                            frag: if l4.l4 {
                                FragMatch::NotLater
                            } else {
                                FragMatch::Any
                            },
                            ..self.rule(Action::Accept, o)
                        });
                    }
                }
            }
        }
        let o = self.origin("sg ingress default deny".into());
        for m in &all_members {
            self.rules.push(FlatRule {
                dst: range(*m),
                ..self.rule(Action::Drop, o)
            });
        }
        let o = self.origin("not a group member".into());
        self.rules.push(self.rule(Action::Accept, o));
        Ok(RuleSet::new(
            self.family,
            self.rules,
            self.origins,
            Vec::new(),
        ))
    }
}

fn family_of(a: IpAddr) -> Family {
    if a.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    }
}

/// The inclusive address range of a prefix, as the flow key stores addresses.
pub fn range(p: Prefix) -> (IpAddr128, IpAddr128) {
    match p.addr() {
        IpAddr::V4(a) => {
            let lo = u32::from(a);
            let hi = lo | u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            (IpAddr128::from_v4(lo.into()), IpAddr128::from_v4(hi.into()))
        }
        IpAddr::V6(a) => {
            let lo = u128::from(a);
            let hi = lo | u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            (IpAddr128::from_v6(lo.into()), IpAddr128::from_v6(hi.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::classify::PacketMeta;
    use dataplane::wire::FlowKey;

    const SG: &str = r#"
[[group]]
name = "web"
members = ["10.0.1.10", "10.0.1.11", "fd00:1::10"]
[[group.ingress]]
protocol = "tcp"
ports = "80"
[[group.ingress]]
protocol = "tcp"
ports = "443"
remote = "192.0.2.0/24"
[[group.ingress]]
protocol = "icmp"
icmp_type = 8

[[group]]
name = "db"
members = ["10.0.2.20"]
[[group.ingress]]
protocol = "tcp"
ports = "5432"
remote_group = "web"
[[group.egress]]
protocol = "udp"
ports = "53"
"#;

    fn tcp(src: &str, dst: &str, dport: u16, state: u8) -> PacketMeta {
        PacketMeta {
            key: FlowKey::new_v4(
                src.parse().unwrap(),
                dst.parse().unwrap(),
                ip_proto::TCP,
                40000,
                dport,
            ),
            in_port: 0,
            out_port: 1,
            ct_state: state,
            tcp_flags: 0x02,
            later_fragment: false,
        }
    }

    fn verdict(rs: &RuleSet, p: &PacketMeta) -> Action {
        rs.evaluate(p, |_, _, _| {}).action
    }

    #[test]
    fn ingress_default_deny_egress_default_allow() {
        let rs = compile_groups("sg.toml", SG, Family::V4).unwrap();
        let new = ct::NEW;
        assert_eq!(
            verdict(&rs, &tcp("203.0.113.5", "10.0.1.10", 80, new)),
            Action::Accept
        );
        assert_eq!(
            verdict(&rs, &tcp("203.0.113.5", "10.0.1.10", 22, new)),
            Action::Drop
        );
        assert_eq!(
            verdict(&rs, &tcp("203.0.113.5", "10.0.1.11", 443, new)),
            Action::Drop,
            "443 only from 192.0.2.0/24"
        );
        assert_eq!(
            verdict(&rs, &tcp("192.0.2.9", "10.0.1.11", 443, new)),
            Action::Accept
        );
        // web may reach db on 5432 (remote group), others may not.
        assert_eq!(
            verdict(&rs, &tcp("10.0.1.10", "10.0.2.20", 5432, new)),
            Action::Accept
        );
        assert_eq!(
            verdict(&rs, &tcp("203.0.113.5", "10.0.2.20", 5432, new)),
            Action::Drop
        );
        // db's egress is restricted to DNS.
        assert_eq!(
            verdict(&rs, &tcp("10.0.2.20", "203.0.113.5", 80, new)),
            Action::Drop
        );
        // Replies of established connections pass.
        assert_eq!(
            verdict(&rs, &tcp("10.0.2.20", "10.0.1.10", 40000, ct::ESTABLISHED)),
            Action::Accept
        );
        // Not members: not filtered.
        assert_eq!(
            verdict(&rs, &tcp("203.0.113.5", "198.51.100.1", 22, new)),
            Action::Accept
        );
        let mut ping = tcp("203.0.113.5", "10.0.1.10", 0, new);
        ping.key = FlowKey::new_v4(
            "203.0.113.5".parse().unwrap(),
            "10.0.1.10".parse().unwrap(),
            ip_proto::ICMP,
            7,
            8 << 8,
        );
        assert_eq!(verdict(&rs, &ping), Action::Accept);
    }

    #[test]
    fn ipv6_members_are_compiled_into_the_v6_set() {
        let rs = compile_groups("sg.toml", SG, Family::V6).unwrap();
        let p = PacketMeta {
            key: FlowKey::new_v6(
                "2001:db8::1".parse().unwrap(),
                "fd00:1::10".parse().unwrap(),
                ip_proto::TCP,
                1,
                80,
            ),
            in_port: 0,
            out_port: 1,
            ct_state: ct::NEW,
            tcp_flags: 2,
            later_fragment: false,
        };
        assert_eq!(verdict(&rs, &p), Action::Accept);
        let mut q = p;
        q.key.dst_port = 81;
        assert_eq!(verdict(&rs, &q), Action::Drop);
    }

    #[test]
    fn errors_name_the_key() {
        let e = compile_groups(
            "sg.toml",
            &SG.replace("ports = \"5432\"", "ports = \"5432-1\""),
            Family::V4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("group[1].ingress[0].ports"), "{e}");
        let e = compile_groups(
            "sg.toml",
            &SG.replace("remote_group = \"web\"", "remote_group = \"nope\""),
            Family::V4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("remote_group") && e.contains("nope"), "{e}");
        let e = compile_groups(
            "sg.toml",
            &SG.replace("protocol = \"icmp\"", "protocol = \"tcp\""),
            Family::V4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("icmp_type"), "{e}");
        let e = compile_groups(
            "sg.toml",
            "[[group]]\nname = \"a\"\nmembers = [\"10.0.0.300\"]\n",
            Family::V4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("group[0].members[0]"), "{e}");
        let e = compile_groups(
            "sg.toml",
            "[[group]]\nname = \"a\"\nbogus = 1\n",
            Family::V4,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
