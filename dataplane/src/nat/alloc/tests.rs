use super::*;
use crate::nat::steer::Published;
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::Ipv4Addr;

fn a(x: [u8; 4]) -> IpAddr128 {
    IpAddr128::from_v4(Ipv4Addr::from(x))
}

fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> FlowKey {
    FlowKey::new_v4(src.into(), dst.into(), ip_proto::TCP, sp, dp)
}

const PUBLIC: [u8; 4] = [203, 0, 113, 1];

fn pool_steering(workers: u16) -> Steering {
    let mut s = Steering::new(workers);
    s.add_pool((a(PUBLIC), a(PUBLIC)));
    s
}

/// A conntrack stand-in: the set of reply tuples in use.
#[derive(Default)]
struct Table(HashSet<FlowKey>);

impl Table {
    fn bind(
        &mut self,
        al: &mut Allocator,
        orig: FlowKey,
        dnat: Option<&NatRange>,
        snat: Option<&NatRange>,
        s: &Steering,
    ) -> Result<Binding, NatError> {
        let b = al.bind(&orig, dnat, snat, s, |k| self.0.contains(k))?;
        assert!(self.0.insert(b.reply), "reply tuple unique");
        Ok(b)
    }
}

fn snat_to(addr: [u8; 4], ports: Option<(u16, u16)>) -> NatRange {
    NatRange {
        ports,
        ..NatRange::to_addr(a(addr))
    }
}

#[test]
fn snat_keeps_a_free_port_and_moves_a_taken_one() {
    let s = pool_steering(1);
    let mut al = Allocator::new(0, 1);
    let mut t = Table::default();
    let r = snat_to(PUBLIC, None);
    let b = t
        .bind(
            &mut al,
            tcp([10, 0, 0, 2], 40000, [198, 51, 100, 7], 80),
            None,
            Some(&r),
            &s,
        )
        .unwrap();
    assert_eq!(
        b.translated_orig(),
        tcp(PUBLIC, 40000, [198, 51, 100, 7], 80)
    );
    // Another client with the same port to the same server: the port must move (and stay in
    // the unprivileged class).
    let b2 = t
        .bind(
            &mut al,
            tcp([10, 0, 0, 3], 40000, [198, 51, 100, 7], 80),
            None,
            Some(&r),
            &s,
        )
        .unwrap();
    let p = b2.translated_orig().src_port;
    assert!(p != 40000 && p >= 1024, "{p}");
    // The same client port to another server may reuse 40000 (endpoint-dependent, as Linux).
    let b3 = t
        .bind(
            &mut al,
            tcp([10, 0, 0, 3], 40000, [198, 51, 100, 8], 80),
            None,
            Some(&r),
            &s,
        )
        .unwrap();
    assert_eq!(b3.translated_orig().src_port, 40000);
}

#[test]
fn privileged_ports_stay_in_their_class() {
    let s = pool_steering(1);
    let mut al = Allocator::new(0, 2);
    let mut t = Table::default();
    let r = snat_to(PUBLIC, None);
    for (port, lo, hi) in [(300u16, 1u16, 511u16), (700, 600, 1023)] {
        t.bind(
            &mut al,
            tcp([10, 0, 0, 2], port, [198, 51, 100, 7], 22),
            None,
            Some(&r),
            &s,
        )
        .unwrap();
        let b = t
            .bind(
                &mut al,
                tcp([10, 0, 0, 3], port, [198, 51, 100, 7], 22),
                None,
                Some(&r),
                &s,
            )
            .unwrap();
        let p = b.translated_orig().src_port;
        assert!((lo..=hi).contains(&p) && p != port, "{port} -> {p}");
    }
}

