//! Keys for per-address limits.
//!
//! One IPv4 address is one key. An IPv6 host is usually given a whole /64, so keying on
//! the full address would hand one attacker 2^64 keys: IPv6 addresses are keyed by
//! their /64 prefix. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports for an IPv4 peer) are keyed as the IPv4 address they carry.

use std::net::{IpAddr, Ipv6Addr};

/// The key a per-address limit counts `ip` under.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_key() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("addr");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("addr");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("addr");
        assert_eq!(limit_key(a), limit_key(b));
        assert_eq!(
            limit_key(a),
            "2001:db8:1:2::".parse::<IpAddr>().expect("addr")
        );
        assert_ne!(limit_key(a), limit_key(other));
    }

    #[test]
    fn ipv4_and_mapped_ipv4_are_one_key_per_address() {
        let v4: IpAddr = "192.0.2.7".parse().expect("addr");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("addr");
        assert_eq!(limit_key(v4), v4);
        assert_eq!(limit_key(mapped), v4);
        assert_ne!(limit_key("192.0.2.8".parse().expect("addr")), limit_key(v4));
    }
}
