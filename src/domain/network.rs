//! Address ranges: the proxies whose forwarding headers are believed, and
//! the addresses a key may be used from.

use std::fmt;
use std::net::IpAddr;

/// A CIDR range (`10.0.0.0/8`, `2001:db8::/32`) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let bad = || format!("`{}` is not an address or CIDR range", preview(raw));
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(IpRange { network, prefix })
    }

    /// The range's first address with the host bits cleared: `10.1.2.3/8`
    /// is `10.0.0.0/8`.
    pub fn network(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(net) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(net) & mask).into())
            }
            IpAddr::V6(net) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(net) & mask).into())
            }
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the two ranges share an address. CIDR ranges either nest or
    /// are disjoint, so one of them contains the other's first address.
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        prefix_holds(self.network, self.prefix, address)
    }
}

/// Whether `address` shares its first `prefix` bits with `network` (same
/// family only: an IPv4 address is never in an IPv6 range, nor the reverse).
pub(crate) fn prefix_holds(network: IpAddr, prefix: u8, address: IpAddr) -> bool {
    match (network, address) {
        (IpAddr::V4(net), IpAddr::V4(addr)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(addr) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(addr)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(addr) & mask
        }
        _ => false,
    }
}

/// Always `network/prefix`, with the host bits cleared: `10.0.0.0/8`,
/// `192.0.2.7/32`, `2001:db8::/32`.
impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

fn preview(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// The addresses a key may be used from: at most [`SourceAllowList::MAX`]
/// CIDR ranges, IPv4 or IPv6, none overlapping another. Empty: anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAllowList(Vec<IpRange>);

impl SourceAllowList {
    pub const MAX: usize = 20;

    /// Parses ranges as people write them. Refused: a malformed range, one
    /// with host bits set (`10.1.2.3/8`: which was meant, the address or the
    /// network?), an IPv4-mapped IPv6 range, more than [`Self::MAX`] ranges,
    /// and ranges that overlap (a duplicate included), so the list says
    /// plainly what it allows.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Self, String> {
        if ranges.len() > Self::MAX {
            return Err(format!(
                "a key may carry at most {} address ranges, not {}",
                Self::MAX,
                ranges.len()
            ));
        }
        let mut parsed: Vec<IpRange> = Vec::with_capacity(ranges.len());
        for raw in ranges {
            let raw = raw.as_ref().trim();
            let range = IpRange::parse(raw).map_err(|_| {
                format!(
                    "`{}` is not a CIDR range such as 10.0.0.0/8 or 2001:db8::/32",
                    preview(raw)
                )
            })?;
            if range.network() != range.network {
                return Err(format!(
                    "`{}` has host bits set: write {range} for the whole range, or {}/{} for the one address",
                    preview(raw),
                    range.network,
                    if range.network.is_ipv4() { 32 } else { 128 },
                ));
            }
            if let IpAddr::V6(v6) = range.network
                && v6.to_ipv4_mapped().is_some()
            {
                return Err(format!(
                    "`{}` is an IPv4-mapped IPv6 range: write it as an IPv4 range",
                    preview(raw)
                ));
            }
            if let Some(earlier) = parsed.iter().find(|other| other.overlaps(&range)) {
                return Err(if *earlier == range {
                    format!("the range {range} is listed twice")
                } else {
                    format!("the ranges {earlier} and {range} overlap: list only the larger one")
                });
            }
            parsed.push(range);
        }
        Ok(SourceAllowList(parsed))
    }

    /// The stored form: the ranges, space-separated; `None` when empty.
    pub fn to_stored(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.to_strings().join(" "))
    }

    /// Reads the stored form back (trusted: it was checked when stored).
    pub fn from_stored(stored: Option<&str>) -> Result<Self, String> {
        stored
            .unwrap_or_default()
            .split(' ')
            .filter(|part| !part.is_empty())
            .map(IpRange::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(SourceAllowList)
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(IpRange::to_string).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` may use the key: always when the list is empty;
    /// otherwise only from inside a range, and never from an unknown address.
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        self.0.is_empty() || address.is_some_and(|ip| self.0.iter().any(|r| r.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let private = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(private.contains(ip("10.1.2.3")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(private.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let one = IpRange::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let everything = IpRange::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("8.8.8.8")));
        let v6 = IpRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }

    #[test]
    fn ranges_print_canonically_and_overlap_when_they_nest() {
        assert_eq!(
            IpRange::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            IpRange::parse("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            IpRange::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        let wide = IpRange::parse("10.0.0.0/8").unwrap();
        let narrow = IpRange::parse("10.1.0.0/16").unwrap();
        let apart = IpRange::parse("11.0.0.0/8").unwrap();
        assert!(wide.overlaps(&narrow) && narrow.overlaps(&wide));
        assert!(!wide.overlaps(&apart));
        assert!(!wide.overlaps(&IpRange::parse("::/0").unwrap()));
    }

    #[test]
    fn allow_lists_refuse_overlaps_host_bits_and_too_many_ranges() {
        let list = SourceAllowList::parse(&["10.0.0.0/8", " 2001:db8::/32 ", "192.0.2.7"]).unwrap();
        assert_eq!(
            list.to_stored().as_deref(),
            Some("10.0.0.0/8 2001:db8::/32 192.0.2.7/32")
        );
        assert_eq!(
            SourceAllowList::from_stored(list.to_stored().as_deref()).unwrap(),
            list
        );
        assert!(list.allows(Some(ip("10.200.0.1"))));
        assert!(list.allows(Some(ip("::ffff:10.0.0.1"))));
        assert!(list.allows(Some(ip("2001:db8:1::9"))));
        assert!(!list.allows(Some(ip("127.0.0.1"))));
        assert!(
            !list.allows(None),
            "an unknown address is outside every range"
        );
        assert!(SourceAllowList::default().allows(None));
        assert_eq!(
            SourceAllowList::parse::<&str>(&[]).unwrap().to_stored(),
            None
        );

        for (bad, says) in [
            (vec!["10.0.0.0/8", "10.1.0.0/16"], "overlap"),
            (vec!["10.0.0.0/8", "10.0.0.0/8"], "twice"),
            (vec!["10.0.0.0/33"], "not a CIDR range"),
            (vec!["ten"], "not a CIDR range"),
            (vec!["10.1.2.3/8"], "host bits"),
            (vec!["::ffff:10.0.0.0/104"], "IPv4-mapped"),
        ] {
            let err = SourceAllowList::parse(&bad).expect_err("refused");
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let many: Vec<String> = (0..21).map(|n| format!("10.{n}.0.0/16")).collect();
        assert!(
            SourceAllowList::parse(&many)
                .unwrap_err()
                .contains("at most 20")
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/-1",
        ] {
            assert!(IpRange::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