#[test]
fn tiny_range_exhausts_and_existing_bindings_stay() {
    let s = pool_steering(1);
    let mut al = Allocator::new(0, 3);
    let mut t = Table::default();
    let r = snat_to(PUBLIC, Some((5000, 5003)));
    let mut got = Vec::new();
    for i in 0..4u16 {
        let b = t
            .bind(
                &mut al,
                tcp([10, 0, 0, 2], 1000 + i, [198, 51, 100, 7], 53),
                None,
                Some(&r),
                &s,
            )
            .unwrap();
        got.push(b.translated_orig().src_port);
    }
    got.sort_unstable();
    assert_eq!(got, vec![5000, 5001, 5002, 5003]);
    let e = t.bind(
        &mut al,
        tcp([10, 0, 0, 2], 2000, [198, 51, 100, 7], 53),
        None,
        Some(&r),
        &s,
    );
    assert_eq!(e, Err(NatError::Exhausted));
    assert_eq!(t.0.len(), 4);
    // Another destination has its own reply tuples.
    assert!(t
        .bind(
            &mut al,
            tcp([10, 0, 0, 2], 2000, [198, 51, 100, 8], 53),
            None,
            Some(&r),
            &s
        )
        .is_ok());
}

#[test]
fn workers_allocate_disjoint_shares_that_steer_back() {
    let s = pool_steering(3);
    let r = snat_to(PUBLIC, Some((6000, 6029)));
    let mut t = Table::default();
    let mut per_worker = vec![HashSet::new(); 3];
    for w in 0..3u16 {
        let mut al = Allocator::new(w, 9);
        for i in 0..10u16 {
            let orig = tcp([10, 0, 0, 2], 1000 + i + 100 * w, [198, 51, 100, 7], 443);
            let b = t.bind(&mut al, orig, None, Some(&r), &s).unwrap();
            let p = b.translated_orig().src_port;
            assert_eq!(s.owner_of(&a(PUBLIC), p), w);
            assert_eq!(s.steer(&b.reply), crate::nat::steer::Steer::Worker(w));
            per_worker[usize::from(w)].insert(p);
        }
        // The share is exactly 10 ports: the 11th fails.
        let orig = tcp([10, 0, 0, 2], 5555 + w, [198, 51, 100, 7], 443);
        assert_eq!(
            t.bind(&mut al, orig, None, Some(&r), &s),
            Err(NatError::Exhausted)
        );
    }
    let all: HashSet<u16> = per_worker.iter().flatten().copied().collect();
    assert_eq!(all.len(), 30);
}

#[test]
fn address_ranges_hash_and_persistent_sticks() {
    let s = Steering::new(1);
    let mut al = Allocator::new(0, 4);
    let mut t = Table::default();
    let range = |persistent| NatRange {
        addrs: Some((a([203, 0, 113, 10]), a([203, 0, 113, 13]))),
        ports: None,
        random: false,
        random_fully: false,
        persistent,
    };
    let mut used = HashSet::new();
    for c in 0..64u8 {
        let b = t
            .bind(
                &mut al,
                tcp([10, 0, 1, c], 1000, [198, 51, 100, 7], 80),
                None,
                Some(&range(false)),
                &s,
            )
            .unwrap();
        let src = b.translated_orig().src;
        assert!(src >= a([203, 0, 113, 10]) && src <= a([203, 0, 113, 13]));
        used.insert(src);
    }
    assert_eq!(used.len(), 4, "sources spread over the range");
    let mut seen = HashSet::new();
    for d in 0..32u8 {
        let b = t
            .bind(
                &mut al,
                tcp([10, 0, 2, 1], 1000, [198, 51, 100, d], 80),
                None,
                Some(&range(true)),
                &s,
            )
            .unwrap();
        seen.insert(b.translated_orig().src);
    }
    assert_eq!(seen.len(), 1, "--persistent: one address per client");
}

