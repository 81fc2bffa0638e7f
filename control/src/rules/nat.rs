//! Compiling the `nat` table's PREROUTING and POSTROUTING chains into the dataplane's
//! [`NatRules`].
//!
//! Each chain is flattened exactly as the filter table's chains are ([`super::compile`]: user
//! chains inlined under their jumps, `RETURN` as a continue, `-g`, LOG non-terminal, the policy
//! as the final catch-all), with the nat table's meaning of the targets: SNAT, DNAT and
//! MASQUERADE translate and end the chain, ACCEPT ends it without translation, and so does the
//! policy (which must be ACCEPT). The first matching terminal rule decides, once per connection.
//!
//! The nat table's OUTPUT chain translates connections the host itself opens. Rampart opens
//! none: what it sends of its own (ARP and NDP answers, ICMP echo replies and errors, REJECT's
//! TCP resets) answers a packet that came in, and in Linux too such a packet is a reply or
//! RELATED to that packet's connection (or untracked, as NDP is), never a NEW connection
//! through nat OUTPUT. So OUTPUT's rules, translating or not (docker's `-A OUTPUT ! -d
//! 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER` into DNATs for published ports), load
//! and are never applied, as Linux would apply them to nothing Rampart sends. A chain reached
//! from both PREROUTING and OUTPUT is flattened under PREROUTING with PREROUTING's meaning.
//!
//! The nat INPUT chain translates the source of connections to the host's own sockets, which
//! would change what Rampart's own answers (pings) see; a rule there that translates (SNAT,
//! itself or in a chain it jumps to) is an error rather than being ignored. Rules there that
//! change nothing are accepted.

use super::ast::*;
use super::compile::{flatten, FlattenFor};
use super::parse::Ctx;
use super::RuleError;
use dataplane::classify::RuleSet;
use dataplane::nat::{NatChain, NatRules};

/// The nat table of `parsed` as dataplane chains (no translation when there is no nat table).
pub(crate) fn compile(ctx: &Ctx<'_>, parsed: &ParsedRules) -> Result<NatRules, Vec<RuleError>> {
    let table = parsed.table(TableKind::Nat);
    let mut errors = Vec::new();
    if let Some(t) = table {
        let translating = translating_chains(ctx, t);
        let translates = |rule: &Rule| match rule.target.as_ref().map(|s| &s.target) {
            Some(t) if t.translates() => true,
            Some(Target::Jump(name)) => t.chain_index(name).is_some_and(|c| translating[c]),
            _ => false,
        };
        if let Some(chain) = t.chain(HookPoint::Input.chain_name()) {
            for rule in chain.rules.iter().filter(|r| translates(r)) {
                errors.push(ctx.err(
                    rule.line,
                    rule.col,
                    "nat INPUT rules that translate are not supported: Rampart translates forwarded traffic only (PREROUTING, POSTROUTING; OUTPUT loads and applies to nothing Rampart sends)".to_string(),
                ));
            }
        }
    }
    let chain = |hook: HookPoint| -> Result<NatChain, RuleError> {
        let flat = flatten(ctx, table, hook, FlattenFor::Nat)?;
        let rules = RuleSet::new(ctx.family, flat.rules, flat.origins, flat.logs);
        NatChain::new(rules, flat.nat_of, flat.nat_targets).map_err(|e| {
            // The flattener builds consistent chains; this names the chain if it ever does not.
            ctx.err(
                table.map_or(0, |t| t.line),
                1,
                format!("internal error compiling nat {}: {e}", hook.chain_name()),
            )
        })
    };
    let pre = chain(HookPoint::Prerouting);
    let post = chain(HookPoint::Postrouting);
    match (pre, post) {
        (Ok(prerouting), Ok(postrouting)) if errors.is_empty() => Ok(NatRules {
            family: ctx.family,
            prerouting,
            postrouting,
        }),
        (pre, post) => {
            errors.extend(pre.err());
            errors.extend(post.err());
            Err(errors)
        }
    }
}

