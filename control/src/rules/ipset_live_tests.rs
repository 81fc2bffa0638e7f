//! ipset commands against live sets (`ctl ipset`): each command's acceptances and refusals,
//! `-exist`, maxelem, timeouts on the sets' clock, restore all or nothing, and a control plane
//! whose rules see a change with no reload.

use super::ipset_live::{command, restore, save_text, Outcome};
use super::ipsets::{parse_ipsets, At};
use dataplane::classify::ipset::IpSets;

const SETS: &str = "create ban hash:ip family inet hashsize 1024 maxelem 3 timeout 0
create nets hash:net family inet hashsize 1024 maxelem 65536
add nets 10.0.0.0/8
create nopt hash:ip family inet hashsize 1024 maxelem 65536
create six hash:ip family inet6 hashsize 1024 maxelem 65536
create l list:set size 8
create np hash:net,port family inet hashsize 1024 maxelem 65536
create nn hash:net,net family inet hashsize 1024 maxelem 65536
create npn hash:net,port,net family inet6 hashsize 1024 maxelem 65536
";

fn live() -> IpSets {
    parse_ipsets("s.sets", SETS).unwrap()
}

const NOW: At = At {
    now_ms: 1000,
    exist: false,
};

fn run(s: &IpSets, line: &str) -> Result<IpSets, String> {
    match command(s, line, NOW) {
        Ok(Outcome::Changed(n)) => Ok(n),
        Ok(o) => panic!("{line}: not a change: {o:?}"),
        Err((c, m)) => Err(format!("{c}: {m}")),
    }
}

fn test(s: &IpSets, line: &str, at: At) -> bool {
    match command(s, line, at) {
        Ok(Outcome::Tested(yes, text)) => {
            assert!(text.contains(" in set "), "{text}");
            yes
        }
        other => panic!("{line}: {other:?}"),
    }
}

