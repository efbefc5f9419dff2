//! Cases from libcalico-go's parser tests (`lib/selector/parser/parser_test.go`: the
//! `selectorTests` table and `badSelectors`), plus the namespace-selector meaning of `all()`
//! and `global()` from its rule conversion (`updateprocessors/rules.go`).

use super::*;
use crate::policy::Labels;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn check(selector: &str, matching: &[&[(&str, &str)]], not_matching: &[&[(&str, &str)]]) {
    let parsed = CalicoSelector::parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
    for case in matching {
        assert!(
            parsed.matches(&labels(case), SelectorContext::Endpoint),
            "{selector:?} should match {case:?}"
        );
    }
    for case in not_matching {
        assert!(
            !parsed.matches(&labels(case), SelectorContext::Endpoint),
            "{selector:?} should not match {case:?}"
        );
    }
}

#[test]
fn upstream_selector_table() {
    check(
        r#"a == "b""#,
        &[&[("a", "b")], &[("a", "b"), ("c", "d")]],
        &[&[], &[("a", "c")], &[("c", "d")]],
    );
    check(
        r#"a == "b" && c == "d""#,
        &[&[("a", "b"), ("c", "d")]],
        &[&[], &[("a", "b"), ("c", "e")], &[("a", "c"), ("c", "d")], &[("c", "d")], &[("a", "b")]],
    );
    check(
        r#"a == "b" || c == "d""#,
        &[&[("a", "b"), ("c", "d")], &[("a", "b")], &[("c", "d")]],
        &[&[], &[("a", "e"), ("c", "e")], &[("c", "e")], &[("a", "e")]],
    );
    check(
        r#"a in {"'", '"', "c"}"#,
        &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]],
        &[&[], &[("a", "e")]],
    );
    check(
        r#"a not in {"'", '"', "c"}"#,
        &[&[], &[("a", "e")]],
        &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]],
    );
    check("a == 'a'", &[&[("a", "a")]], &[&[("a", "b")], &[]]);
    check(r#"a != "b""#, &[&[("a", "a")]], &[]);
    check(r#"a != "a""#, &[&[]], &[&[("a", "a")]]);
    check(
        r#"a contains "a""#,
        &[&[("a", "a")], &[("a", "bab")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("b", "aaa")]],
    );
    check(
        r#"a starts with "a""#,
        &[&[("a", "a")], &[("a", "abb")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "baa")], &[("b", "aaa")]],
    );
    check(
        r#"a ends with "a""#,
        &[&[("a", "a")], &[("a", "bba")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "aab")], &[("b", "aaa")]],
    );
    check(r#"a startswith "x""#, &[&[("a", "xy")]], &[&[("a", "yx")]]);
    check(r#"!a in {"a"}"#, &[&[("a", "b")]], &[&[("a", "a")]]);
    check(r#"a in {"a", "b"}"#, &[&[("a", "a")], &[("a", "b")]], &[&[("a", "c")]]);
    check(r#"a not in {"d", "e"}"#, &[&[("a", "a")]], &[]);
    check("a in {}", &[], &[&[("a", "")], &[]]);
    check("a not in {}", &[&[("a", "")], &[]], &[]);
    check("a in {'x',}", &[&[("a", "x")]], &[]);
    check("has(a)", &[&[("a", "b")]], &[&[("b", "b")]]);
    check("!has(a)", &[&[("b", "b")]], &[&[("a", "b")]]);
    for text in ["!!has(b)", "has( b )"] {
        check(text, &[&[("b", "x")]], &[&[("a", "b")]]);
    }
    for text in ["! has(a)", "!!! has(a)", "!!!has(a)", "!! ! has(a)", "! !!has(a)"] {
        check(text, &[], &[&[("a", "b")]]);
    }
    for text in ["", " ", "all()", " all()", "global()", " global()", " (all() )"] {
        check(text, &[&[], &[("a", "b")]], &[]);
    }
    check("a == 'a1' && b != 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]);
    check("a != 'a1' && !b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]);
    check("has(a) && !has(b)", &[&[("a", "a")]], &[]);
    check("!(!has(a) || has(b))", &[&[("a", "a")]], &[]);
    check("!(has(b) || !has(a))", &[&[("a", "a")]], &[]);
    check("a == 'a1' || b != 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[]);
    check("a != 'a1' || b != 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]);
    check("! a == 'a1' || ! b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]);
    check("a=='x'&&b!='y'", &[&[("a", "x")]], &[&[("a", "x"), ("b", "y")]]);
    check(
        "app.kubernetes.io/name == 'db'",
        &[&[("app.kubernetes.io/name", "db")]],
        &[&[("name", "db")]],
    );
}

#[test]
fn and_binds_tighter_than_or() {
    // a || (b && c), not (a || b) && c.
    check("has(a) || has(b) && has(c)", &[&[("a", "")], &[("b", ""), ("c", "")]], &[&[("b", "")]]);
    check("(has(a) || has(b)) && has(c)", &[&[("a", ""), ("c", "")]], &[&[("a", "")]]);
}

#[test]
fn upstream_rejected_selectors() {
    let bad = [
        "b == b",
        "b contains b",
        "b starts with b",
        "b ends with b",
        "'b1' == b",
        "b",
        "a b",
        "!",
        r#"foo == "bar" &"#,
        r#"foo == "bar" |"#,
        "foo != ||",
        r#"foo in {"", ||"#,
        r#"foo in """#,
        r#""FOO"#,
        r#""FOO'"#,
        "'FOO",
        "(",
        r#"(a == "foo""#,
        ")",
        "()",
        "%",
        r#"a == "b" && %"#,
        r#"a == "b" || %"#,
        "a ",
        "has(foo) &&",
        "a = 'b'",
        "has (a)",
        "has()",
        "all(x)",
        "a == 'b' c == 'd'",
        "a\n== 'b'",
        "a in {'x' 'y'}",
        "a starts 'x'",
        "a not 'x'",
    ];
    for text in bad {
        let error = CalicoSelector::parse(text).expect_err(text);
        assert_eq!(error.selector, text);
        assert!(error.offset <= text.len(), "{text:?}: {error}");
    }
}

#[test]
fn error_names_the_offset() {
    let error = CalicoSelector::parse("app == 'x' && %").unwrap_err();
    assert_eq!(error.offset, 14);
    assert!(error.to_string().contains("unexpected characters"), "{error}");
}

#[test]
fn namespace_context_all_and_global() {
    let all = CalicoSelector::parse("all()").unwrap();
    let global = CalicoSelector::parse("global()").unwrap();
    let empty = Labels::new();
    assert!(all.matches(&empty, SelectorContext::Namespace));
    assert!(
        !global.matches(&empty, SelectorContext::Namespace),
        "global() never selects a pod's namespace"
    );
    assert!(global.matches(&empty, SelectorContext::Endpoint));
    let not_global = CalicoSelector::parse("!global()").unwrap();
    assert!(not_global.matches(&empty, SelectorContext::Namespace));
}
