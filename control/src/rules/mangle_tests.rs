//! The mangle table's targets: what loads, what is refused (at its line and column), and
//! which chains are compiled.

use super::tests::{compile, ports};
use super::*;

const HEAD: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n\
                    :FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";

fn mangle_of(
    rules: &str,
    family: Family,
) -> Result<Option<dataplane::mangle::Mangle>, Vec<RuleError>> {
    let text = format!("{HEAD}{rules}COMMIT\n");
    let parsed = parse_iptables("t.rules", &text, family, &ports())?;
    Ok(compile_mangle(&parsed, Ok::<_, ()>)?.unwrap())
}

#[test]
fn gateway_targets_load() {
    let rules =
        "-A PREROUTING -i in0 -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x1/0xffffffff\n\
                 -A PREROUTING -p udp -j DSCP --set-dscp 0x2e\n\
                 -A PREROUTING -p udp -j DSCP --set-dscp-class af41\n\
                 -A PREROUTING -j TOS --set-tos 0x10/0x3f\n\
                 -A PREROUTING -j TOS --set-tos Minimize-Delay\n\
                 -A PREROUTING -j TOS --and-tos 0x0f\n\
                 -A PREROUTING -j TOS --or-tos 0x01\n\
                 -A PREROUTING -j TOS --xor-tos 0x01\n\
                 -A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu\n\
                 -A POSTROUTING -p tcp -m tcp --syn -j TCPMSS --set-mss 1400\n\
                 -A POSTROUTING -o out0 -j TTL --ttl-set 64\n\
                 -A POSTROUTING -o out0 -j TTL --ttl-dec 1\n\
                 -A POSTROUTING -o out0 -j TTL --ttl-inc 1\n";
    let m = mangle_of(rules, Family::V4).unwrap().expect("has effect");
    assert!(m.prerouting.is_some() && m.forward.is_some() && m.postrouting.is_some());
    assert!(m.input.is_none());
    let v6 =
        "-A FORWARD -j HL --hl-set 64\n-A FORWARD -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu\n";
    let m = mangle_of(v6, Family::V6).unwrap().expect("has effect");
    assert!(m.forward.is_some() && m.prerouting.is_none());
    // Without a SYN flags test: iptables 1.8 on nf_tables takes it (legacy refuses it).
    let any = "-A FORWARD -p tcp ! --syn -j TCPMSS --set-mss 1400\n\
               -A FORWARD -p tcp -j TCPMSS --set-mss 65515\n";
    assert!(mangle_of(any, Family::V4)
        .unwrap()
        .unwrap()
        .forward
        .is_some());
    // DROP and a DROP policy load and apply.
    assert!(mangle_of("-A INPUT -p udp -j DROP\n", Family::V4)
        .unwrap()
        .unwrap()
        .input
        .is_some());
    let text = "*mangle\n:FORWARD DROP [0:0]\nCOMMIT\n";
    let parsed = parse_iptables("t.rules", text, Family::V4, &ports()).unwrap();
    assert!(compile_mangle(&parsed, Ok::<_, ()>)
        .unwrap()
        .unwrap()
        .unwrap()
        .forward
        .is_some());
    // Jumps and RETURNs alone change nothing: no chain.
    let noop = ":u - [0:0]\n-A FORWARD -j u\n-A u -p tcp -j RETURN\n-A u -j ACCEPT\n";
    assert!(mangle_of(noop, Family::V4).unwrap().is_none());
    // The filter table alone is unchanged by a mangle table.
    let filter = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    let with = format!("{HEAD}{rules}COMMIT\n{filter}");
    assert_eq!(
        compile(&with, Family::V4).unwrap().rules,
        compile(filter, Family::V4).unwrap().rules
    );
}