#[test]
fn a_source_already_in_range_is_kept_at_either_end() {
    // Linux's `nf_nat_inet_in_range`: a source inside the range (its ends included) is kept
    // whatever address the hash would pick; one just outside is moved into it.
    let s = Steering::new(1);
    let mut al = Allocator::new(0, 4);
    let v4 = |x: u8| a([203, 0, 113, x]);
    let v6 = |x: u8| IpAddr128::from_v6(format!("2001:db8::{x:x}").parse().unwrap());
    for (addr, family) in [
        (&v4 as &dyn Fn(u8) -> IpAddr128, Family::V4),
        (&v6, Family::V6),
    ] {
        let range = NatRange {
            addrs: Some((addr(10), addr(13))),
            ports: None,
            random: false,
            random_fully: false,
            persistent: false,
        };
        let key = |src: IpAddr128, d: u8| FlowKey {
            src,
            dst: match family {
                Family::V4 => a([198, 51, 100, d]),
                Family::V6 => IpAddr128::from_v6(format!("2001:db8:1::{d:x}").parse().unwrap()),
            },
            ..FlowKey::new_v4([0; 4].into(), [0; 4].into(), ip_proto::TCP, 1000, 80)
        };
        let key = |src, d| FlowKey {
            family,
            ..key(src, d)
        };
        for x in [10, 11, 13] {
            for d in 0..16 {
                let orig = key(addr(x), d);
                let b = al.bind(&orig, None, Some(&range), &s, |_| false).unwrap();
                assert_eq!(b.translated_orig(), orig, "{family:?} .{x} kept");
                let mut b = Binding::identity(orig);
                let step = al.apply_in_place(&mut b, Manip::Src, &range, &s, &mut |_| false);
                assert_eq!(step, Ok((true, false)), "{family:?} .{x}: unchanged");
            }
        }
        let mut picked = HashSet::new();
        for x in [9, 14] {
            for d in 0..16 {
                let orig = key(addr(x), d);
                let b = al.bind(&orig, None, Some(&range), &s, |_| false).unwrap();
                let src = b.translated_orig().src;
                assert!(
                    src >= addr(10) && src <= addr(13),
                    "{family:?} .{x} moved in"
                );
                picked.insert(src);
            }
        }
        assert_eq!(picked.len(), 4, "{family:?}: spread over the range");
    }
}

#[test]
fn empty_and_foreign_ranges_fail_with_family() {
    let s = Steering::new(1);
    let mut al = Allocator::new(0, 4);
    let orig = tcp([10, 0, 0, 2], 1000, [198, 51, 100, 7], 80);
    let range = |lo, hi| NatRange {
        addrs: Some((lo, hi)),
        ports: None,
        random: false,
        random_fully: false,
        persistent: false,
    };
    let v6 = IpAddr128::from_v6("2001:db8::1".parse().unwrap());
    for r in [
        range(a([203, 0, 113, 2]), a([203, 0, 113, 1])),
        range(a([203, 0, 113, 1]), v6),
        range(v6, v6),
    ] {
        assert_eq!(r.prepare(Family::V4).addrs, Addrs::Wrong);
        assert_eq!(
            al.bind(&orig, None, Some(&r), &s, |_| false),
            Err(NatError::Family)
        );
    }
    let r = range(a([203, 0, 113, 1]), a([203, 0, 113, 2]));
    assert_eq!(r.prepare(Family::V6).addrs, Addrs::Wrong);
    assert_eq!(
        r.prepare(Family::V4).addrs,
        Addrs::V4(0xcb00_7101, 0xcb00_7102)
    );
    // MASQUERADE's address, of the family or not.
    let m = NatRange { addrs: None, ..r }.prepare(Family::V4);
    assert_eq!(m.addrs, Addrs::Keep);
    assert_eq!(m.to_addr(v6, Family::V4).addrs, Addrs::Wrong);
    assert_eq!(
        m.to_addr(a([203, 0, 113, 1]), Family::V4).addrs,
        Addrs::V4(0xcb00_7101, 0xcb00_7101)
    );
}

#[test]
fn random_moves_ports_even_when_free() {
    let s = pool_steering(1);
    let mut al = Allocator::new(0, 5);
    let mut t = Table::default();
    for fully in [false, true] {
        let r = NatRange {
            random: !fully,
            random_fully: fully,
            ..snat_to(PUBLIC, None)
        };
        let kept = (0..50u16)
            .filter(|i| {
                let orig = tcp(
                    [10, 0, 3, 1],
                    30000 + i,
                    [198, 51, 100, 7],
                    u16::from(fully),
                );
                let b = t.bind(&mut al, orig, None, Some(&r), &s).unwrap();
                b.translated_orig().src_port == orig.src_port
            })
            .count();
        assert!(kept < 5, "random ports are rarely the original ({kept}/50)");
    }
}

