//! The addresses Keyport never connects to on a tenant's behalf (webhook
//! receivers, trusted issuers' JWKS URLs): one table, [`SPECIAL_BLOCKS`],
//! transcribed row by row from IANA's registries so a reader can check each
//! row against its source, and [`TargetPolicy`], the one judge that reads it.
//!
//! The table holds every block of the IPv4 and IPv6 Special-Purpose Address
//! Registries that is not globally reachable, IPv4 multicast and the limited
//! broadcast address, and every IPv6 block outside `2000::/3` (the only space
//! IANA allocates as global unicast: the rest is reserved by the IETF,
//! unique-local, link-local, the deprecated site-local block or multicast).
//! Two wholesale refusals go further than the registries, because no webhook
//! receiver or JWKS server can live there: `192.0.0.0/24` and `2001::/23`
//! (IETF protocol assignments) are refused whole, including the anycast
//! service addresses (PCP, TURN, DNS-SD) and the AMT, AS112 and ORCHID
//! sub-blocks IANA marks globally reachable.
//!
//! Addresses that carry an IPv4 address are decoded and the IPv4 address is
//! judged too (so the refusal can say what it would reach):
//! - IPv4-mapped `::ffff:a.b.c.d` *is* the IPv4 address to the socket API: it
//!   is judged by the IPv4 address alone.
//! - NAT64 (`64:ff9b::/96`, local-use `64:ff9b:1::/48`), 6to4 (`2002::/16`),
//!   Teredo (`2001::/32`) and the deprecated IPv4-compatible `::a.b.c.d` are
//!   refused outright, whatever they carry. Each hands the packet to a
//!   translator or relay whose own reach Keyport cannot see: a NAT64 gateway
//!   inside the operator's network reaches the operator's private IPv4
//!   networks, and the local-use prefix may place the IPv4 address at any of
//!   RFC 6052's bit positions, so a decoded address cannot be trusted to be
//!   the one reached. A multi-tenant service should not let one tenant find
//!   that out. A receiver on IPv4 is registered by its IPv4 address or a name
//!   with an A record instead. (A NAT64 prefix of the operator's own choosing
//!   looks like any public IPv6 address: block it at the egress firewall.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an entry of [`SPECIAL_BLOCKS`] was transcribed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// <https://www.iana.org/assignments/iana-ipv4-special-registry/>
    Ipv4SpecialPurpose,
    /// <https://www.iana.org/assignments/multicast-addresses/>
    Ipv4Multicast,
    /// <https://www.iana.org/assignments/iana-ipv6-special-registry/>
    Ipv6SpecialPurpose,
    /// <https://www.iana.org/assignments/ipv6-address-space/>
    Ipv6AddressSpace,
}

impl Registry {
    pub fn name(self) -> &'static str {
        match self {
            Registry::Ipv4SpecialPurpose => "IANA IPv4 Special-Purpose Address Registry",
            Registry::Ipv4Multicast => "IANA IPv4 Multicast Address Space Registry",
            Registry::Ipv6SpecialPurpose => "IANA IPv6 Special-Purpose Address Registry",
            Registry::Ipv6AddressSpace => "IANA Internet Protocol Version 6 Address Space",
        }
    }
}

/// What a block is, in the words a refusal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Loopback,
    Private,
    SharedAddressSpace,
    SiteLocal,
    Benchmarking,
    LinkLocal,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    /// An IPv6 block whose addresses carry an IPv4 address.
    Embeds(Embedding),
}

