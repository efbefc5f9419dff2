//! A strict reader of the OpenMetrics text format (the rules of the OpenMetrics 1.0
//! specification that an exposition of counters, gauges, histograms and info metrics can
//! break): metadata before samples, each family's samples together, sample names that fit
//! their family's type, well-formed label sets, numeric values, cumulative histogram buckets
//! ending at `+Inf`, and `# EOF` as the last line.

use std::collections::{BTreeMap, BTreeSet};

/// One sample: name, labels, value.
pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

/// The families (name → type) and samples of an exposition; panics on any broken rule.
pub(crate) fn parse_families(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = vec![];
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut lines = text.split('\n').peekable();
    let mut eof = false;
    while let Some(line) = lines.next() {
        assert!(!eof, "text after # EOF: {line:?}");
        if line == "# EOF" {
            eof = true;
            assert_eq!(lines.next(), Some(""), "# EOF ends the text with one line feed");
            assert!(lines.next().is_none());
            break;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap(), parts.next().expect("a family name"));
            assert!(is_name(name), "bad family name {name:?}");
            if current.as_deref() != Some(name) {
                if let Some(prev) = current.take() {
                    done.insert(prev);
                }
                assert!(!done.contains(name), "family {name} split: {line:?}");
                current = Some(name.to_string());
            }
            match keyword {
                "TYPE" => {
                    let kind = parts.next().expect("a type");
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                        "{line}"
                    );
                    assert!(types.insert(name.into(), kind.into()).is_none(), "TYPE twice: {line}");
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line before # EOF");
        let (series, value) = line.rsplit_once(' ').expect("a sample value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        assert!(is_name(name), "bad sample name {name:?}");
        let family = current.clone().unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        let kind = types.get(&family).unwrap_or_else(|| panic!("family without TYPE: {line}"));
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("sample {name} inside family {family}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => unreachable!(),
        };
        assert!(allowed.contains(&suffix), "{name} does not fit a {kind}");
        if kind == "counter" || kind == "histogram" && suffix != "_sum" {
            assert!(value >= 0.0, "negative {kind}: {line}");
        }
        if kind == "info" {
            assert_eq!(value, 1.0, "an info sample is 1: {line}");
        }
        assert_eq!(suffix == "_bucket", labels.contains_key("le"), "le only on buckets: {line}");
        samples.push((name.to_string(), labels, value));
    }
    assert!(eof, "no # EOF");
    for (family, kind) in &types {
        if kind == "histogram" {
            check_histogram(family, &samples);
        }
    }
    (types, samples)
}

/// The samples of an exposition (see [`parse_families`]).
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    parse_families(text).1
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label set without `le`, and the (upper bound, count) buckets under it.
type Buckets = BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>>;

/// Buckets of each label set are cumulative, end at `+Inf`, and `+Inf` equals `_count`.
fn check_histogram(family: &str, samples: &[Sample]) {
    let bucket = format!("{family}_bucket");
    let mut by_labels: Buckets = BTreeMap::new();
    for (name, labels, value) in samples.iter().filter(|s| s.0 == bucket) {
        let mut key: Vec<_> = labels.clone().into_iter().collect();
        key.retain(|(k, _)| k != "le");
        let le = match labels["le"].as_str() {
            "+Inf" => f64::INFINITY,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("{name}: le {v:?}")),
        };
        by_labels.entry(key).or_default().push((le, *value));
    }
    assert!(!by_labels.is_empty(), "{family} has no buckets");
    for (key, buckets) in by_labels {
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{family}: le not increasing");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}: not cumulative");
        let (last_le, last) = *buckets.last().unwrap();
        assert!(last_le.is_infinite(), "{family}: no +Inf bucket");
        let count = samples
            .iter()
            .find(|s| s.0 == format!("{family}_count") && s.1.clone().into_iter().eq(key.clone()))
            .unwrap_or_else(|| panic!("{family}: no _count"));
        assert_eq!(count.2, last, "{family}: +Inf bucket and _count differ");
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert!(is_name(&name) && !name.contains(':'), "bad label name {name:?}");
        assert_eq!(chars.next(), Some('"'), "label {name}: value not quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                '\n' => panic!("raw line feed in a label value"),
                '"' => break,
                c => value.push(c),
            }
        }
        assert!(out.insert(name.clone(), value).is_none(), "label {name} twice");
        match chars.next() {
            Some(',') => assert!(chars.peek().is_some(), "trailing comma"),
            None => {}
            Some(c) => panic!("unexpected {c:?} after a label"),
        }
    }
    out
}