#[test]
fn dnat_keeps_ports_or_takes_the_range_start_and_clashes_without_ports() {
    let mut s = Steering::new(1);
    s.add_target((a([10, 0, 0, 9]), a([10, 0, 0, 9])));
    let mut al = Allocator::new(0, 6);
    let mut t = Table::default();
    let to = NatRange::to_addr(a([10, 0, 0, 9]));
    let orig = tcp([198, 51, 100, 7], 5000, PUBLIC, 80);
    let b = t.bind(&mut al, orig, Some(&to), None, &s).unwrap();
    assert_eq!(
        b.translated_orig(),
        tcp([198, 51, 100, 7], 5000, [10, 0, 0, 9], 80)
    );
    let ranged = NatRange {
        ports: Some((8080, 8081)),
        ..to
    };
    let orig2 = tcp([198, 51, 100, 7], 5001, PUBLIC, 80);
    let b2 = t.bind(&mut al, orig2, Some(&ranged), None, &s).unwrap();
    assert_eq!(b2.translated_orig().dst_port, 8080);
    // Two public addresses DNAT'd onto one server from the same client port: a clash.
    let orig3 = tcp([198, 51, 100, 7], 5000, [203, 0, 113, 2], 80);
    assert_eq!(
        t.bind(&mut al, orig3, Some(&to), None, &s),
        Err(NatError::Clash)
    );
}

#[test]
fn hairpin_binds_dnat_then_snat() {
    let mut s = pool_steering(2);
    s.add_published(Published {
        addrs: (a(PUBLIC), a(PUBLIC)),
        protos: (ip_proto::TCP, ip_proto::TCP),
        ports: (80, 80),
    });
    s.add_target((a([10, 0, 0, 9]), a([10, 0, 0, 9])));
    let orig = tcp([10, 0, 0, 2], 40000, PUBLIC, 80);
    let crate::nat::steer::Steer::Worker(w) = s.steer(&orig) else {
        panic!("published endpoint is steered by owner")
    };
    let mut al = Allocator::new(w, 7);
    let mut t = Table::default();
    let b = t
        .bind(
            &mut al,
            orig,
            Some(&NatRange::to_addr(a([10, 0, 0, 9]))),
            Some(&snat_to(PUBLIC, None)),
            &s,
        )
        .unwrap();
    let tr = b.translated_orig();
    assert_eq!(
        (tr.src, tr.dst, tr.dst_port),
        (a(PUBLIC), a([10, 0, 0, 9]), 80)
    );
    assert_eq!(s.steer(&b.reply), crate::nat::steer::Steer::Worker(w));
    assert_ne!(tr.src_port, 80, "a published port is never allocated");
}

#[test]
fn one_to_one_keeps_ports_on_every_worker() {
    let mut s = Steering::new(4);
    s.add_published(Published {
        addrs: (a(PUBLIC), a(PUBLIC)),
        protos: (0, 255),
        ports: (0, u16::MAX),
    });
    s.add_target((a([10, 0, 0, 9]), a([10, 0, 0, 9])));
    let mut t = Table::default();
    for sp in 1000..1010u16 {
        let orig = tcp([10, 0, 0, 9], sp, [198, 51, 100, 7], 443);
        let crate::nat::steer::Steer::Worker(w) = s.steer(&orig) else {
            panic!()
        };
        let mut al = Allocator::new(w, 8);
        let b = t
            .bind(&mut al, orig, None, Some(&snat_to(PUBLIC, None)), &s)
            .unwrap();
        assert_eq!(b.translated_orig().src_port, sp);
    }
}

#[test]
fn unregistered_pools_are_refused_with_several_workers() {
    let orig = tcp([10, 0, 0, 2], 40000, [198, 51, 100, 7], 80);
    let r = snat_to(PUBLIC, None);
    let mut al = Allocator::new(0, 1);
    assert_eq!(
        al.bind(&orig, None, Some(&r), &Steering::new(2), |_| false),
        Err(NatError::Unsteerable)
    );
    assert!(al
        .bind(&orig, None, Some(&r), &Steering::new(1), |_| false)
        .is_ok());
    assert!(
        al.bind(&orig, None, None, &Steering::new(2), |_| false)
            .is_ok(),
        "no NAT"
    );
    assert_eq!(NatError::Unsteerable.index(), 3);
    assert_eq!(NatError::Exhausted.name(), "nat_exhausted");
}

