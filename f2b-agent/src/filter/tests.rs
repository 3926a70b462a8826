//! Unit tests of the engine on small inline filters; the stock filters are tested on log
//! files by tests/filters.rs.
#![allow(clippy::unwrap_used)]

use super::*;

// 2026-11-22T12:00:00Z
const NOW: i64 = 1_795_348_800;

fn f(yaml: &str) -> Filter {
    Filter::from_yaml(yaml, "t.yaml", "t", None).unwrap()
}

fn fm(yaml: &str, mode: &str) -> Filter {
    Filter::from_yaml(yaml, "t.yaml", "t", Some(mode)).unwrap()
}

fn err(yaml: &str) -> FilterError {
    Filter::from_yaml(yaml, "t.yaml", "t", None).unwrap_err()
}

fn fail(m: LineMatch) -> Failure {
    match m {
        LineMatch::Failure(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn host_forms() {
    let flt = f("failregex: ['^bad login from <HOST>( port \\d+)?$']");
    for (line, host, ip) in [
        ("bad login from 198.18.0.7", "198.18.0.7", "198.18.0.7"),
        ("bad login from 2001:db8::7", "2001:db8::7", "2001:db8::7"),
        (
            "bad login from [2001:db8::7] port 22",
            "2001:db8::7",
            "2001:db8::7",
        ),
        (
            "bad login from ::ffff:198.18.0.9",
            "::ffff:198.18.0.9",
            "198.18.0.9",
        ),
        ("bad login from ::1", "::1", "::1"),
    ] {
        let x = fail(flt.match_line(line, NOW));
        assert_eq!(x.host, host, "{line}");
        assert_eq!(x.ip, ip.parse::<IpAddr>().unwrap(), "{line}");
        assert_eq!(x.time, None);
    }
    // Hostnames and non-addresses are never failures.
    assert_eq!(
        flt.match_line("bad login from example.com", NOW),
        LineMatch::Miss
    );
    assert_eq!(
        flt.match_line("bad login from 999.1.1.1", NOW),
        LineMatch::Miss
    );
}

#[test]
fn user_id_and_addr_tags() {
    let flt = f(r"
failregex:
  - '^auth fail user=<F-USER>\S+</F-USER> id=<F-ID>\w+</F-ID> rip=<ADDR>$'
  - '^pam ruser=<F-ALT_USER>\S*</F-ALT_USER> rhost=<HOST>(?: user=<F-USER>\S+</F-USER>)?$'
");
    let x = fail(flt.match_line("auth fail user=bob id=ab12 rip=198.18.0.7", NOW));
    assert_eq!(x.user.as_deref(), Some("bob"));
    assert_eq!(x.id.as_deref(), Some("ab12"));
    assert_eq!(x.failregex, 0);
    let x = fail(flt.match_line("pam ruser=alt rhost=198.18.0.7", NOW));
    assert_eq!((x.failregex, x.user.as_deref()), (1, Some("alt")));
    let x = fail(flt.match_line("pam ruser=alt rhost=198.18.0.7 user=real", NOW));
    assert_eq!(x.user.as_deref(), Some("real"));
}

#[test]
fn date_is_cut_before_anchored_failregex() {
    let flt = f("failregex: ['^ host sshd\\[\\d+\\]: Failed password for \\S+ from <HOST>']");
    let x = fail(flt.match_line(
        "Nov 22 04:16:03 host sshd[7]: Failed password for root from 198.18.0.7",
        NOW,
    ));
    let day = date::days_from_civil(2026, 11, 22) * 86400;
    assert_eq!(x.time, Some(day + 4 * 3600 + 16 * 60 + 3));
    // A mid-line date (access log) is cut too; what is left around it is joined.
    let acc = f(r#"failregex: ['^<HOST> - - \[\] "GET /admin']"#);
    let x = fail(acc.match_line(
        r#"198.18.0.7 - - [22/Nov/2026:04:16:03 +0000] "GET /admin HTTP/1.1" 404 1"#,
        NOW,
    ));
    assert_eq!(x.time, Some(day + 4 * 3600 + 16 * 60 + 3));
    // No date: still matched, time None.
    let x = fail(acc.match_line(r#"198.18.0.7 - - [] "GET /admin HTTP/1.1""#, NOW));
    assert_eq!(x.time, None);
}

#[test]
fn prefregex_content() {
    let flt = f(r"
prefregex: '^%{syslog_prefix}<F-CONTENT>.+</F-CONTENT>$'
vars: {daemon: 'myd'}
failregex:
  - '^denied <F-USER>\w+</F-USER> from <HOST>$'
");
    let x = fail(flt.match_line("Nov 22 04:16:03 h myd[1]: denied bob from 198.18.0.7", NOW));
    assert_eq!(x.user.as_deref(), Some("bob"));
    // failregex is anchored on the content, not on the whole line.
    assert_eq!(
        flt.match_line(
            "Nov 22 04:16:03 h myd[1]: x denied bob from 198.18.0.7",
            NOW
        ),
        LineMatch::Miss
    );
    // The address may come from prefregex.
    let p = f(r"
prefregex: '^\S+ \[<HOST>\] <F-CONTENT>.+</F-CONTENT>$'
failregex: ['^USER (?:\w+): no such user']
");
    let x = fail(p.match_line("ftp [198.18.0.8] USER x: no such user", NOW));
    assert_eq!(x.host, "198.18.0.8");
    assert!(
        err("prefregex: 'x'\nfailregex: ['<HOST>']")
            .message
            .contains("F-CONTENT")
    );
}

#[test]
fn ignoreregex_and_nofail() {
    let flt = f(r"
failregex:
  - '^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) for \S+ from <HOST>'
ignoreregex:
  - 'for trusted '
");
    assert!(matches!(
        flt.match_line("Failed password for root from 198.18.0.7", NOW),
        LineMatch::Failure(_)
    ));
    assert_eq!(
        flt.match_line("Failed password for trusted from 198.18.0.7", NOW),
        LineMatch::Ignored
    );
    assert_eq!(
        flt.match_line("Failed publickey for root from 198.18.0.7", NOW),
        LineMatch::Miss
    );
}

const MODES: &str = r"
failregex: ['^base <HOST>']
ignoreregex: ['ignored']
default_mode: normal
modes:
  normal: {}
  more:
    failregex: ['^more <HOST>']
  only:
    replace: true
    failregex: ['^only <HOST>']
";

#[test]
fn modes_add_or_replace() {
    let n = f(MODES);
    assert_eq!(n.mode(), Some("normal"));
    assert!(matches!(
        n.match_line("base 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    assert_eq!(n.match_line("more 198.18.0.1", NOW), LineMatch::Miss);
    let m = fm(MODES, "more");
    assert_eq!(fail(m.match_line("more 198.18.0.1", NOW)).failregex, 1);
    assert!(matches!(
        m.match_line("base 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    let o = fm(MODES, "only");
    assert_eq!(o.match_line("base 198.18.0.1", NOW), LineMatch::Miss);
    assert_eq!(fail(o.match_line("only 198.18.0.1", NOW)).failregex, 0);
    // replace drops the base ignoreregex too.
    assert!(matches!(
        o.match_line("only 198.18.0.1 ignored", NOW),
        LineMatch::Failure(_)
    ));
    let e = Filter::from_yaml(MODES, "t.yaml", "t", Some("nope")).unwrap_err();
    assert!(
        e.message.contains("normal, more, only") || e.message.contains("more"),
        "{e}"
    );
}

#[test]
fn bad_patterns_name_their_line() {
    let e = err("description: x\nfailregex:\n  - '^ok <HOST>'\n  - '^bad ( <HOST>'\n");
    assert_eq!((e.file.as_str(), e.line), ("t.yaml", Some(4)), "{e}");
    assert!(
        e.to_string()
            .starts_with("t.yaml:4: failregex 1: bad regex"),
        "{e}"
    );
    // Mode patterns are only compiled when the mode is chosen.
    f("failregex: ['^x <HOST>']\nmodes:\n  m:\n    failregex:\n      - 'a'\n      - '(<HOST>'\n");
    let e = Filter::from_yaml(
        "failregex: ['^x <HOST>']\nmodes:\n  m:\n    failregex:\n      - 'a <HOST>'\n      - '(<HOST>'\n",
        "t.yaml",
        "t",
        Some("m"),
    )
    .unwrap_err();
    assert_eq!(e.line, Some(6), "{e}");
    let e = err("failregex:\n  - '^no host here'\n");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("<HOST>"), "{e}");
    let e = err("failregex: ['<HOST>']\nignoreregex:\n  - '[z-a]'\n");
    assert_eq!(e.line, Some(3), "{e}");
    let e = err("failregex: ['<HOST>']\nbogus: 1\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("bogus"), "{e}");
    let e = err("failregex: ['<HOST> %{nope}']\n");
    assert!(e.message.contains("nope"), "{e}");
    let e = err("failregex: ['<HOST>']\ntimezone: Mars\n");
    assert_eq!(e.line, Some(2), "{e}");
    let e = err("failregex: []\n");
    assert!(e.message.contains("at least one"), "{e}");
}

#[test]
fn prefilter_literals() {
    let flt = f(
        "failregex:\n  - '^Failed password for \\S+ from <HOST>'\n  - '^Invalid user \\S+ from <HOST>'\n",
    );
    assert_eq!(flt.literals(), ["Failed password for ", "Invalid user "]);
    // A pattern without a usable literal disables the prefilter (all lines are tried).
    let flt = f("failregex:\n  - '^Failed password for \\S+ from <HOST>'\n  - '^(?:a|b) <HOST>'\n");
    assert!(flt.literals().is_empty());
    // The override is used as is.
    let flt = f("failregex: ['^(?:a|b) <HOST>']\nliterals: [zz]\n");
    assert_eq!(flt.literals(), ["zz"]);
    assert_eq!(flt.match_line("a 198.18.0.1", NOW), LineMatch::Miss);
    assert!(matches!(
        flt.match_line_unfiltered("a 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    // The top-level override covers the base list only: patterns a mode adds bring their
    // own literals (or the mode's override), and a mode that replaces the list drops it.
    let y = "failregex: ['^zz <HOST>']\nliterals: [zz]\nmodes:\n  \
             add: {failregex: ['^Bad thing from <HOST>']}\n  \
             own: {failregex: ['^(?:x|y) <HOST>'], literals: [yy]}\n  \
             none: {failregex: ['^(?:x|y) <HOST>']}\n  \
             off: {failregex: ['^Bad thing from <HOST>'], literals: []}\n  \
             only: {replace: true, failregex: ['^Bad thing from <HOST>']}\n";
    let flt = fm(y, "add");
    assert_eq!(flt.literals(), ["Bad thing from ", "zz"]);
    assert!(matches!(
        flt.match_line("Bad thing from 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    assert_eq!(fm(y, "own").literals(), ["yy", "zz"]);
    // A mode pattern with no literal of its own, or a mode's [], turns the prefilter off.
    assert!(fm(y, "none").literals().is_empty());
    assert!(fm(y, "off").literals().is_empty());
    assert_eq!(fm(y, "only").literals(), ["Bad thing from "]);
}

#[test]
fn spec_from_config() {
    let v = |s: &str| serde_yaml::from_str::<serde_yaml::Value>(s).unwrap();
    assert_eq!(
        FilterSpec::from_config(&v("sshd")).unwrap(),
        FilterSpec::Name("sshd".into())
    );
    assert_eq!(
        FilterSpec::from_config(&v("/etc/f2b/filters/x.yaml")).unwrap(),
        FilterSpec::Path("/etc/f2b/filters/x.yaml".into())
    );
    assert_eq!(
        FilterSpec::from_config(&v("my.yaml")).unwrap(),
        FilterSpec::Path("my.yaml".into())
    );
    assert!(matches!(
        FilterSpec::from_config(&v("failregex: ['<HOST>']")).unwrap(),
        FilterSpec::Inline(_)
    ));
    assert!(FilterSpec::from_config(&v("bad name")).is_err());
    assert!(FilterSpec::from_config(&v("[1]")).is_err());
    let inline = FilterSpec::from_config(&v("failregex: ['^x <HOST>']")).unwrap();
    let flt = Filter::load(&inline, None).unwrap();
    assert!(matches!(
        flt.match_line("x 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    let e = Filter::load(
        &FilterSpec::from_config(&v("failregex: ['(']")).unwrap(),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("inline filter: failregex 0"),
        "{e}"
    );
}

#[test]
fn stock_and_operator_dir() {
    for name in stock::names() {
        Filter::load(&FilterSpec::Name(name.into()), None)
            .unwrap_or_else(|e| panic!("stock {name}: {e}"));
    }
    let e = Filter::load(&FilterSpec::Name("nope".into()), None).unwrap_err();
    assert!(e.message.contains("sshd"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sshd.yaml"),
        "failregex: ['^mine <HOST>']\n",
    )
    .unwrap();
    let flt = Filter::load_from(&FilterSpec::Name("sshd".into()), None, Some(dir.path())).unwrap();
    assert!(matches!(
        flt.match_line("mine 198.18.0.1", NOW),
        LineMatch::Failure(_)
    ));
    // Names never escape the directory.
    assert!(Filter::load_from(&FilterSpec::Name("../x".into()), None, Some(dir.path())).is_err());
}

/// Every stock filter test log (`tests/filters/NAME[@MODE].log`) with its filter loaded.
fn stock_test_logs() -> Vec<(std::path::PathBuf, Filter)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filters");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "log") {
            continue;
        }
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let (name, mode) = match stem.split_once('@') {
            Some((n, m)) => (n.to_string(), Some(m.to_string())),
            None => (stem, None),
        };
        let flt = Filter::load(&FilterSpec::Name(name), mode.as_deref()).unwrap();
        out.push((p, flt));
    }
    out
}

/// The prefregex shortcut (a DFA for `^X` instead of a capturing search) finds the same
/// content as the capturing search on every stock filter's test lines.
#[test]
fn prefregex_prefix_shortcut_finds_the_same_content() {
    let mut used = 0;
    for (p, flt) in stock_test_logs() {
        let (Some(pref), Some(x)) = (&flt.pref, &flt.pref_prefix) else {
            continue;
        };
        used += 1;
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let text = match flt.date.find(line, flt.tz, NOW) {
                Some(f) => format!("{}{}", &line[..f.start], &line[f.end..]),
                None => line.to_string(),
            };
            let slow = pref
                .re
                .captures(&text)
                .and_then(|c| pref.content.iter().find_map(|&g| c.get(g)))
                .map(|m| m.as_str());
            let fast = x.find(&text).map(|m| &text[m.end()..]);
            match (slow, fast) {
                (None, None) => {}
                (Some(s), Some(f)) if s == f => {}
                // X took the whole text: the engine falls back to the capturing search.
                (_, Some("")) => {}
                other => panic!("{p:?}: {line}: {other:?}"),
            }
        }
    }
    assert!(used >= 3, "only {used} filters use the shortcut");
}

/// The ASCII engines (and the one-by-one anchored tries) give the same answers as the
/// general ones on every stock filter's test lines.
#[test]
fn ascii_engines_agree_with_the_general_ones() {
    let mut failures = 0;
    for (p, flt) in stock_test_logs() {
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let fast = flt.match_line_unfiltered(line, NOW);
            let general = flt.match_line_general(line, NOW);
            assert_eq!(fast, general, "{p:?}: {line}");
            if matches!(fast, LineMatch::Failure(_)) {
                failures += 1;
            }
        }
    }
    assert!(failures > 100, "only {failures} failures in the test logs");
}

/// Lines of every stock filter's test log, each changed in a few seeded random places
/// (bytes deleted, repeated, or replaced by ones that matter to the patterns): the ASCII
/// engines still agree with the general ones, and the prefilter still changes nothing.
#[test]
fn ascii_engines_and_prefilter_agree_on_mutated_lines() {
    const BYTES: &[u8] = b" .:[]\"0123456789aZ-/#*,()";
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut tried, mut failures) = (0, 0);
    let mut prefilter_diff = Vec::new();
    for (p, flt) in stock_test_logs() {
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            for _ in 0..100 {
                let mut b = line.as_bytes().to_vec();
                for _ in 0..1 + next() % 3 {
                    if b.is_empty() {
                        break;
                    }
                    let i = (next() % b.len() as u64) as usize;
                    match next() % 3 {
                        0 => {
                            b.remove(i);
                        }
                        1 => b.insert(i, b[i]),
                        _ => b[i] = BYTES[(next() % BYTES.len() as u64) as usize],
                    }
                }
                let Ok(m) = String::from_utf8(b) else {
                    continue;
                };
                tried += 1;
                let fast = flt.match_line_unfiltered(&m, NOW);
                assert_eq!(fast, flt.match_line_general(&m, NOW), "{p:?}: {m}");
                if matches!(fast, LineMatch::Failure(_)) {
                    failures += 1;
                }
                if flt.match_line(&m, NOW) != fast {
                    prefilter_diff.push(format!("{p:?}: {m}"));
                }
            }
        }
    }
    assert!(
        tried > 15_000 && failures > 2_000,
        "{tried} lines, {failures} failures"
    );
    assert!(prefilter_diff.is_empty(), "{prefilter_diff:#?}");
}

/// Every sshd failregex (the busiest filter) takes its captures by chain, and the chain
/// agrees with the general engines on lines made to tempt it: a user name holding
/// " from ADDR", bracketed and mapped addresses, the NOFAIL alternative, tails that do not
/// match where the first choice of a step ends.
#[test]
fn chains_agree_on_tricky_lines() {
    for mode in ["normal", "aggressive"] {
        let flt = Filter::load(&FilterSpec::Name("sshd".into()), Some(mode)).unwrap();
        let with = flt.fail.iter().filter(|c| c.chain.is_some()).count();
        assert!(with + 2 >= flt.fail.len(), "{mode}: {with} chains");
    }
    let flt = Filter::load(&FilterSpec::Name("sshd".into()), Some("aggressive")).unwrap();
    let p = "Nov 22 04:16:03 web1 sshd[7]: ";
    let mut failures = 0;
    for l in [
        "Failed password for bob from 198.18.0.1 from 198.18.0.2 port 22 ssh2",
        "Failed password for bob from 198.18.0.1: from 198.18.0.2 port 22",
        "Failed password for bob from 198.18.0.1 port 22 ssh2: x from 198.18.0.2 port 22 ssh2",
        "Failed password for bob from 198.18.0.1 port 22 from 198.18.0.2 port 22 ssh2",
        "Invalid user a from b from 198.18.0.3",
        "Invalid user a from 198.18.0.3 from b",
        "Invalid user  from 198.18.0.3 port 1 port 2 port 3",
        "Invalid user x from 198.18.0.3 port 1 port 2 port 3 port 4",
        "Failed publickey for root from ::1 port 2 ssh2",
        "Failed publickey for invalid user root from ::1 port 2 ssh2",
        "Failed password for x from [2001:db8::1] port 22 ssh2: RSA SHA256:abc",
        "Failed password for x from ::ffff:198.18.0.9 on eth0: x port 22 ssh2",
        "Failed none for invalid user invalid user from 2001:db8::1:2:3 port 22",
        "Failed password for x from 1.2.3.4.5 port 22 ssh2",
        "Failed password for x from 1.2.3.4: port 22",
        "error: maximum authentication attempts exceeded for y from 198.18.0.4 port 9 ssh2 [preauth]",
        "Disconnecting invalid user u 198.18.0.5 port 3: Change of username or service not allowed: (a,b) -> (c,d) [preauth]",
        "refused connect from host (198.18.0.6)",
        "ROOT LOGIN REFUSED FROM [2001:db8::2]",
        "Connection closed by invalid user x y z 198.18.0.7 port 5 [preauth]",
    ] {
        let line = format!("{p}{l}");
        let fast = flt.match_line_unfiltered(&line, NOW);
        assert_eq!(fast, flt.match_line_general(&line, NOW), "{line}");
        failures += matches!(fast, LineMatch::Failure(_)) as usize;
    }
    assert!(failures >= 12, "{failures}");
}

/// A seeded xorshift64 generator: the same inputs on every run.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The in-place IPv4 reader says what the std parser says, on seeded strings of digits and
/// dots (leading zeros, too many digits or octets, empty octets, values over 255).
#[test]
fn ipv4_reader_agrees_with_std() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..200_000 {
        let n = (next() % 18) as usize;
        let s: String = if next().is_multiple_of(2) {
            // Four (or three, or five) groups of 0 to 4 digits.
            let parts = 3 + (next() % 3) as usize;
            (0..parts)
                .map(|_| {
                    let d = (next() % 5) as usize;
                    (0..d)
                        .map(|_| char::from(b'0' + (next() % 10) as u8))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(".")
        } else {
            (0..n)
                .map(|_| match next() % 5 {
                    0 => '.',
                    1 => '0',
                    2 => '2',
                    3 => '5',
                    _ => char::from(b'0' + (next() % 10) as u8),
                })
                .collect()
        };
        let want = s.parse::<std::net::Ipv4Addr>().ok();
        assert_eq!(parse_v4(s.as_bytes()), want, "{s:?}");
        ok += want.is_some() as usize;
    }
    assert!(ok > 500, "{ok}");
    assert_eq!(
        parse_ip("[198.18.0.7]"),
        Some(IpAddr::from([198, 18, 0, 7]))
    );
}

/// The in-place IPv6 reader (hex groups, no embedded IPv4) says what the std parser says, on
/// seeded strings of hex digits and colons (`::` anywhere or twice, too many or too long
/// groups, leading or trailing single colons).
#[test]
fn ipv6_reader_agrees_with_std() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    const HEX: &[u8] = b"0123456789abcdefABCDEF";
    let mut ok = 0;
    for _ in 0..300_000 {
        let parts = (next() % 11) as usize;
        let mut s = String::new();
        for i in 0..parts {
            if i > 0 {
                s.push(':');
                if next().is_multiple_of(6) {
                    s.push(':');
                }
            }
            for _ in 0..next() % 6 {
                s.push(char::from(HEX[(next() % HEX.len() as u64) as usize]));
            }
        }
        if next().is_multiple_of(8) {
            s.insert_str(0, "::");
        }
        if next().is_multiple_of(8) {
            s.push(':');
        }
        let want = s.parse::<std::net::Ipv6Addr>().ok();
        assert_eq!(parse_v6_hex(s.as_bytes()), want, "{s:?}");
        ok += want.is_some() as usize;
    }
    assert!(ok > 5_000, "{ok}");
    assert_eq!(
        parse_ip("::ffff:c612:7"),
        Some(IpAddr::from([198, 18, 0, 7]))
    );
}