/// For each chain of the nat table `t`, whether it or a chain it jumps to (transitively) holds
/// a SNAT, DNAT or MASQUERADE rule.
fn translating_chains(ctx: &Ctx<'_>, t: &Table) -> Vec<bool> {
    let (g, _) = super::validate::jump_graph(ctx, t);
    let holds: Vec<bool> = t
        .chains
        .iter()
        .map(|c| {
            c.rules
                .iter()
                .any(|r| r.target.as_ref().is_some_and(|s| s.target.translates()))
        })
        .collect();
    (0..t.chains.len())
        .map(|start| {
            let mut seen = vec![false; t.chains.len()];
            let mut stack = vec![start];
            seen[start] = true;
            while let Some(c) = stack.pop() {
                if holds[c] {
                    return true;
                }
                for &(_, next) in &g.edges[c] {
                    if !seen[next] {
                        seen[next] = true;
                        stack.push(next);
                    }
                }
            }
            false
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::rules::{compile_nat, parse_iptables, RuleError};
    use dataplane::classify::{ct, PacketMeta};
    use dataplane::nat::rules::NatDecision;
    use dataplane::nat::{NatKind, NatRules, NatTarget};
    use dataplane::wire::{ip_proto, Family, FlowKey, IpAddr128};
    use std::net::Ipv4Addr;

    fn ports() -> Vec<String> {
        vec!["lan0".into(), "wan0".into(), "wan1".into()]
    }

    fn nat(text: &str, family: Family) -> Result<NatRules, Vec<RuleError>> {
        let parsed = parse_iptables("n.rules", text, family, &ports())?;
        compile_nat(&parsed)
    }

    fn errors(text: &str) -> Vec<String> {
        nat(text, Family::V4)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn a(s: &str) -> IpAddr128 {
        IpAddr128::from_std(s.parse().unwrap())
    }

    fn tcp(src: &str, sp: u16, dst: &str, dp: u16) -> FlowKey {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        FlowKey::new_v4(v4(src), v4(dst), ip_proto::TCP, sp, dp)
    }

    fn meta(key: FlowKey, in_port: u8, out_port: u8) -> PacketMeta {
        PacketMeta {
            key,
            in_port,
            out_port,
            ct_state: ct::NEW,
            tcp_flags: 0x02,
            later_fragment: false,
        }
    }

    fn pre(r: &NatRules, m: PacketMeta) -> Option<NatTarget> {
        match r.prerouting.decide(&m, |_, _, _| {}).0 {
            NatDecision::Translate(t) => Some(*t),
            NatDecision::Keep => None,
            NatDecision::Drop => panic!("nat never drops"),
        }
    }

    fn post(r: &NatRules, m: PacketMeta) -> Option<NatTarget> {
        match r.postrouting.decide(&m, |_, _, _| {}).0 {
            NatDecision::Translate(t) => Some(*t),
            NatDecision::Keep => None,
            NatDecision::Drop => panic!("nat never drops"),
        }
    }

    const GATEWAY: &str = "*nat\n\
        :PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        :publish - [0:0]\n\
        -A PREROUTING -i wan0 -j publish\n\
        -A publish -s 192.0.2.0/24 -j RETURN\n\
        -A publish -d 203.0.113.1 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8080\n\
        -A publish -d 203.0.113.1 -p udp --dport 53 -j DNAT --to-destination 10.0.0.6-10.0.0.7 --persistent\n\
        -A POSTROUTING -d 10.0.0.0/8 -j ACCEPT\n\
        -A POSTROUTING -o wan0 -s 10.0.0.0/8 -j MASQUERADE --random-fully\n\
        -A POSTROUTING -o wan1 -p tcp -j SNAT --to-source 198.51.100.1-198.51.100.4:1024-2047 --random\n\
        COMMIT\n";

    #[test]
    fn dnat_through_a_user_chain_with_return() {
        let r = nat(GATEWAY, Family::V4).unwrap();
        let t = pre(&r, meta(tcp("198.51.100.9", 5000, "203.0.113.1", 80), 1, 0)).unwrap();
        assert_eq!(t.kind, NatKind::Dnat);
        assert_eq!(t.range.addrs, Some((a("10.0.0.5"), a("10.0.0.5"))));
        assert_eq!(t.range.ports, Some((8080, 8080)));
        let origin = &r.prerouting.rule_set().origins[t.origin as usize];
        assert_eq!((origin.line, origin.label.as_str()), (9, "publish:2"));
        // RETURN for the trusted network: no DNAT.
        assert!(pre(&r, meta(tcp("192.0.2.9", 5000, "203.0.113.1", 80), 1, 0)).is_none());
        // Only from wan0.
        assert!(pre(&r, meta(tcp("198.51.100.9", 5000, "203.0.113.1", 80), 0, 0)).is_none());
        // Another port: nothing.
        assert!(pre(&r, meta(tcp("198.51.100.9", 5000, "203.0.113.1", 81), 1, 0)).is_none());
        let udp = FlowKey {
            proto: ip_proto::UDP,
            ..tcp("198.51.100.9", 5000, "203.0.113.1", 53)
        };
        let t = pre(&r, meta(udp, 1, 0)).unwrap();
        assert!(t.range.persistent);
        assert_eq!(t.range.addrs, Some((a("10.0.0.6"), a("10.0.0.7"))));
        assert_eq!(t.range.ports, None);
    }

    #[test]
    fn snat_masquerade_and_accept_as_no_nat() {
        let r = nat(GATEWAY, Family::V4).unwrap();
        let out = tcp("10.1.2.3", 40000, "8.8.8.8", 443);
        let t = post(&r, meta(out, 0, 1)).unwrap();
        assert_eq!(t.kind, NatKind::Masquerade);
        assert!(t.range.random_fully && t.range.addrs.is_none());
        let t = post(&r, meta(out, 0, 2)).unwrap();
        assert_eq!(t.kind, NatKind::Snat);
        assert_eq!(t.range.addrs, Some((a("198.51.100.1"), a("198.51.100.4"))));
        assert_eq!(t.range.ports, Some((1024, 2047)));
        assert!(t.range.random && !t.range.persistent);
        // ACCEPT first: inside-to-inside traffic is not translated (first match wins).
        assert!(post(&r, meta(tcp("10.1.2.3", 1, "10.0.0.5", 8080), 0, 1)).is_none());
        // Policy: nothing.
        assert!(post(&r, meta(tcp("172.16.0.1", 1, "8.8.8.8", 443), 0, 1)).is_none());
    }

    #[test]
    fn goto_log_and_hairpin_masquerade() {
        let text = "*nat\n:POSTROUTING ACCEPT [0:0]\n:PREROUTING ACCEPT [0:0]\n:hair - [0:0]\n\
            -A PREROUTING -d 203.0.113.1 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5\n\
            -A POSTROUTING -s 10.0.0.0/24 -g hair\n\
            -A POSTROUTING -j SNAT --to-source 203.0.113.1\n\
            -A hair -d 10.0.0.0/24 -j MASQUERADE\n\
            COMMIT\n";
        let r = nat(text, Family::V4).unwrap();
        // Inside client to inside server (after DNAT): masqueraded.
        let (d, _) = r.postrouting.decide(
            &meta(tcp("10.0.0.9", 1234, "10.0.0.5", 80), 0, 0),
            |_, _, _| {},
        );
        assert!(matches!(d, NatDecision::Translate(t) if t.kind == NatKind::Masquerade));
        // LOG is refused in the nat table (its records would not reach the log).
        let logged = text.replace(
            "-A hair -d",
            "-A hair -j LOG --log-prefix \"hairpin \"\n-A hair -d",
        );
        let e = nat(&logged, Family::V4).unwrap_err();
        assert!(e[0].message.contains("LOG in the nat table"), "{e:?}");
        // -g: falling off `hair` returns where POSTROUTING itself would, to the policy, so the
        // SNAT after the goto is skipped for inside sources.
        assert!(post(&r, meta(tcp("10.0.0.9", 1234, "8.8.8.8", 80), 0, 1)).is_none());
        let t = post(&r, meta(tcp("10.0.1.9", 1234, "8.8.8.8", 80), 0, 1)).unwrap();
        assert_eq!(t.kind, NatKind::Snat);
        let steering = r.steering(2, &[]);
        assert!(steering.is_published(&a("203.0.113.1"), ip_proto::TCP, 80));
        assert!(!steering.is_published(&a("203.0.113.1"), ip_proto::TCP, 81));
    }

    #[test]
    fn no_nat_table_translates_nothing() {
        let r = nat("*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n", Family::V4).unwrap();
        assert!(pre(&r, meta(tcp("1.1.1.1", 1, "2.2.2.2", 2), 0, 0)).is_none());
        assert!(post(&r, meta(tcp("1.1.1.1", 1, "2.2.2.2", 2), 0, 0)).is_none());
    }

    #[test]
    fn ipv6_nat() {
        let text = "*nat\n\
            -A PREROUTING -d 2001:db8::1 -p tcp --dport 443 -j DNAT --to-destination [fd00::5]:8443\n\
            -A POSTROUTING -s fd00::/64 -j SNAT --to-source 2001:db8::1-2001:db8::3\n\
            COMMIT\n";
        let r = nat(text, Family::V6).unwrap();
        let k = FlowKey::new_v6(
            "2001:db8:ff::9".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            ip_proto::TCP,
            999,
            443,
        );
        let t = pre(&r, meta(k, 0, 0)).unwrap();
        assert_eq!(t.range.addrs, Some((a("fd00::5"), a("fd00::5"))));
        assert_eq!(t.range.ports, Some((8443, 8443)));
        let out = FlowKey::new_v6(
            "fd00::7".parse().unwrap(),
            "2001:db8:ff::9".parse().unwrap(),
            ip_proto::UDP,
            5,
            53,
        );
        assert_eq!(post(&r, meta(out, 0, 1)).unwrap().kind, NatKind::Snat);
    }

    /// The library pieces together, as a worker will use them: rules decide, the allocator
    /// binds, steering agrees on both directions, packets are rewritten, and a time exceeded
    /// from a router beyond the gateway comes back to the client quoting what it sent.
    #[test]
    fn gateway_scenario_snat_dnat_and_time_exceeded() {
        use dataplane::conntrack::Dir;
        use dataplane::nat::steer::Steer;
        use dataplane::nat::{rewrite, Allocator, Binding};
        use dataplane::route::icmp::{build_error, decrement_ttl, RouterError, MAX_ERROR};
        use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
        use dataplane::wire::checksum;
        use dataplane::wire::parse_frame;
        use std::collections::HashSet;

        let text = "*nat\n\
            -A PREROUTING -i wan0 -d 203.0.113.1 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.5:8080\n\
            -A POSTROUTING -o wan0 -s 10.0.0.0/24 -j MASQUERADE\n\
            COMMIT\n";
        let rules = nat(text, Family::V4).unwrap();
        let wan_addr = a("203.0.113.1");
        let steering = rules.steering(2, &[wan_addr]);
        let mut replies: HashSet<FlowKey> = HashSet::new();
        let worker_of = |k: &FlowKey| match steering.steer(k) {
            Steer::Worker(w) => w,
            Steer::Flow(_) => 0,
        };
        let udp_frame = |k: &FlowKey, ttl: u8| {
            let mut ip = IpSpec::v4(k.src.to_v4().unwrap(), k.dst.to_v4().unwrap());
            if let IpSpec::V4 { ttl: t, .. } = &mut ip {
                *t = ttl;
            }
            FrameSpec::new(ip, L4Spec::udp(k.src_port, k.dst_port, b"query")).build()
        };

        // Outbound UDP from 10.0.0.2: masqueraded.
        let orig = FlowKey::new_v4(
            [10, 0, 0, 2].into(),
            [198, 51, 100, 53].into(),
            ip_proto::UDP,
            5353,
            53,
        );
        let w = worker_of(&orig);
        let mut alloc = Allocator::new(w, 7);
        assert!(pre(&rules, meta(orig, 0, 1)).is_none());
        let masq = post(&rules, meta(orig, 0, 1)).unwrap();
        let range = masq.resolve(Some(wan_addr)).unwrap();
        let b: Binding = alloc
            .bind(&orig, None, Some(&range), &steering, |k| {
                replies.contains(k)
            })
            .unwrap();
        replies.insert(b.reply);
        assert_eq!(b.translated_orig().src, wan_addr);
        assert_eq!(
            steering.steer(&b.reply),
            Steer::Worker(w),
            "replies come home"
        );

        // The client's packet with TTL 2 leaves with TTL 1, translated.
        let mut out = udp_frame(&orig, 2);
        let info = parse_frame(&out).unwrap();
        rewrite(&mut out, &info, Dir::Orig, &b).unwrap();
        decrement_ttl(&mut out, &info).unwrap();
        assert_eq!(out, udp_frame(&b.translated_orig(), 1));

        // The next router cannot forward it: time exceeded, to the gateway's address.
        let info = parse_frame(&out).unwrap();
        let mut err = [0u8; MAX_ERROR];
        let n = build_error(
            &out,
            &info,
            RouterError::TimeExceeded,
            a("198.51.100.1"),
            &mut err,
        )
        .unwrap();
        let mut err = err[..n].to_vec();
        let einfo = parse_frame(&err).unwrap();
        let quoted = FlowKey::new_v4(
            wan_addr.to_v4().unwrap(),
            [198, 51, 100, 53].into(),
            ip_proto::UDP,
            b.translated_orig().src_port,
            53,
        );
        assert_eq!(steering.steer_error(&quoted), Steer::Worker(w));
        rewrite(&mut err, &einfo, Dir::Reply, &b).unwrap();
        let back = parse_frame(&err).unwrap();
        assert_eq!(back.flow.unwrap().dst, orig.src, "to the client");
        let icmp = &err[34..];
        assert_eq!(checksum::checksum(icmp), 0, "outer ICMP checksum");
        assert_eq!(
            &icmp[8..],
            &udp_frame(&orig, 1)[14..],
            "quotes what the client sent"
        );

        // The server's answer is translated back.
        let mut answer = udp_frame(&b.reply, 60);
        let info = parse_frame(&answer).unwrap();
        rewrite(&mut answer, &info, Dir::Reply, &b).unwrap();
        assert_eq!(answer, udp_frame(&orig.reply(), 60));

        // Inbound TCP to the published port: DNAT, steered by the client on both sides.
        let inbound = tcp("198.51.100.9", 40000, "203.0.113.1", 80);
        let w2 = worker_of(&inbound);
        let dnat = pre(&rules, meta(inbound, 1, 0)).unwrap();
        let mut alloc2 = Allocator::new(w2, 7);
        let b2 = alloc2
            .bind(&inbound, Some(&dnat.range), None, &steering, |k| {
                replies.contains(k)
            })
            .unwrap();
        assert_eq!(
            b2.translated_orig(),
            tcp("198.51.100.9", 40000, "10.0.0.5", 8080)
        );
        assert_eq!(steering.steer(&b2.reply), Steer::Worker(w2));
    }

    #[test]
    fn unsupported_chains_and_policies_are_errors_with_positions() {
        let e = errors(
            "*nat\n:OUTPUT ACCEPT [0:0]\n:direct - [0:0]\n:svc - [0:0]\n:sep - [0:0]\n\
             -A OUTPUT -d 1.2.3.4 -j DNAT --to-destination 10.0.0.1\n\
             -A INPUT -j SNAT --to-source 10.0.0.1\n\
             -A OUTPUT -j direct\n-A OUTPUT -p tcp -j svc\n-A OUTPUT -j ACCEPT\n\
             -A svc -j sep\n-A sep -p tcp -j DNAT --to-destination 10.0.0.2:80\n\
             -A PREROUTING -j svc\nCOMMIT\n",
        );
        // OUTPUT translates what the host sends, none of which Rampart sends: it loads. INPUT's
        // SNAT would change what Rampart's own answers see: refused.
        assert_eq!(
            e,
            ["n.rules:7:1: nat INPUT rules that translate are not supported: Rampart translates forwarded traffic only (PREROUTING, POSTROUTING; OUTPUT loads and applies to nothing Rampart sends)"]
        );
        // Rules there that change nothing load (firewalld's OUTPUT_direct), and change nothing.
        let quiet =
            "*nat\n:direct - [0:0]\n-A OUTPUT -j direct\n-A INPUT -j ACCEPT\n-A direct -j RETURN\n\
                     -A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n";
        let parsed = parse_iptables("n.rules", quiet, Family::V4, &ports()).unwrap();
        compile_nat(&parsed).unwrap();
        let e = errors("*nat\n:POSTROUTING DROP [0:0]\nCOMMIT\n");
        assert_eq!(
            e,
            ["n.rules:2:1: policy DROP is not allowed in the nat table (POSTROUTING is not for filtering)"]
        );
        // Parse errors come through unchanged.
        let e = errors("*nat\n-A POSTROUTING -j SNAT\nCOMMIT\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("n.rules:2:"), "{e:?}");
    }

    /// docker's rules as `iptables-save` prints what dockerd installs for its bridge and one
    /// published port (made with iptables 1.8.9 in a scratch namespace): the nat DOCKER chain
    /// reached from PREROUTING and OUTPUT, `-i docker0` and `! -i docker0` in it, DNAT for the
    /// published port, MASQUERADE for the bridge's network and the hairpin.
    const DOCKER: &str = include_str!("../../../examples/iptables/docker.rules");

    #[test]
    fn docker_nat_loads_with_linux_meaning() {
        let ports = vec!["eth0".to_string(), "docker0".to_string()];
        let addr = |s: &str, len| dataplane::router::IfAddr::new(s.parse().unwrap(), len);
        let host = crate::rules::HostAddrs {
            ports: vec![vec![addr("203.0.113.1", 24)], vec![addr("172.17.0.1", 16)]],
            routed: true,
            bridge: None,
            rpf: None,
        };
        let parsed =
            crate::rules::parse_iptables_with("d.rules", DOCKER, Family::V4, &ports, &host)
                .unwrap();
        let r = compile_nat(&parsed).unwrap();
        crate::rules::compile_parsed(&parsed, crate::rules::Hook::Forward).unwrap();
        crate::rules::compile_parsed(&parsed, crate::rules::Hook::Input).unwrap();
        // From outside to the host's address: DNAT to the container.
        let t = pre(
            &r,
            meta(tcp("198.51.100.9", 5000, "203.0.113.1", 8080), 0, 0),
        )
        .unwrap();
        assert_eq!(t.kind, NatKind::Dnat);
        assert_eq!(t.range.addrs, Some((a("172.17.0.2"), a("172.17.0.2"))));
        // From the bridge: RETURN first (docker's userland proxy handles the hairpin).
        assert!(pre(&r, meta(tcp("172.17.0.3", 5000, "203.0.113.1", 8080), 1, 0)).is_none());
        // Not to a local address: untouched.
        assert!(pre(
            &r,
            meta(tcp("198.51.100.9", 5000, "198.51.100.1", 8080), 0, 0)
        )
        .is_none());
        // A container's connection out: masqueraded on eth0, not towards docker0.
        let out = post(&r, meta(tcp("172.17.0.2", 4000, "198.51.100.9", 443), 1, 0)).unwrap();
        assert_eq!(out.kind, NatKind::Masquerade);
        assert!(post(&r, meta(tcp("172.17.0.2", 4000, "172.17.0.3", 443), 1, 1)).is_none());
        // The hairpin: the container to itself through the published port.
        let hp = post(&r, meta(tcp("172.17.0.2", 4000, "172.17.0.2", 80), 1, 1)).unwrap();
        assert_eq!(hp.kind, NatKind::Masquerade);
    }

    /// libvirt's default network: its mangle CHECKSUM rule changes nothing, its nat chain
    /// masquerades the guests' traffic except to multicast and broadcast.
    #[test]
    fn libvirt_default_network_loads() {
        let text = include_str!("../../../examples/iptables/libvirt.rules");
        let ports = vec!["virbr0".to_string(), "eth0".to_string()];
        let parsed = crate::rules::parse_iptables("l.rules", text, Family::V4, &ports).unwrap();
        let r = compile_nat(&parsed).unwrap();
        crate::rules::compile_parsed(&parsed, crate::rules::Hook::Forward).unwrap();
        crate::rules::compile_parsed(&parsed, crate::rules::Hook::Input).unwrap();
        let out = post(
            &r,
            meta(tcp("192.168.122.5", 4000, "198.51.100.9", 443), 0, 1),
        )
        .unwrap();
        assert_eq!(out.kind, NatKind::Masquerade);
        assert!(post(&r, meta(tcp("192.168.122.5", 4000, "224.0.0.5", 443), 0, 1)).is_none());
        assert!(post(
            &r,
            meta(tcp("192.168.122.5", 4000, "192.168.122.7", 443), 0, 0)
        )
        .is_none());
    }

    #[test]
    fn in_interface_in_a_chain_output_reaches() {
        // Reached from OUTPUT only: `-i` loads (iptables refuses it in OUTPUT itself only).
        let text = "*nat\n:u - [0:0]\n-A OUTPUT -j u\n-A u -i lan0 -j DNAT --to-destination 10.0.0.1\nCOMMIT\n";
        nat(text, Family::V4).unwrap();
        let e = errors("*nat\n-A OUTPUT -i lan0 -j ACCEPT\nCOMMIT\n");
        assert_eq!(e, ["n.rules:2:11: can't use -i with OUTPUT"]);
        // `-o` in a chain PREROUTING reaches sees the empty name: never, and `!` always.
        let text = "*nat\n:u - [0:0]\n-A PREROUTING -j u\n\
                    -A u -o wan0 -p tcp -j DNAT --to-destination 10.0.0.1\n\
                    -A u ! -o wan0 -p udp -j DNAT --to-destination 10.0.0.2\nCOMMIT\n";
        let r = nat(text, Family::V4).unwrap();
        assert!(pre(&r, meta(tcp("192.0.2.1", 1, "192.0.2.2", 2), 0, 1)).is_none());
        let mut k = tcp("192.0.2.1", 1, "192.0.2.2", 2);
        k.proto = dataplane::wire::ip_proto::UDP;
        let t = pre(&r, meta(k, 0, 1)).unwrap();
        assert_eq!(t.range.addrs, Some((a("10.0.0.2"), a("10.0.0.2"))));
        // `-i` in a chain POSTROUTING reaches is the forwarded packet's input port, as Linux's
        // ip_output passes it.
        let text = "*nat\n:u - [0:0]\n-A POSTROUTING -j u\n-A u -i lan0 -j MASQUERADE\nCOMMIT\n";
        let r = nat(text, Family::V4).unwrap();
        assert!(post(&r, meta(tcp("10.0.0.1", 1, "192.0.2.2", 2), 0, 1)).is_some());
        assert!(post(&r, meta(tcp("10.0.0.1", 1, "192.0.2.2", 2), 1, 1)).is_none());
    }
}

/// Packet marks and `-m statistic` in the nat table: kube-proxy's shapes.
#[cfg(test)]
mod mark_tests {
    use crate::rules::{compile_nat, compile_parsed, parse_iptables, Hook};
    use dataplane::classify::walk::Marks;
    use dataplane::classify::{ct, Action, PacketMeta, Wire};
    use dataplane::nat::{NatChoice, NatKind, NatRules};
    use dataplane::wire::{ip_proto, Family, FlowKey, IpAddr128};
    use std::net::Ipv4Addr;

    fn ports() -> Vec<String> {
        vec!["lan0".into(), "wan0".into()]
    }

    fn meta(dport: u16) -> PacketMeta {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        PacketMeta {
            key: FlowKey::new_v4(
                v4("10.0.0.9"),
                v4("10.96.0.10"),
                ip_proto::TCP,
                40000,
                dport,
            ),
            in_port: 0,
            out_port: 1,
            ct_state: ct::NEW,
            tcp_flags: 0x02,
            later_fragment: false,
        }
    }

    /// The DNAT destination chosen (or None), and the mark after PREROUTING.
    fn pre(r: &NatRules, m: &PacketMeta) -> (Option<IpAddr128>, u32) {
        let mut mark = Marks::default();
        let c = r.prerouting.choose_marked(m, &mut mark);
        let to = match c {
            NatChoice::Translate(t, _) => t.range.addrs.map(|a| a.0),
            _ => None,
        };
        (to, mark.packet)
    }

    fn a(s: &str) -> IpAddr128 {
        IpAddr128::from_std(s.parse().unwrap())
    }

    const KUBE: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        :KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
        :KUBE-SVC-A - [0:0]\n:KUBE-SEP-1 - [0:0]\n:KUBE-SEP-2 - [0:0]\n:KUBE-SEP-3 - [0:0]\n\
        -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
        -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
        -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
        -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
        -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
        -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
        -A KUBE-SVC-A ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ\n\
        -A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1\n\
        -A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2\n\
        -A KUBE-SVC-A -j KUBE-SEP-3\n\
        -A KUBE-SEP-1 -s 10.244.1.1/32 -j KUBE-MARK-MASQ\n\
        -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.1:8080\n\
        -A KUBE-SEP-2 -s 10.244.1.2/32 -j KUBE-MARK-MASQ\n\
        -A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.1.2:8080\n\
        -A KUBE-SEP-3 -s 10.244.1.3/32 -j KUBE-MARK-MASQ\n\
        -A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.1.3:8080\n\
        COMMIT\n";

    #[test]
    fn kube_proxy_marks_choose_masquerade() {
        let parsed = parse_iptables("k.rules", KUBE, Family::V4, &ports()).unwrap();
        let r = compile_nat(&parsed).unwrap();
        // From outside the pod network: marked in PREROUTING, so POSTROUTING masquerades and
        // clears the bit (--set-xmark 0x4000/0x0 is --xor-mark).
        let m = meta(80);
        let (to, mark) = pre(&r, &m);
        assert!(to.is_some());
        assert_eq!(mark, 0x4000);
        let mut after = Marks::packet(mark);
        match r.postrouting.choose_marked(&m, &mut after) {
            NatChoice::Translate(t, _) => assert_eq!(t.kind, NatKind::Masquerade),
            other => panic!("{other:?}"),
        }
        assert_eq!(after.packet, 0);
        // Unmarked: RETURN, nothing translated.
        let mut zero = Marks::default();
        assert!(matches!(
            r.postrouting.choose_marked(&m, &mut zero),
            NatChoice::Keep
        ));
        // Not the service: no mark.
        assert_eq!(pre(&r, &meta(81)), (None, 0));
    }

    #[test]
    fn random_endpoints_by_kube_proxy_probabilities() {
        let parsed = parse_iptables("k.rules", KUBE, Family::V4, &ports()).unwrap();
        let r = compile_nat(&parsed).unwrap();
        let n = 30_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let (to, _) = pre(&r, &meta(80));
            let to = to.unwrap();
            let i = ["10.244.1.1", "10.244.1.2", "10.244.1.3"]
                .iter()
                .position(|e| a(e) == to)
                .unwrap();
            counts[i] += 1;
        }
        // Each a third: sd = sqrt(n/3 * 2/3) ~ 82; 6 sd. Ignoring the probabilities (or drawing
        // once per inlined rule rather than once at the jump) lands far outside.
        for c in counts {
            assert!((c as i64 - n as i64 / 3).abs() < 500, "{counts:?}");
        }
    }

    /// A draw on a jump is asked once, at the jump: every rule of the chain it enters sees the
    /// same answer (a MARK then a DNAT: never one without the other).
    #[test]
    fn a_draw_on_a_jump_is_asked_once() {
        let text = "*nat\n:sep - [0:0]\n\
            -A PREROUTING -m statistic --mode random --probability 0.5 -j sep\n\
            -A sep -j MARK --or-mark 0x1\n\
            -A sep -p tcp -j DNAT --to-destination 10.244.1.1:8080\nCOMMIT\n";
        let parsed = parse_iptables("k.rules", text, Family::V4, &ports()).unwrap();
        let r = compile_nat(&parsed).unwrap();
        let mut seen = [[0usize; 2]; 2];
        for _ in 0..4000 {
            let (to, mark) = pre(&r, &meta(80));
            seen[usize::from(to.is_some())][mark as usize] += 1;
        }
        assert_eq!((seen[0][1], seen[1][0]), (0, 0), "{seen:?}");
        assert!(seen[1][1] > 1700 && seen[0][0] > 1700, "{seen:?}");
    }

    #[test]
    fn nth_endpoints_in_turn() {
        let text = KUBE
            .replace(
                "-m statistic --mode random --probability 0.33333333349",
                "-m statistic --mode nth --every 3 --packet 0",
            )
            .replace(
                "-m statistic --mode random --probability 0.50000000000",
                "-m statistic --mode nth --every 2 --packet 0",
            );
        let parsed = parse_iptables("k.rules", &text, Family::V4, &ports()).unwrap();
        let r = compile_nat(&parsed).unwrap();
        let got: Vec<IpAddr128> = (0..6).map(|_| pre(&r, &meta(80)).0.unwrap()).collect();
        // The kernel's counters: the first rule takes packets 0, 3, ...; the second every other
        // packet that reaches it (the first of those: 1, then 4); the rest go on.
        let want = [
            "10.244.1.1",
            "10.244.1.2",
            "10.244.1.3",
            "10.244.1.1",
            "10.244.1.2",
            "10.244.1.3",
        ];
        assert_eq!(got, want.map(a));
    }

    /// kube-proxy's iptables mode as `iptables-save` prints it (made with iptables 1.8.9 in a
    /// scratch namespace from kube-proxy's rules for two services and a NodePort).
    #[test]
    fn kube_proxy_set_loads_and_chooses() {
        let text = include_str!("../../../examples/iptables/kube-proxy.rules");
        let ports = vec!["eth0".to_string(), "cni0".to_string()];
        let addr = |s: &str, len| dataplane::router::IfAddr::new(s.parse().unwrap(), len);
        let host = crate::rules::HostAddrs {
            ports: vec![vec![addr("203.0.113.1", 24)], vec![addr("10.244.1.1", 24)]],
            routed: true,
            bridge: None,
            rpf: None,
        };
        let parsed =
            crate::rules::parse_iptables_with("k.rules", text, Family::V4, &ports, &host).unwrap();
        let r = compile_nat(&parsed).unwrap();
        let fwd = compile_parsed(&parsed, Hook::Forward).unwrap();
        compile_parsed(&parsed, Hook::Input).unwrap();
        assert!(!fwd.cacheable);
        // The NodePort on the host's address: one of the three endpoints, marked.
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let mut m = meta(30080);
        m.key = FlowKey::new_v4(
            v4("198.51.100.7"),
            v4("203.0.113.1"),
            ip_proto::TCP,
            5555,
            30080,
        );
        let (to, mark) = pre(&r, &m);
        let eps = ["10.244.1.11", "10.244.1.12", "10.244.1.13"].map(a);
        assert!(
            eps.contains(&to.unwrap()) && mark == 0x4000,
            "{to:?} {mark:#x}"
        );
        // The filter accepts the marked first packet; unmarked and NEW, its policy (ACCEPT).
        let j = fwd.judge_marked(&m, &Wire::NONE, &mut Marks::packet(0x4000), |_, _, _| {});
        assert_eq!(j.action, Action::Accept);
        // The DNS ClusterIP from a pod: DNAT, no mark (the source is in the pod network).
        let mut dns = meta(53);
        dns.key = FlowKey::new_v4(v4("10.244.1.50"), v4("10.96.0.10"), ip_proto::UDP, 5353, 53);
        assert_eq!(pre(&r, &dns), (Some(a("10.244.0.5")), 0));
        // From outside the pod network: marked, then masqueraded in POSTROUTING.
        dns.key.src = a("192.0.2.1");
        let (_, mark) = pre(&r, &dns);
        assert_eq!(mark, 0x4000);
        let mut after = Marks::packet(mark);
        assert!(matches!(
            r.postrouting.choose_marked(&dns, &mut after),
            NatChoice::Translate(t, _) if t.kind == NatKind::Masquerade
        ));
    }

    #[test]
    fn filter_marks_and_refusals() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
            -A FORWARD -j MARK --or-mark 0x1\n\
            -A FORWARD -m mark --mark 0x1 -p udp -j ACCEPT\nCOMMIT\n";
        let parsed = parse_iptables("f.rules", text, Family::V4, &ports()).unwrap();
        let rs = compile_parsed(&parsed, Hook::Forward).unwrap();
        assert!(!rs.cacheable, "a verdict that reads the mark is not cached");
        let act = |m: &PacketMeta, mark: u32| {
            rs.judge_marked(m, &Wire::NONE, &mut Marks::packet(mark), |_, _, _| {})
                .action
        };
        assert_eq!(act(&meta(80), 0x4000), Action::Accept);
        assert_eq!(act(&meta(80), 0), Action::Drop);
        let mut udp = meta(53);
        udp.key.proto = ip_proto::UDP;
        // MARK --or-mark 0x1 then --mark 0x1 (mask all ones): only a packet arriving with 0.
        assert_eq!(act(&udp, 0), Action::Accept);
        assert_eq!(act(&udp, 0x100), Action::Drop);
        let err = |t: &str| {
            parse_iptables("e.rules", t, Family::V4, &ports())
                .unwrap_err()
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        let e = err("*raw\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n");
        assert!(
            e[0].contains("MARK in the raw table is not supported"),
            "{e:?}"
        );
        let e = err("*filter\n-A FORWARD -j MARK\nCOMMIT\n");
        assert!(e[0].contains("MARK needs one of"), "{e:?}");
        let e = err("*filter\n-A FORWARD -m mark -j ACCEPT\nCOMMIT\n");
        assert!(e[0].contains("-m mark needs --mark"), "{e:?}");
        let e = err("*filter\n-A FORWARD -m statistic --mode nth -j ACCEPT\nCOMMIT\n");
        assert!(e[0].contains("--mode nth needs --every"), "{e:?}");
        let e = err(
            "*filter\n-A FORWARD -m statistic --mode nth --every 2 --packet 2 -j ACCEPT\nCOMMIT\n",
        );
        assert!(e[0].contains("--packet must be below --every"), "{e:?}");
        let e = err(
            "*filter\n-A FORWARD -m statistic --mode random --probability 2 -j ACCEPT\nCOMMIT\n",
        );
        assert!(e[0].contains("invalid --probability"), "{e:?}");
        let e = err("*filter\n-A FORWARD -j CONNMARK --save-mark --mask 0xff --ctmask 1\nCOMMIT\n");
        assert!(
            e[0].contains("CONNMARK: --ctmask cannot be combined with --mask"),
            "{e:?}"
        );
        // Every spelling MARK takes loads.
        for op in [
            "--set-xmark 0x4000/0x4000",
            "--set-mark 0x1/0x3",
            "--and-mark 0xff",
            "--or-mark 0x4000",
            "--xor-mark 0x4000",
            "--set-mark 7",
        ] {
            let t = format!("*nat\n-A PREROUTING -j MARK {op}\nCOMMIT\n");
            parse_iptables("m.rules", &t, Family::V4, &ports()).unwrap();
        }
    }
}