#[test]
fn hairpin_between_one_to_one_servers() {
    // 10.0.0.8 <-> 203.0.113.8 and 10.0.0.9 <-> 203.0.113.9; 10.0.0.8 connects to 203.0.113.9.
    let mut s = Steering::new(3);
    for (p, q) in [
        ([203, 0, 113, 8], [10, 0, 0, 8]),
        ([203, 0, 113, 9], [10, 0, 0, 9]),
    ] {
        s.add_published(Published {
            addrs: (a(p), a(p)),
            protos: (0, 255),
            ports: (0, u16::MAX),
        });
        s.add_target((a(q), a(q)));
    }
    let mut t = Table::default();
    for sp in 1000..1012u16 {
        let orig = tcp([10, 0, 0, 8], sp, [203, 0, 113, 9], 443);
        let crate::nat::steer::Steer::Worker(w) = s.steer(&orig) else {
            panic!()
        };
        let mut al = Allocator::new(w, 3);
        let b = t
            .bind(
                &mut al,
                orig,
                Some(&NatRange::to_addr(a([10, 0, 0, 9]))),
                Some(&snat_to([203, 0, 113, 8], None)),
                &s,
            )
            .unwrap();
        assert_eq!(
            b.translated_orig(),
            tcp([203, 0, 113, 8], sp, [10, 0, 0, 9], 443)
        );
        assert_eq!(s.steer(&b.reply), crate::nat::steer::Steer::Worker(w));
    }
    // The same client port again to the same server: the port must move, and only to ports
    // whose pair with 443 belongs to the worker.
    let orig = tcp([10, 0, 0, 8], 1000, [203, 0, 113, 9], 443);
    let other = FlowKey {
        src: a([10, 0, 0, 7]),
        ..orig
    };
    let mut s2 = s.clone();
    s2.add_target((a([10, 0, 0, 7]), a([10, 0, 0, 7])));
    let crate::nat::steer::Steer::Worker(w) = s2.steer(&other) else {
        panic!()
    };
    let mut al = Allocator::new(w, 3);
    let b = t
        .bind(
            &mut al,
            other,
            Some(&NatRange::to_addr(a([10, 0, 0, 9]))),
            Some(&snat_to([203, 0, 113, 8], None)),
            &s2,
        )
        .unwrap();
    assert_ne!(b.translated_orig().src_port, 1000);
    assert_eq!(s2.steer(&b.reply), crate::nat::steer::Steer::Worker(w));
}

#[test]
fn icmp_identifiers_and_family_errors() {
    let s = pool_steering(1);
    let mut al = Allocator::new(0, 9);
    let mut t = Table::default();
    let ping = |src: [u8; 4]| {
        FlowKey::new_v4(
            src.into(),
            [198, 51, 100, 7].into(),
            ip_proto::ICMP,
            77,
            0x0800,
        )
    };
    let r = snat_to(PUBLIC, None);
    let b1 = t
        .bind(&mut al, ping([10, 0, 0, 2]), None, Some(&r), &s)
        .unwrap();
    let b2 = t
        .bind(&mut al, ping([10, 0, 0, 3]), None, Some(&r), &s)
        .unwrap();
    assert_eq!(b1.translated_orig().src_port, 77);
    assert_ne!(b2.translated_orig().src_port, 77);
    assert_eq!(
        b2.translated_orig().dst_port,
        0x0800,
        "type and code untouched"
    );
    let v6 = NatRange::to_addr(IpAddr128::from_v6("2001:db8::1".parse().unwrap()));
    assert_eq!(
        al.bind(&ping([10, 0, 0, 4]), None, Some(&v6), &s, |_| false),
        Err(NatError::Family)
    );
    // No ports (GRE): the address alone, and a clash is exhaustion.
    let gre = FlowKey::new_v4([10, 0, 0, 2].into(), [198, 51, 100, 7].into(), 47, 0, 0);
    t.bind(&mut al, gre, None, Some(&r), &s).unwrap();
    let gre2 = FlowKey {
        src: a([10, 0, 0, 3]),
        ..gre
    };
    assert_eq!(
        t.bind(&mut al, gre2, None, Some(&r), &s),
        Err(NatError::Exhausted)
    );
}