fn list(s: &IpSets, line: &str) -> String {
    match command(s, line, NOW) {
        Ok(Outcome::Listed(t)) => t,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn add_test_del_and_the_refusals() {
    let s = live();
    let s = run(&s, "add ban 192.0.2.1").unwrap();
    assert!(test(&s, "test ban 192.0.2.1", NOW));
    assert!(!test(&s, "test ban 192.0.2.2", NOW));
    // The change is a copy: only the changed set is new.
    let s2 = run(&s, "add nopt 192.0.2.9").unwrap();
    assert!(std::sync::Arc::ptr_eq(&s.sets[0], &s2.sets[0]));
    assert!(!std::sync::Arc::ptr_eq(&s.sets[2], &s2.sets[2]));
    // ipset's own messages, at their columns.
    for (line, want) in [
        (
            "add ban 192.0.2.1",
            "9: element cannot be added to the set: it's already added",
        ),
        (
            "add nope 192.0.2.1",
            "5: the set with the given name (nope) does not exist",
        ),
        (
            "add ban 2001:db8::1",
            "9: cannot parse \"2001:db8::1\": not an IPv4 address",
        ),
        (
            "add six 192.0.2.1",
            "9: cannot parse \"192.0.2.1\": not an IPv6 address",
        ),
        (
            "add ban 0.0.0.0",
            "9: zero valued IP address is not allowed",
        ),
        (
            "add ban 192.0.2.0/24",
            "9: \"192.0.2.0/24\": a range or prefix is not taken",
        ),
        (
            "add nopt 192.0.2.7 timeout 5",
            "20: timeout cannot be used: set nopt was created without timeout support",
        ),
        (
            "add ban 192.0.2.7 timeout 2147484",
            "27: invalid timeout \"2147484\"",
        ),
        (
            "add ban 192.0.2.7 nomatch",
            "19: \"nomatch\" is not an entry option of hash:ip sets",
        ),
        ("add nets 10.0.0.0/33", "10: invalid prefix length"),
        (
            "del ban 192.0.2.2",
            "9: element cannot be deleted from the set: it's not added",
        ),
        ("add ban", "5: add needs an entry"),
        ("destroy ban", "1: destroy is not supported at run time"),
        (
            "swap ban six",
            "10: the sets cannot be swapped: their type does not match",
        ),
        ("bogus ban", "1: unsupported command \"bogus\""),
        ("add np 10.0.0.0/8,tcp:99999", "8: port 99999 out of range"),
    ] {
        let e = run(&s, line).unwrap_err();
        assert!(e.starts_with(want), "{line}: {e}");
    }
    assert!(command(&s, "test ban", NOW).is_err());
    assert!(command(&s, "test ban 1.2.3.4 x", NOW).is_err());
    assert!(command(&s, "list nope", NOW).is_err());
    // -exist: a present entry re-added, an absent one deleted: no error.
    let s = run(&s, "add ban 192.0.2.1 -exist").unwrap();
    let s = run(&s, "del ban 192.0.2.2 -exist").unwrap();
    let s = run(&s, "del ban 192.0.2.1").unwrap();
    assert!(!test(&s, "test ban 192.0.2.1", NOW));
    // maxelem 3: the fourth is refused, with or without -exist.
    let s = run(&s, "add ban 192.0.2.1").unwrap();
    let s = run(&s, "add ban 192.0.2.2").unwrap();
    let s = run(&s, "add ban 192.0.2.3").unwrap();
    for line in ["add ban 192.0.2.4", "add ban 192.0.2.4 -exist"] {
        let e = run(&s, line).unwrap_err();
        assert!(e.contains("set ban is full"), "{e}");
    }
    // Flush one set, then every set.
    let s = run(&s, "flush ban").unwrap();
    assert_eq!(s.sets[0].len(), 0);
    assert_eq!(s.sets[1].len(), 1);
    let s = run(&s, "flush").unwrap();
    assert!(s.sets.iter().all(|x| x.is_empty()));
}

#[test]
fn nets_test_as_the_kernel_and_nomatch_answers_no() {
    let s = live();
    let s = run(&s, "add nets 10.1.0.0/16 nomatch").unwrap();
    assert!(test(&s, "test nets 10.2.3.4", NOW));
    assert!(!test(&s, "test nets 10.1.3.4", NOW), "nomatch answers no");
    assert!(
        test(&s, "test nets 10.0.0.0/8", NOW),
        "a network is tested as written"
    );
    assert!(!test(&s, "test nets 10.0.0.0/9", NOW));
    let s = run(&s, "add np 10.0.0.0/24,udp:53").unwrap();
    assert!(test(&s, "test np 10.0.0.9,udp:53", NOW));
    assert!(!test(&s, "test np 10.0.0.9,tcp:53", NOW));
    // list:set members.
    let s = run(&s, "add l nets").unwrap();
    assert!(test(&s, "test l nets", NOW) && !test(&s, "test l ban", NOW));
    let e = run(&s, "add l l").unwrap_err();
    assert!(e.contains("cannot be a member"), "{e}");
}

#[test]
fn timeouts_count_on_the_sets_clock() {
    let s = live();
    let at = |ms| At {
        now_ms: ms,
        exist: false,
    };
    let s = match command(&s, "add ban 192.0.2.1 timeout 5", at(1000)) {
        Ok(Outcome::Changed(n)) => n,
        o => panic!("{o:?}"),
    };
    assert!(test(&s, "test ban 192.0.2.1", at(6000)));
    assert!(!test(&s, "test ban 192.0.2.1", at(6001)));
    // Gone by its timeout: absent to del, and added again without -exist.
    assert!(command(&s, "del ban 192.0.2.1", at(7000)).is_err());
    assert!(command(&s, "add ban 192.0.2.1", at(7000)).is_ok());
    // -exist on a present entry sets the timeout given now.
    let s = match command(&s, "add ban 192.0.2.1 timeout 100 -exist", at(2000)) {
        Ok(Outcome::Changed(n)) => n,
        o => panic!("{o:?}"),
    };
    assert!(test(&s, "test ban 192.0.2.1", at(50_000)));
    // The list shows what is left, and a gone entry not at all.
    let text = match command(&s, "list ban", at(52_000)) {
        Ok(Outcome::Listed(t)) => t,
        o => panic!("{o:?}"),
    };
    assert!(text.contains("add ban 192.0.2.1 timeout 50\n"), "{text}");
    // The set's own timeout 0: entries without one never go.
    let s = run(&s, "add ban 192.0.2.2").unwrap();
    assert!(test(&s, "test ban 192.0.2.2", at(u64::MAX / 2)));
    // A full set with a timeout drops what is gone before it refuses.
    let s = run(&s, "add ban 192.0.2.3 timeout 1").unwrap();
    assert!(command(&s, "add ban 192.0.2.4", at(3000)).is_ok());
}

#[test]
fn list_is_what_ipset_save_writes_and_restores_to_the_same_sets() {
    let s = live();
    let s = run(&s, "add nets 192.168.0.0/16 nomatch").unwrap();
    let s = run(&s, "add np 10.0.0.0/24,udp:53").unwrap();
    let s = run(&s, "add six 2001:db8::1").unwrap();
    let s = run(&s, "add l nets").unwrap();
    let s = run(&s, "add nn 10.0.0.0/8,192.168.1.0/24 nomatch").unwrap();
    let s = run(&s, "add nn 10.1.0.0/16,192.168.0.0/16").unwrap();
    let s = run(&s, "add npn 2001:db8::/32,tcp:443,2001:db8:1::1").unwrap();
    // A host pair tries the prefix pairs, the first network's longest first.
    assert!(test(&s, "test nn 10.1.1.1,192.168.1.9", NOW));
    assert!(!test(&s, "test nn 10.2.1.1,192.168.1.9", NOW));
    assert!(test(&s, "test nn 10.1.0.0/16,192.168.0.0/16", NOW));
    assert!(test(&s, "test npn 2001:db8::5,tcp:443,2001:db8:1::1", NOW));
    assert!(!test(&s, "test npn 2001:db8::5,tcp:443,2001:db8:1::2", NOW));
    let text = list(&s, "save");
    assert!(text.starts_with(
        "create ban hash:ip family inet hashsize 1024 maxelem 3 timeout 0\ncreate nets hash:net"
    ));
    for want in [
        "add nets 10.0.0.0/8\n",
        "add nets 192.168.0.0/16 nomatch\n",
        "add np 10.0.0.0/24,udp:53\n",
        "add six 2001:db8::1\n",
        "add l nets\n",
        "add nn 10.0.0.0/8,192.168.1.0/24 nomatch\n",
        "add nn 10.1.0.0/16,192.168.0.0/16\n",
        "add npn 2001:db8::/32,tcp:443,2001:db8:1::1\n",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let again = parse_ipsets("saved", &text).unwrap();
    assert_eq!(save_text(&again, None, NOW), text);
    assert_eq!(list(&s, "list np"), "create np hash:net,port family inet hashsize 1024 maxelem 65536\nadd np 10.0.0.0/24,udp:53\n");
}

#[test]
fn restore_applies_every_line_or_none() {
    let s = live();
    let good =
        "add ban 192.0.2.1\n# a comment\nadd nets 172.16.0.0/12\ndel nets 10.0.0.0/8\nCOMMIT\n";
    let n = restore(&s, "r", good, NOW).unwrap();
    assert_eq!((n.sets[0].len(), n.sets[1].len()), (1, 1));
    // One bad line: nothing changes, every error at its line and column.
    let bad = "add ban 192.0.2.1\nadd ban 192.0.2.300\nadd nets 10.0.0.0/8\n";
    let e = restore(&n, "r", bad, NOW).unwrap_err();
    let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("r:1:9: element cannot be added"), "{e:?}");
    assert!(e[1].starts_with("r:2:9: cannot parse"), "{e:?}");
    assert_eq!(
        (n.sets[0].len(), n.sets[1].len()),
        (1, 1),
        "the good third line not applied"
    );
    // -exist for every line.
    let at = At { exist: true, ..NOW };
    let n = restore(&n, "r", "add ban 192.0.2.1\nadd nets 10.0.0.0/8\n", at).unwrap();
    assert_eq!(n.sets[1].len(), 2);
    // Calico's resync: create -exist, a new set filled, swapped in, flushed.
    let resync = "create nets-tmp hash:net family inet hashsize 1024 maxelem 65536\n\
                  create nets hash:net family inet -exist\n\
                  add nets-tmp 10.9.0.0/16\nswap nets nets-tmp\nflush nets-tmp\n";
    let r = restore(&n, "r", resync, NOW).unwrap();
    let nets = r.find("nets").unwrap();
    assert_eq!(r.sets[nets].name, "nets");
    assert_eq!(
        save_text(&r, Some(nets), NOW).lines().nth(1),
        Some("add nets 10.9.0.0/16")
    );
    assert!(r.sets[r.find("nets-tmp").unwrap()].is_empty());
    let e = restore(&n, "r", "create nets hash:ip -exist\n", NOW).unwrap_err();
    assert!(e[0].message.contains("another type"), "{e:?}");
}

/// The cost of one add to a set of 100,000 entries (only that set is copied).
#[test]
fn an_add_to_a_large_set_copies_that_set_only() {
    let mut text = String::from(SETS);
    text += "create big hash:ip family inet hashsize 65536 maxelem 200000\n";
    for i in 0..100_000u32 {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i + 1);
        text += &format!("add big {a}\n");
    }
    let s = parse_ipsets("big", &text).unwrap();
    let t0 = std::time::Instant::now();
    let n = run(&s, "add ban 192.0.2.1").unwrap();
    let small = t0.elapsed();
    let t0 = std::time::Instant::now();
    let n = run(&n, "add big 192.0.2.1").unwrap();
    let big = t0.elapsed();
    assert_eq!(n.sets[n.find("big").unwrap()].len(), 100_001);
    eprintln!("one add: to a small set beside a 100K set {small:?}, to the 100K set {big:?}");
    assert!(small < std::time::Duration::from_millis(5), "{small:?}");
}

/// A control plane whose rules drop a set's members: `ipset add` bans a source and `ipset
/// del` lets it through again, with no rule reload, while a worker thread quiesces.
#[test]
fn control_plane_changes_sets_without_a_reload() {
    use crate::config::RulesConf;
    use crate::daemon::ControlPlane;
    use crate::mgmt::Request;
    use dataplane::filter::{judge_rules, packet_meta, FilterVerdict};
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::parse_frame;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.v4");
    let sets = dir.path().join("s.sets");
    std::fs::write(
        &rules,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m set --match-set ban src -j DROP\nCOMMIT\n",
    )
    .unwrap();
    std::fs::write(&sets, SETS).unwrap();
    let conf = RulesConf {
        ipv4: Some(rules.clone()),
        ipsets: Some(sets.clone()),
        ..RulesConf::default()
    };
    let mut cp = ControlPlane::new(
        conf,
        vec!["inside".into(), "outside".into()],
        1,
        crate::load::NatSettings::default(),
        Box::new(crate::load::tree_classifier),
    )
    .unwrap();
    let mut reader = cp.readers().pop().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reader.quiesce();
                std::thread::yield_now();
            }
        })
    };
    let dropped = |cp: &ControlPlane<'_>| {
        let f = FrameSpec::new(
            IpSpec::v4([192, 0, 2, 1].into(), [10, 9, 9, 9].into()),
            L4Spec::udp(1, 53, b"x"),
        )
        .build();
        let meta = packet_meta(&f, &parse_frame(&f).unwrap(), 0, 1).unwrap();
        let snap = cp.current();
        let rs = snap.filter.v4.as_ref().unwrap();
        let w = dataplane::classify::Wire::NONE;
        matches!(
            judge_rules(rs, &meta, &w, |_, _, _| {}),
            FilterVerdict::Drop { .. }
        )
    };
    let ok = |v: serde_json::Value| {
        assert_eq!(v["ok"], true, "{v}");
        v
    };
    let ipset = |cp: &mut ControlPlane<'_>, line: &str| {
        cp.handle(Request::Ipset { line: line.into() }, &|| {
            serde_json::json!({})
        })
    };
    assert!(!dropped(&cp));
    let swaps = cp.swaps.swaps;
    ok(ipset(&mut cp, "add ban 192.0.2.1"));
    assert!(dropped(&cp));
    assert_eq!(ok(ipset(&mut cp, "test ban 192.0.2.1"))["in_set"], true);
    let e = ipset(&mut cp, "add ban 192.0.2.1");
    assert_eq!(
        e["error"],
        "ipset: column 9: element cannot be added to the set: it's already added"
    );
    ok(ipset(&mut cp, "del ban 192.0.2.1"));
    assert!(!dropped(&cp));
    assert_eq!(cp.swaps.swaps, swaps, "no rule set was published");
    // A rule reload without a sets file keeps the live contents.
    ok(ipset(&mut cp, "add ban 192.0.2.1"));
    let load =
        |file: Option<&std::path::Path>, ipsets: Option<&std::path::Path>| Request::RulesLoad {
            file: file.map(|p| p.display().to_string()),
            file6: None,
            groups: None,
            ipsets: ipsets.map(|p| p.display().to_string()),
        };
    ok(cp.handle(load(Some(&rules), None), &|| serde_json::json!({})));
    assert!(dropped(&cp), "the live ban outlives the reload");
    // ... and refuses a rule naming a set that does not exist.
    let other = dir.path().join("o.v4");
    std::fs::write(
        &other,
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m set --match-set gone src -j DROP\nCOMMIT\n",
    )
    .unwrap();
    let e = cp.handle(load(Some(&other), None), &|| serde_json::json!({}));
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("Set gone doesn't exist"),
        "{e}"
    );
    assert!(dropped(&cp));
    // With a sets file, the file's contents replace the live ones.
    ok(cp.handle(load(Some(&rules), Some(&sets)), &|| serde_json::json!({})));
    assert!(!dropped(&cp));
    // Restore: all or nothing.
    let e = cp.handle(
        Request::IpsetRestore {
            file: None,
            text: Some("add ban 192.0.2.1\nadd ban bad\n".into()),
            exist: false,
        },
        &|| serde_json::json!({}),
    );
    assert!(e["error"].as_str().unwrap().starts_with("-:2:9: "), "{e}");
    assert!(!dropped(&cp));
    ok(cp.handle(
        Request::IpsetRestore {
            file: None,
            text: Some("add ban 192.0.2.1\n".into()),
            exist: false,
        },
        &|| serde_json::json!({}),
    ));
    assert!(dropped(&cp));
    let listed = ok(ipset(&mut cp, "list ban"));
    assert!(
        listed["text"]
            .as_str()
            .unwrap()
            .contains("add ban 192.0.2.1 timeout 0\n"),
        "{listed}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
    cp.reclaim();
}
