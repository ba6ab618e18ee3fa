//! IPv4 address arithmetic of the actor subnet: which addresses actors may
//! hold, the gateway, and whether two ranges overlap. Pure, so that the
//! rules are unit-tested without a kernel.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/len`, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// Builds `addr/prefix` normalised (host bits cleared).
    pub(crate) fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        if prefix > 32 {
            return None;
        }
        let mask = mask(prefix);
        Some(Subnet {
            base: u32::from(addr) & mask,
            prefix,
        })
    }

    /// The prefix length.
    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub(crate) fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// `.1`: the bridge's own address, the actors' default route.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(1))
    }

    /// Number of addresses actors may hold: all but the network address,
    /// the gateway and the broadcast address.
    pub(crate) fn capacity(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.prefix));
        u32::try_from(size.saturating_sub(3)).unwrap_or(u32::MAX)
    }

    /// The `n`-th address an actor may hold (0-based: `.2` first).
    pub(crate) fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (n < self.capacity()).then(|| Ipv4Addr::from(self.base + 2 + n))
    }

    /// Whether the two ranges share an address.
    pub(crate) fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = mask(shorter);
        self.base & m == other.base & m
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// `a.b.c.d/len` with len 8 to 30: a smaller network leaves actors no
    /// addresses, a larger one is not a node's subnet.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an IPv4 subnet like 10.88.0.0/16");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(format!(
                "{s:?}: the prefix length must be 8 to 30 (a /30 leaves one actor address)"
            ));
        }
        let net = Subnet::new(addr, len).ok_or_else(bad)?;
        if net.network() != addr {
            return Err(format!("{s:?} has host bits set: did you mean {net}?"));
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_special_addresses() {
        let s: Subnet = "10.88.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.host(0), Some(Ipv4Addr::new(10, 88, 0, 2)));
        assert_eq!(s.capacity(), 65533);
        assert_eq!(s.host(65532), Some(Ipv4Addr::new(10, 88, 255, 254)));
        assert_eq!(s.host(65533), None);
        let small: Subnet = "10.1.2.0/30".parse().unwrap();
        assert_eq!(small.capacity(), 1);
        assert_eq!(small.host(0), Some(Ipv4Addr::new(10, 1, 2, 2)));
    }

    #[test]
    fn refuses_what_is_not_a_usable_subnet() {
        for bad in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "10.0.0.0/7",
            "x/16",
            "10.88.0.0/x",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        let a: Subnet = "10.88.0.0/16".parse().unwrap();
        let b = Subnet::new(Ipv4Addr::new(10, 88, 5, 0), 24).unwrap();
        let c = Subnet::new(Ipv4Addr::new(10, 89, 0, 0), 24).unwrap();
        let default = Subnet::new(Ipv4Addr::UNSPECIFIED, 0).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(a.overlaps(&default));
    }
}