proptest! {
    #[test]
    fn ipv4_addresses_are_picked_in_range_and_kept_in_it(
        ends in any::<(u32, u32)>(),
        full in any::<bool>(),
        src in any::<u32>(),
        dst in any::<u32>(),
        persistent in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (lo, hi) = if full { (0, u32::MAX) } else { (ends.0.min(ends.1), ends.0.max(ends.1)) };
        let r = NatRange {
            addrs: Some((a(lo.to_be_bytes()), a(hi.to_be_bytes()))),
            ports: None,
            random: false,
            random_fully: false,
            persistent,
        };
        let s = Steering::new(1);
        let mut al = Allocator::new(0, seed);
        let orig = tcp(src.to_be_bytes(), 1000, dst.to_be_bytes(), 80);
        let b = al.bind(&orig, None, Some(&r), &s, |_| false).unwrap();
        let t = b.translated_orig();
        let got = u32::from_be_bytes(t.src.to_v4().expect("IPv4").octets());
        prop_assert!((lo..=hi).contains(&got), "{} not in {}..={}", got, lo, hi);
        prop_assert!(t.src.is_v4());
        if (lo..=hi).contains(&src) {
            prop_assert_eq!(t, orig);
        }
        // The same client and server always get the same address.
        let again = al.bind(&orig, None, Some(&r), &s, |_| false).unwrap();
        prop_assert_eq!(again, b);
    }

    #[test]
    fn every_binding_is_unique_in_range_and_steers_home(
        workers in 1u16..5,
        lo in 1024u16..60000,
        len in 1u16..200,
        conns in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<u8>(), any::<bool>()), 1..120),
    ) {
        let hi = lo.saturating_add(len);
        let s = pool_steering(workers);
        let r = snat_to(PUBLIC, Some((lo, hi)));
        let mut t = Table::default();
        let mut als: Vec<Allocator> = (0..workers).map(|w| Allocator::new(w, 11)).collect();
        for (c, sp, d, same_dst) in conns {
            let dst = if same_dst { [198, 51, 100, 7] } else { [198, 51, 100, d] };
            let orig = tcp([10, 0, 0, c], sp, dst, 443);
            let w = usize::from(c) % usize::from(workers);
            match t.bind(&mut als[w], orig, None, Some(&r), &s) {
                Ok(b) => {
                    let tr = b.translated_orig();
                    prop_assert_eq!(tr.src, a(PUBLIC));
                    prop_assert!((lo..=hi).contains(&tr.src_port));
                    prop_assert_eq!((tr.dst, tr.dst_port), (orig.dst, orig.dst_port));
                    prop_assert_eq!(s.owner_of(&tr.src, tr.src_port), w as u16);
                }
                Err(e) => {
                    prop_assert_eq!(e, NatError::Exhausted);
                    // With a share small enough for a full search, it really is full.
                    let share: Vec<u16> = (lo..=hi).filter(|&p| s.owner_of(&a(PUBLIC), p) == w as u16).collect();
                    if share.len() <= 128 {
                        for p in share {
                            let t2 = FlowKey { src: a(PUBLIC), src_port: p, ..orig };
                            prop_assert!(t.0.contains(&t2.reply()), "port {} was free", p);
                        }
                    }
                }
            }
        }
    }
}

/// NETMAP's prefix as a prepared range: `base/len` of IPv4 addresses.
fn netmap_v4(base: [u8; 4], len: u32) -> Prepared {
    let lo = u32::from_be_bytes(base) & !(u32::MAX.checked_shr(len).unwrap_or(0));
    let hi = lo | u32::MAX.checked_shr(len).unwrap_or(0);
    NatRange {
        addrs: Some((
            IpAddr128::from_v4_octets(lo.to_be_bytes()),
            IpAddr128::from_v4_octets(hi.to_be_bytes()),
        )),
        ..NatRange::to_addr(a(base))
    }
    .prepare(Family::V4)
}