#[test]
fn refusals_name_line_and_column() {
    // (family, rule on line 7 of the file, error's column, message start)
    let v4 = Family::V4;
    let cases: &[(Family, &str, u32, &str)] = &[
        (
            v4,
            "-A FORWARD -p udp -j TCPMSS --set-mss 1400",
            22,
            "TCPMSS needs -p tcp",
        ),
        (
            v4,
            "-A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu",
            38,
            "--clamp-mss-to-pmtu is not valid in chain PREROUTING",
        ),
        (
            v4,
            "-A FORWARD -p tcp --syn -j TCPMSS --set-mss 1400 --clamp-mss-to-pmtu",
            50,
            "TCPMSS needs exactly one of",
        ),
        (
            v4,
            "-A FORWARD -p tcp --syn -j TCPMSS",
            28,
            "TCPMSS needs exactly one of",
        ),
        (
            v4,
            "-A FORWARD -p tcp --syn -j TCPMSS --set-mss 65516",
            45,
            "invalid MSS",
        ),
        (
            Family::V6,
            "-A FORWARD -p tcp --syn -j TCPMSS --set-mss 65496",
            45,
            "invalid MSS",
        ),
        (
            v4,
            "-A FORWARD -j TTL --ttl-inc 0",
            29,
            "--ttl-inc 0 changes nothing",
        ),
        (v4, "-A FORWARD -j TTL --ttl-set 256", 29, "invalid TTL"),
        (
            Family::V6,
            "-A FORWARD -j TTL --ttl-set 1",
            15,
            "TTL is for IPv4",
        ),
        (v4, "-A FORWARD -j HL --hl-set 1", 15, "HL is for IPv6"),
        (v4, "-A FORWARD -j DSCP --set-dscp 64", 31, "invalid DSCP"),
        (
            v4,
            "-A FORWARD -j DSCP --set-dscp-class AF44",
            37,
            "invalid DSCP class",
        ),
        (v4, "-A FORWARD -j TOS --set-tos 0x100", 29, "invalid TOS"),
        (
            v4,
            "-A FORWARD -j CONNMARK",
            15,
            "CONNMARK needs one of --set-xmark",
        ),
        (
            v4,
            "-A FORWARD -j CLASSIFY --set-class 1:1",
            15,
            "unsupported target CLASSIFY: Rampart has no traffic-control",
        ),
        (
            v4,
            "-A PREROUTING -p tcp -j TPROXY --on-port 1",
            25,
            "unsupported target TPROXY",
        ),
        (
            v4,
            "-A FORWARD -j LOG",
            15,
            "target LOG in the mangle table",
        ),
    ];
    // A user chain reached from PREROUTING is held to the clamp's hooks too.
    let text = format!(
        "{HEAD}:clamp - [0:0]\n-A PREROUTING -p tcp -j clamp\n\
         -A clamp -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu\nCOMMIT\n"
    );
    let e = parse_iptables("t.rules", &text, v4, &ports()).expect_err("clamp in PREROUTING");
    assert!(
        e[0].to_string().starts_with(
            "t.rules:9:23: target TCPMSS --clamp-mss-to-pmtu is not valid in chain clamp: \
             it is reached from PREROUTING"
        ),
        "{}",
        e[0]
    );
    for &(family, rule, col, msg) in cases {
        let text = format!("{HEAD}{rule}\nCOMMIT\n");
        let e = parse_iptables("t.rules", &text, family, &ports())
            .and_then(|p| compile_mangle(&p, Ok::<_, ()>).map(|_| ()))
            .expect_err(rule);
        assert_eq!(e.len(), 1, "{rule}: {e:?}");
        let want = format!("t.rules:7:{col}: {msg}");
        assert!(
            e[0].to_string().starts_with(&want),
            "{rule}: {} is not {want:?}",
            e[0]
        );
    }
    // Outside mangle: TCPMSS (Linux takes it anywhere; Rampart applies it in mangle), the
    // others (the kernel's mangle-only targets), and MARK in raw as before.
    let other: &[(&str, u32, &str)] = &[
        ("*filter\n-A FORWARD -p tcp --syn -j TCPMSS --set-mss 1400\nCOMMIT\n", 28, "target TCPMSS is not valid in the filter table (Rampart applies TCPMSS in the mangle table only"),
        ("*filter\n-A FORWARD -j TTL --ttl-set 1\nCOMMIT\n", 15, "target TTL is not valid in the filter table (the kernel takes it in the mangle table only)"),
        ("*nat\n-A POSTROUTING -j DSCP --set-dscp 1\nCOMMIT\n", 19, "target DSCP is not valid in the nat table"),
        ("*raw\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n", 18, "MARK in the raw table is not supported"),
    ];
    for &(text, col, msg) in other {
        let e = parse_iptables("t.rules", text, Family::V4, &ports()).expect_err(text);
        let want = format!("t.rules:2:{col}: {msg}");
        assert!(
            e[0].to_string().starts_with(&want),
            "{text}: {} is not {want:?}",
            e[0]
        );
    }
}

/// The example gateway file (made with iptables-restore and iptables-save 1.8.9) loads, with
/// the chains that have effect compiled.
#[test]
fn the_gateway_example_loads() {
    let text = include_str!("../../../examples/iptables/gateway-mangle.rules");
    let ports = ["inside".to_string(), "outside".to_string()];
    let parsed = parse_iptables("gateway-mangle.rules", text, Family::V4, &ports).unwrap();
    let m = compile_mangle(&parsed, Ok::<_, ()>)
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(m.prerouting.is_some() && m.forward.is_some() && m.postrouting.is_some());
    assert!(m.input.is_none());
}