impl Kind {
    /// Whether `*_allow_private_targets` opens the block: addresses of hosts
    /// on a network someone runs (tests, receivers on a private network).
    /// Never opened: unspecified (`0.0.0.0` reaches this host), link-local
    /// (the cloud metadata service), multicast, broadcast, documentation and
    /// reserved addresses, translators and tunnels. None of them is a
    /// receiver, and the link-local one is what an SSRF is usually after.
    pub fn opened_by_allow_private(self) -> bool {
        matches!(
            self,
            Kind::Loopback
                | Kind::Private
                | Kind::SharedAddressSpace
                | Kind::SiteLocal
                | Kind::Benchmarking
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Unspecified => "an unspecified address",
            Kind::Loopback => "a loopback address",
            Kind::Private => "a private address",
            Kind::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Kind::SiteLocal => "a site-local address (deprecated)",
            Kind::Benchmarking => "a benchmarking address",
            Kind::LinkLocal => "a link-local address (such as the cloud metadata service)",
            Kind::Multicast => "a multicast address",
            Kind::Broadcast => "a broadcast address",
            Kind::Documentation => "a documentation address",
            Kind::Reserved => "a reserved address",
            Kind::Embeds(embedding) => embedding.describe(),
        }
    }
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`: the IPv4 address itself, to the socket API.
    Mapped,
    /// `::a.b.c.d`, deprecated by RFC 4291 §2.5.5.1.
    Compatible,
    /// `64:ff9b::a.b.c.d`, the Well-Known Prefix (RFC 6052 §2.1).
    Nat64,
    /// `64:ff9b:1::/48` (RFC 8215); decoded in the /96 layout, the common
    /// one (the refusal does not depend on it).
    Nat64LocalUse,
    /// `2002:AABB:CCDD::/48` (RFC 3056 §2).
    SixToFour,
    /// `2001:0:server:flags:port:client` with the client's IPv4 address
    /// inverted (RFC 4380 §4): decoded to the client, where packets go.
    Teredo,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Embedding::Mapped => "an IPv4-mapped address",
            Embedding::Compatible => "an IPv4-compatible address (deprecated)",
            Embedding::Nat64 => "a NAT64 address",
            Embedding::Nat64LocalUse => "a local-use NAT64 address",
            Embedding::SixToFour => "a 6to4 address",
            Embedding::Teredo => "a Teredo address",
        }
    }

    /// The IPv4 address `address` carries.
    pub fn decode(self, address: Ipv6Addr) -> Ipv4Addr {
        let bits = u128::from(address);
        match self {
            Embedding::Mapped
            | Embedding::Compatible
            | Embedding::Nat64
            | Embedding::Nat64LocalUse => Ipv4Addr::from(bits as u32),
            Embedding::SixToFour => Ipv4Addr::from((bits >> 80) as u32),
            Embedding::Teredo => Ipv4Addr::from(!(bits as u32)),
        }
    }
}

/// One row of [`SPECIAL_BLOCKS`]: a block as its registry names it.
#[derive(Debug, PartialEq, Eq)]
pub struct SpecialBlock {
    pub network: IpAddr,
    pub prefix: u8,
    /// The registry's name for the block.
    pub name: &'static str,
    /// The RFC the registry cites.
    pub reference: &'static str,
    pub registry: Registry,
    pub kind: Kind,
}

impl SpecialBlock {
    pub fn contains(&self, address: IpAddr) -> bool {
        super::network::prefix_holds(self.network, self.prefix, address)
    }
}

/// `network/prefix name, reference`: what a reader looks up in the registry.
impl fmt::Display for SpecialBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {}, {}",
            self.network, self.prefix, self.name, self.reference
        )
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
}

const fn block(
    network: IpAddr,
    prefix: u8,
    name: &'static str,
    reference: &'static str,
    registry: Registry,
    kind: Kind,
) -> SpecialBlock {
    SpecialBlock {
        network,
        prefix,
        name,
        reference,
        registry,
        kind,
    }
}

use Embedding::*;
use Kind::*;
use Registry::*;

/// Every block Keyport refuses, with its registry's name for it. An address
/// is judged by the most specific block that holds it (`192.0.0.8/32` within
/// `192.0.0.0/24`, Teredo within `2001::/23`, loopback within `::/96`).
#[rustfmt::skip]
pub static SPECIAL_BLOCKS: &[SpecialBlock] = &[
    // IANA IPv4 Special-Purpose Address Registry: every row that is not
    // globally reachable.
    block(v4(0, 0, 0, 0), 8, "\"This network\"", "RFC 791 §3.2", Ipv4SpecialPurpose, Unspecified),
    block(v4(0, 0, 0, 0), 32, "\"This host on this network\"", "RFC 1122 §3.2.1.3", Ipv4SpecialPurpose, Unspecified),
    block(v4(10, 0, 0, 0), 8, "Private-Use", "RFC 1918", Ipv4SpecialPurpose, Private),
    block(v4(100, 64, 0, 0), 10, "Shared Address Space", "RFC 6598", Ipv4SpecialPurpose, SharedAddressSpace),
    block(v4(127, 0, 0, 0), 8, "Loopback", "RFC 1122 §3.2.1.3", Ipv4SpecialPurpose, Loopback),
    block(v4(169, 254, 0, 0), 16, "Link Local", "RFC 3927", Ipv4SpecialPurpose, LinkLocal),
    block(v4(172, 16, 0, 0), 12, "Private-Use", "RFC 1918", Ipv4SpecialPurpose, Private),
    // Whole, with its globally reachable anycast rows 192.0.0.9/32 (PCP)
    // and 192.0.0.10/32 (TURN): service addresses, never a receiver.
    block(v4(192, 0, 0, 0), 24, "IETF Protocol Assignments", "RFC 6890 §2.1", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 0, 0, 0), 29, "IPv4 Service Continuity Prefix", "RFC 7335", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 0, 0, 8), 32, "IPv4 dummy address", "RFC 7600", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 0, 0, 170), 32, "NAT64/DNS64 Discovery", "RFC 8880 §7.2", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 0, 0, 171), 32, "NAT64/DNS64 Discovery", "RFC 8880 §7.2", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 0, 2, 0), 24, "Documentation (TEST-NET-1)", "RFC 5737", Ipv4SpecialPurpose, Documentation),
    block(v4(192, 88, 99, 0), 24, "Deprecated (6to4 Relay Anycast)", "RFC 7526", Ipv4SpecialPurpose, Reserved),
    block(v4(192, 168, 0, 0), 16, "Private-Use", "RFC 1918", Ipv4SpecialPurpose, Private),
    block(v4(198, 18, 0, 0), 15, "Benchmarking", "RFC 2544", Ipv4SpecialPurpose, Benchmarking),
    block(v4(198, 51, 100, 0), 24, "Documentation (TEST-NET-2)", "RFC 5737", Ipv4SpecialPurpose, Documentation),
    block(v4(203, 0, 113, 0), 24, "Documentation (TEST-NET-3)", "RFC 5737", Ipv4SpecialPurpose, Documentation),
    block(v4(240, 0, 0, 0), 4, "Reserved", "RFC 1112 §4", Ipv4SpecialPurpose, Reserved),
    block(v4(255, 255, 255, 255), 32, "Limited Broadcast", "RFC 8190, RFC 919 §7", Ipv4SpecialPurpose, Broadcast),
    // IANA IPv4 Multicast Address Space Registry: all of it.
    block(v4(224, 0, 0, 0), 4, "Multicast", "RFC 5771", Ipv4Multicast, Multicast),

    // IANA IPv6 Special-Purpose Address Registry: every row that is not
    // globally reachable, and the embedding ones (judged by what they carry,
    // or refused outright: see the module's comment).
    block(v6(0, 0, 0, 0, 0, 0, 0, 1), 128, "Loopback Address", "RFC 4291", Ipv6SpecialPurpose, Loopback),
    block(v6(0, 0, 0, 0, 0, 0, 0, 0), 128, "Unspecified Address", "RFC 4291", Ipv6SpecialPurpose, Unspecified),
    block(v6(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, "IPv4-mapped Address", "RFC 4291", Ipv6SpecialPurpose, Embeds(Mapped)),
    block(v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, "IPv4-IPv6 Translat.", "RFC 6052", Ipv6SpecialPurpose, Embeds(Nat64)),
    block(v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "IPv4-IPv6 Translat.", "RFC 8215", Ipv6SpecialPurpose, Embeds(Nat64LocalUse)),
    block(v6(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "Discard-Only Address Block", "RFC 6666", Ipv6SpecialPurpose, Reserved),
    block(v6(0x100, 0, 0, 1, 0, 0, 0, 0), 64, "Dummy IPv6 Prefix", "RFC 9780", Ipv6SpecialPurpose, Reserved),
    // Whole, with its globally reachable rows (anycast 2001:1::1-3, AMT
    // 2001:3::/32, AS112 2001:4:112::/48, ORCHIDv2 2001:20::/28, DETs
    // 2001:30::/28): services and identifiers, never a receiver.
    block(v6(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF Protocol Assignments", "RFC 2928", Ipv6SpecialPurpose, Reserved),
    block(v6(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "TEREDO", "RFC 4380, RFC 8190", Ipv6SpecialPurpose, Embeds(Teredo)),
    block(v6(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "Benchmarking", "RFC 5180", Ipv6SpecialPurpose, Benchmarking),
    block(v6(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "Deprecated (previously ORCHID)", "RFC 4843", Ipv6SpecialPurpose, Reserved),
    block(v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "Documentation", "RFC 3849", Ipv6SpecialPurpose, Documentation),
    block(v6(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4", "RFC 3056", Ipv6SpecialPurpose, Embeds(SixToFour)),
    block(v6(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "Documentation", "RFC 9637", Ipv6SpecialPurpose, Documentation),
    block(v6(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "Segment Routing (SRv6) SIDs", "RFC 9602", Ipv6SpecialPurpose, Reserved),
    block(v6(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "Unique-Local", "RFC 4193, RFC 8190", Ipv6SpecialPurpose, Private),
    block(v6(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "Link-Local Unicast", "RFC 4291", Ipv6SpecialPurpose, LinkLocal),

    // IANA IPv6 Address Space: everything outside 2000::/3, Global Unicast.
    // The deprecated IPv4-compatible addresses are a note on ::/8 there.
    block(v6(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible IPv6 address (deprecated)", "RFC 4291 §2.5.5.1", Ipv6AddressSpace, Embeds(Compatible)),
    block(v6(0, 0, 0, 0, 0, 0, 0, 0), 8, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x100, 0, 0, 0, 0, 0, 0, 0), 8, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x200, 0, 0, 0, 0, 0, 0, 0), 7, "Reserved by IETF", "RFC 4048", Ipv6AddressSpace, Reserved),
    block(v6(0x400, 0, 0, 0, 0, 0, 0, 0), 6, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x800, 0, 0, 0, 0, 0, 0, 0), 5, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x1000, 0, 0, 0, 0, 0, 0, 0), 4, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x4000, 0, 0, 0, 0, 0, 0, 0), 3, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x6000, 0, 0, 0, 0, 0, 0, 0), 3, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0x8000, 0, 0, 0, 0, 0, 0, 0), 3, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xa000, 0, 0, 0, 0, 0, 0, 0), 3, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xc000, 0, 0, 0, 0, 0, 0, 0), 3, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xe000, 0, 0, 0, 0, 0, 0, 0), 4, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xf000, 0, 0, 0, 0, 0, 0, 0), 5, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xf800, 0, 0, 0, 0, 0, 0, 0), 6, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xfe00, 0, 0, 0, 0, 0, 0, 0), 9, "Reserved by IETF", "RFC 4291", Ipv6AddressSpace, Reserved),
    block(v6(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "Reserved by IETF (deprecated site-local)", "RFC 3879", Ipv6AddressSpace, SiteLocal),
    block(v6(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "Multicast", "RFC 4291", Ipv6AddressSpace, Multicast),
];

/// The most specific row of [`SPECIAL_BLOCKS`] that holds `address`.
pub fn special_block(address: IpAddr) -> Option<&'static SpecialBlock> {
    SPECIAL_BLOCKS
        .iter()
        .filter(|b| b.contains(address))
        .max_by_key(|b| b.prefix)
}

/// Why an address is refused: its block, and for an address that carries an
/// IPv4 address, that address and the block refusing it (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    block: &'static SpecialBlock,
    embedded: Option<(Ipv4Addr, Option<&'static SpecialBlock>)>,
}

impl Refusal {
    /// Why `address` is not a public unicast address, or `None` when it is.
    pub fn of(address: IpAddr) -> Option<Refusal> {
        let block = special_block(address)?;
        let Kind::Embeds(embedding) = block.kind else {
            return Some(Refusal {
                block,
                embedded: None,
            });
        };
        let IpAddr::V6(v6) = address else {
            return None;
        };
        let carried = embedding.decode(v6);
        let carried_block = special_block(IpAddr::V4(carried));
        match (embedding, carried_block) {
            // The IPv4 address itself: public, so is this.
            (Embedding::Mapped, None) => None,
            _ => Some(Refusal {
                block,
                embedded: Some((carried, carried_block)),
            }),
        }
    }

    /// The refusal of a `localhost` name (RFC 6761 §6.3: loopback).
    pub fn localhost() -> Refusal {
        Refusal {
            block: special_block(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .expect("loopback is in the table"),
            embedded: None,
        }
    }

    /// The block the address is in.
    pub fn block(&self) -> &'static SpecialBlock {
        self.block
    }

    /// Whether `*_allow_private_targets` lifts this refusal (see
    /// [`Kind::opened_by_allow_private`]); an IPv4-mapped address is opened
    /// when the IPv4 address it is would be.
    pub fn opened_by_allow_private(&self) -> bool {
        match (self.block.kind, self.embedded) {
            (Kind::Embeds(Embedding::Mapped), Some((_, Some(carried)))) => {
                carried.kind.opened_by_allow_private()
            }
            (kind, _) => kind.opened_by_allow_private(),
        }
    }
}

/// In words, with the block as the registry names it: "a benchmarking
/// address (198.18.0.0/15 Benchmarking, RFC 2544)".
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.block.kind.describe(), self.block)?;
        if let Some((carried, carried_block)) = self.embedded {
            write!(f, " that reaches {carried}")?;
            if let Some(carried_block) = carried_block {
                write!(f, ", {} ({})", carried_block.kind.describe(), carried_block)?;
            }
            if self.block.kind != Kind::Embeds(Embedding::Mapped) {
                f.write_str(
                    "; translated and tunnelled addresses are refused whatever they reach",
                )?;
            }
        }
        Ok(())
    }
}

/// Where Keyport may connect for webhooks and trusted issuers' keys. By
/// default only public addresses over https.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Allow plain `http://` URLs.
    pub allow_http: bool,
    /// Allow hosts on a network someone runs: loopback, private-use, shared
    /// (100.64/10), unique-local, site-local and benchmarking addresses
    /// (tests, or receivers on a private network by choice). The other
    /// blocks of [`SPECIAL_BLOCKS`] stay refused.
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Why `address` may not be connected to, or `None` when it may.
    pub fn refuses(&self, address: IpAddr) -> Option<Refusal> {
        Refusal::of(address).filter(|r| !(self.allow_private && r.opened_by_allow_private()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s} is an address"))
    }

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: false,
    };
    const PRIVATE_ALLOWED: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_private: true,
    };

    /// IANA's registries transcribed a second time, independently of
    /// `SPECIAL_BLOCKS`, each with a word its refusal must say. An address
    /// in none of these is public. `::ffff:0:0/96` is not listed: an
    /// IPv4-mapped address is judged as its IPv4 address.
    const IANA: &[(&str, &str)] = &[
        // IPv4 Special-Purpose Address Registry, Globally Reachable = False
        // (192.0.0.0/24 taken whole), the multicast space and broadcast.
        ("0.0.0.0/8", "unspecified"),
        ("0.0.0.0/32", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF Protocol Assignments"),
        ("192.0.0.0/29", "Service Continuity"),
        ("192.0.0.8/32", "dummy"),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery"),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 Relay Anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "broadcast"),
        // IPv6 Special-Purpose Address Registry (2001::/23 taken whole).
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "Discard-Only"),
        ("100:0:0:1::/64", "Dummy"),
        ("2001::/23", "IETF Protocol Assignments"),
        ("2001::/32", "Teredo"),
        ("2001:2::/48", "benchmarking"),
        ("2001:10::/28", "ORCHID"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        // IPv6 Address Space: outside 2000::/3.
        ("::/8", "Reserved by IETF"),
        ("100::/8", "Reserved by IETF"),
        ("200::/7", "Reserved by IETF"),
        ("400::/6", "Reserved by IETF"),
        ("800::/5", "Reserved by IETF"),
        ("1000::/4", "Reserved by IETF"),
        ("4000::/3", "Reserved by IETF"),
        ("6000::/3", "Reserved by IETF"),
        ("8000::/3", "Reserved by IETF"),
        ("a000::/3", "Reserved by IETF"),
        ("c000::/3", "Reserved by IETF"),
        ("e000::/4", "Reserved by IETF"),
        ("f000::/5", "Reserved by IETF"),
        ("f800::/6", "Reserved by IETF"),
        ("fe00::/9", "Reserved by IETF"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ];

    /// A block's first and last address, as numbers (IPv4 in the low bits).
    fn bounds(cidr: &str) -> (bool, u128, u128) {
        let (network, prefix) = cidr.split_once('/').expect("a CIDR");
        let prefix: u32 = prefix.parse().unwrap();
        match ip(network) {
            IpAddr::V4(net) => {
                let size = 1u128 << (32 - prefix);
                let first = u128::from(u32::from(net));
                (true, first, first + size - 1)
            }
            IpAddr::V6(net) => {
                let host_bits = u128::MAX.checked_shr(prefix).unwrap_or(0);
                let first = u128::from(net);
                (false, first, first | host_bits)
            }
        }
    }

    fn address(is_v4: bool, n: u128) -> IpAddr {
        if is_v4 {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(n))
        }
    }

    /// The independent answer: the word of the most specific `IANA` row
    /// holding `address` (an IPv4-mapped address: its IPv4 address's).
    fn expected(address: IpAddr) -> Option<&'static str> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        IANA.iter()
            .filter_map(|(cidr, word)| {
                let (is_v4, first, last) = bounds(cidr);
                let n = match address {
                    IpAddr::V4(a) if is_v4 => u128::from(u32::from(a)),
                    IpAddr::V6(a) if !is_v4 => u128::from(a),
                    _ => return None,
                };
                (first..=last).contains(&n).then_some((last - first, *word))
            })
            .min_by_key(|(size, _)| *size)
            .map(|(_, word)| word)
    }

    fn check(address: IpAddr, why: &str) {
        let refusal = STRICT.refuses(address).map(|r| r.to_string());
        match expected(address) {
            Some(word) => {
                let said = refusal.unwrap_or_else(|| panic!("{address} ({why}) was accepted"));
                assert!(
                    said.to_lowercase().contains(&word.to_lowercase()),
                    "{address} ({why}): {said:?} does not say {word:?}"
                );
            }
            None => assert_eq!(refusal, None, "{address} ({why}) is public"),
        }
    }

    #[test]
    fn every_special_purpose_block_is_refused_at_its_edges_and_its_public_neighbours_are_not() {
        for (cidr, _) in IANA {
            let (is_v4, first, last) = bounds(cidr);
            let middle = first + (last - first) / 2;
            for (n, why) in [(first, "first"), (middle, "middle"), (last, "last")] {
                check(address(is_v4, n), &format!("{why} of {cidr}"));
            }
            // Just outside: refused only when another block holds it.
            let top = if is_v4 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
            if first > 0 {
                check(address(is_v4, first - 1), &format!("just below {cidr}"));
            }
            if last < top {
                check(address(is_v4, last + 1), &format!("just above {cidr}"));
            }
        }
        // Public neighbours, named so a reader sees they are reached.
        for public in [
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.88.98.255",
            "192.88.100.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
            "1.1.1.1",
            "::ffff:93.184.216.34",
            "2000::",
            "2001:200::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:4860:4860::8888",
            "2003::",
            "2606:4700::1111",
            "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff:1000::",
        ] {
            assert_eq!(STRICT.refuses(ip(public)), None, "{public} is public");
            assert_eq!(expected(ip(public)), None, "{public}: the test's own table");
        }
    }

    #[test]
    fn the_table_names_its_registry_for_every_row_and_lists_no_row_twice() {
        for (i, row) in SPECIAL_BLOCKS.iter().enumerate() {
            assert!(
                !row.name.is_empty() && row.reference.starts_with("RFC "),
                "{row}"
            );
            let max = if row.network.is_ipv4() { 32 } else { 128 };
            assert!(row.prefix <= max, "{row}");
            assert!(row.contains(row.network), "{row}: host bits set");
            assert!(!row.registry.name().is_empty());
            for other in &SPECIAL_BLOCKS[i + 1..] {
                assert!(
                    !(other.network == row.network && other.prefix == row.prefix),
                    "{row} is listed twice"
                );
            }
        }
        // And the table holds every block of the transcription above.
        for (cidr, _) in IANA {
            let (network, prefix) = cidr.split_once('/').unwrap();
            let prefix: u8 = prefix.parse().unwrap();
            let found = SPECIAL_BLOCKS
                .iter()
                .any(|b| b.network == ip(network) && b.prefix == prefix);
            assert!(found, "{cidr} is not in SPECIAL_BLOCKS");
        }
    }

    #[test]
    fn addresses_that_carry_an_ipv4_address_say_what_it_is() {
        for (address, says) in [
            (
                "64:ff9b::a00:1",
                "NAT64 address (64:ff9b::/96 IPv4-IPv6 Translat., RFC 6052) that reaches 10.0.0.1, a private address (10.0.0.0/8",
            ),
            (
                "64:ff9b::5db8:d822",
                "that reaches 93.184.216.34; translated and tunnelled addresses are refused",
            ),
            (
                "64:ff9b:1::a9fe:a9fe",
                "that reaches 169.254.169.254, a link-local address",
            ),
            (
                "2002:7f00:1::1",
                "6to4 address (2002::/16 6to4, RFC 3056) that reaches 127.0.0.1, a loopback address",
            ),
            ("2002:5db8:d822::1", "that reaches 93.184.216.34;"),
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                "Teredo address (2001::/32 TEREDO, RFC 4380, RFC 8190) that reaches 10.0.0.1",
            ),
            ("::a00:1", "IPv4-compatible address (deprecated) (::/96"),
            (
                "::ffff:127.0.0.1",
                "IPv4-mapped address (::ffff:0.0.0.0/96 IPv4-mapped Address, RFC 4291) that reaches 127.0.0.1, a loopback address",
            ),
            (
                "::ffff:198.18.0.1",
                "that reaches 198.18.0.1, a benchmarking address",
            ),
        ] {
            let said = STRICT
                .refuses(ip(address))
                .unwrap_or_else(|| panic!("{address} was accepted"))
                .to_string();
            assert!(said.contains(says), "{address}: {said}");
        }
        assert_eq!(
            Refusal::of(ip("198.18.0.1")).unwrap().to_string(),
            "a benchmarking address (198.18.0.0/15 Benchmarking, RFC 2544)"
        );
    }

    #[test]
    fn allowing_private_targets_opens_hosts_on_private_networks_only() {
        for opened in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "198.18.0.1",
            "fd00::1",
            "fec0::1",
            "2001:2::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(STRICT.refuses(ip(opened)).is_some(), "{opened}");
            assert_eq!(PRIVATE_ALLOWED.refuses(ip(opened)), None, "{opened}");
        }
        for never in [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "2001:db8::1",
            "192.0.0.8",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "2002:a00:1::1",
            "2001::1",
            "::7f00:1",
            "100::1",
            "5f00::1",
            "4000::1",
        ] {
            assert!(PRIVATE_ALLOWED.refuses(ip(never)).is_some(), "{never}");
        }
        // Public addresses pass either way.
        assert_eq!(PRIVATE_ALLOWED.refuses(ip("93.184.216.34")), None);
    }
}