#[test]
fn netmap_keeps_the_host_bits_under_the_new_prefix() {
    let one = |x: [u8; 4]| {
        let v = u32::from_be_bytes(x);
        Addrs::V4(v, v)
    };
    let from = a([192, 168, 37, 201]);
    for (base, len, want) in [
        ([10, 9, 0, 0], 24, [10, 9, 0, 201]),
        ([10, 9, 0, 0], 16, [10, 9, 37, 201]),
        ([10, 9, 8, 7], 8, [10, 168, 37, 201]),
        ([10, 9, 8, 0], 30, [10, 9, 8, 1]),
        ([10, 9, 8, 7], 32, [10, 9, 8, 7]),
        ([10, 9, 8, 7], 0, [192, 168, 37, 201]),
        ([10, 9, 8, 128], 25, [10, 9, 8, 201]),
    ] {
        assert_eq!(
            netmap_v4(base, len).netmap(&from).addrs,
            one(want),
            "{base:?}/{len}"
        );
    }
    // IPv6: a /64 keeps the interface identifier, a /128 is one address, /0 keeps it all.
    let v6 = |s: &str| IpAddr128::from_std(s.parse().unwrap());
    let from = v6("fd00:1:2:3:a:b:c:d");
    for (lo, hi, want) in [
        (
            "2001:db8:5::",
            "2001:db8:5::ffff:ffff:ffff:ffff",
            "2001:db8:5:0:a:b:c:d",
        ),
        ("2001:db8::9", "2001:db8::9", "2001:db8::9"),
        (
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fd00:1:2:3:a:b:c:d",
        ),
        (
            "2001:db8::",
            "2001:db8:0:ffff:ffff:ffff:ffff:ffff",
            "2001:db8:0:3:a:b:c:d",
        ),
    ] {
        let r = NatRange {
            addrs: Some((v6(lo), v6(hi))),
            ..NatRange::to_addr(v6(lo))
        }
        .prepare(Family::V6);
        let w = u128::from_be_bytes(v6(want).0);
        assert_eq!(r.netmap(&from).addrs, Addrs::V6(w, w), "{lo}-{hi}");
    }
    // A range of the other family stays wrong: the connection fails as `Family`.
    let wrong = NatRange::to_addr(a([10, 0, 0, 0])).prepare(Family::V6);
    assert_eq!(wrong.netmap(&from).addrs, Addrs::Wrong);
}

#[test]
fn netmap_binds_as_a_translation_to_one_address() {
    // Source (POSTROUTING): the port kept when free, moved in its class on a clash, as SNAT
    // to one address; destination (PREROUTING): the port kept, a clash refused, as DNAT.
    let s = Steering::new(1);
    let mut al = Allocator::new(0, 7);
    let mut used = HashSet::new();
    let r = netmap_v4([198, 18, 0, 0], 24);
    for (client, want_port) in [([10, 0, 0, 5], Some(40000)), ([10, 0, 0, 5], None)] {
        let k = tcp(client, 40000, [203, 0, 113, 9], 80);
        // The second one, from another client that maps to the same address and port, clashes.
        let k = if want_port.is_none() {
            FlowKey {
                src: a([10, 7, 7, 5]),
                ..k
            }
        } else {
            k
        };
        let mut b = Binding::identity(k);
        let mapped = r.netmap(&k.src);
        al.apply_prepared(&mut b, Manip::Src, &mapped, &s, &mut |x| used.contains(x))
            .unwrap();
        assert!(used.insert(b.reply));
        let t = b.translated_orig();
        assert_eq!(t.src, a([198, 18, 0, 5]));
        match want_port {
            Some(p) => assert_eq!(t.src_port, p),
            None => assert!(t.src_port >= 1024 && t.src_port != 40000),
        }
    }
    let k = tcp([203, 0, 113, 9], 5555, [198, 19, 0, 77], 22);
    let r = netmap_v4([10, 1, 0, 0], 16);
    let mut b = Binding::identity(k);
    al.apply_prepared(&mut b, Manip::Dst, &r.netmap(&k.dst), &s, &mut |x| {
        used.contains(x)
    })
    .unwrap();
    assert_eq!(
        (b.translated_orig().dst, b.translated_orig().dst_port),
        (a([10, 1, 0, 77]), 22)
    );
    used.insert(b.reply);
    let again = tcp([203, 0, 113, 9], 5555, [198, 20, 0, 77], 22);
    let mut b2 = Binding::identity(again);
    assert_eq!(
        al.apply_prepared(&mut b2, Manip::Dst, &r.netmap(&again.dst), &s, &mut |x| {
            used.contains(x)
        }),
        Err(NatError::Clash)
    );
}
