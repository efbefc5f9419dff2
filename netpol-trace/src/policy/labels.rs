//! Label syntax as the API server checks it: keys are qualified names with an optional
//! DNS-subdomain prefix, values are at most 63 characters of `[A-Za-z0-9_.-]` starting and
//! ending with an alphanumeric (or empty).

const NAME_MAX: usize = 63;
const PREFIX_MAX: usize = 253;

/// Checks a label key (`[prefix/]name`); the error says what is wrong.
pub fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if prefix.is_some_and(|prefix| !is_dns_subdomain(prefix)) {
        return Err(format!(
            "invalid label key {key:?}: prefix must be a lowercase DNS subdomain of at most {PREFIX_MAX} characters"
        ));
    }
    if !is_label_name(name) {
        return Err(format!(
            "invalid label key {key:?}: name must be 1-{NAME_MAX} characters of [A-Za-z0-9_.-], starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a label value; the error says what is wrong.
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: must be empty or at most {NAME_MAX} characters of [A-Za-z0-9_.-], starting and ending with an alphanumeric"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= NAME_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= PREFIX_MAX
        && s.split('.').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= NAME_MAX
                && is_lower_alnum(bytes[0])
                && is_lower_alnum(bytes[bytes.len() - 1])
                && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
        })
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["app", "kubernetes.io/metadata.name", "a.b-c_d", "x/Y", "A1"] {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        for bad in
            ["", "-app", "app-", "Kubernetes.io/x", "a/", "/a", "a b", &"x".repeat(64), "a/b/c"]
        {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        for ok in ["", "web", "v1.2_3", &"x".repeat(63)] {
            assert_eq!(validate_value(ok), Ok(()), "{ok}");
        }
        for bad in ["-web", "web.", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_value(bad).is_err(), "{bad}");
        }
    }
}
