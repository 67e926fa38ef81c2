//! The `KEYPORT_*` environment variables: which ones Keyport reads, and a
//! warning for each one it does not (a misspelt setting is otherwise ignored).

use super::DEFAULTS;

/// The `KEYPORT_*` variables Keyport reads: one per key of
/// `config/default.toml` (so a new setting is known as soon as it has a
/// default), plus the ones read from the environment only.
pub fn known_env_vars() -> Vec<String> {
    let mut names: Vec<String> = DEFAULTS
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|key| format!("KEYPORT_{}", key.to_ascii_uppercase()))
        .collect();
    names.extend(
        [
            "KEYPORT_CONFIG",
            "KEYPORT_MASTER_KEY",
            "KEYPORT_MASTER_KEY_PREVIOUS",
        ]
        .map(String::from),
    );
    names.sort();
    names.dedup();
    names
}

/// Every `KEYPORT_*` variable in `env` that Keyport does not read, with the
/// known name it was probably meant as: settings that are misspelt would
/// otherwise be ignored without a word.
pub fn unknown_env_vars(env: impl IntoIterator<Item = String>) -> Vec<(String, Option<String>)> {
    let known = known_env_vars();
    let mut unknown: Vec<(String, Option<String>)> = env
        .into_iter()
        .filter(|name| name.starts_with("KEYPORT_") && !known.contains(name))
        .map(|name| {
            let closest = closest_name(&name, &known);
            (name, closest)
        })
        .collect();
    unknown.sort();
    unknown
}

/// The known name that starts with `name` (a setting without its unit, e.g.
/// `KEYPORT_TOKEN_TTL`), or else the one fewest edits away, if close enough.
fn closest_name(name: &str, known: &[String]) -> Option<String> {
    if let Some(longer) = known
        .iter()
        .filter(|k| k.starts_with(name))
        .min_by_key(|k| k.len())
    {
        return Some(longer.clone());
    }
    let rest = name.trim_start_matches("KEYPORT_");
    known
        .iter()
        .map(|k| (edit_distance(rest, k.trim_start_matches("KEYPORT_")), k))
        .filter(|(distance, _)| *distance <= rest.len().div_ceil(3).max(2))
        .min()
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance, over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}
