//! §4.3 step 9: does a proof's `htu` name the request's URI?

/// §4.3 step 9: `htu` and the request's URI compared after RFC 3986 §6.2.2
/// and §6.2.3 normalisation (case of scheme and host, default port, dot
/// segments, percent-encoding case), ignoring query and fragment.
pub fn same_target_uri(htu: &str, expected: &str) -> bool {
    let (Ok(htu), Ok(expected)) = (url::Url::parse(htu), url::Url::parse(expected)) else {
        return false;
    };
    htu.scheme() == expected.scheme()
        && htu.username().is_empty()
        && htu.password().is_none()
        && htu.host_str().map(str::to_ascii_lowercase)
            == expected.host_str().map(str::to_ascii_lowercase)
        && htu.port_or_known_default() == expected.port_or_known_default()
        && normalised_path(htu.path()) == normalised_path(expected.path())
}

/// Percent-encodings of unreserved characters decoded and the others in
/// upper case (RFC 3986 §6.2.2.1, §6.2.2.2); an empty path is `/`.
fn normalised_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len().max(1));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let byte = h * 16 + l;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push((bytes[i + 1] as char).to_ascii_uppercase());
                out.push((bytes[i + 2] as char).to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_is_compared_after_normalisation_without_query_or_fragment() {
        let expected = "https://auth.example.com/oauth/token";
        for same in [
            "https://auth.example.com/oauth/token",
            "HTTPS://Auth.Example.COM:443/oauth/token",
            "https://auth.example.com/oauth/token?x=1#f",
            "https://auth.example.com/oauth/./token",
            "https://auth.example.com/%6Fauth/token",
        ] {
            assert!(same_target_uri(same, expected), "{same}");
        }
        for other in [
            "http://auth.example.com/oauth/token",
            "https://auth.example.com:8443/oauth/token",
            "https://evil.example.com/oauth/token",
            "https://auth.example.com/oauth/token/",
            "https://auth.example.com/oauth/introspect",
            "https://user@auth.example.com/oauth/token",
            "/oauth/token",
            "not a url",
        ] {
            assert!(!same_target_uri(other, expected), "{other}");
        }
    }
}
