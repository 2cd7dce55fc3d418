//! Which connections the CA takes: at most `max_connections` at once, at most
//! `max_connections_per_address` from one address (an IPv4 address, or an IPv6 /64), and the last
//! quarter of the global cap only for addresses that hold few connections (fewer than an eighth of
//! the per-address cap and of the reserve, at least one) — so neither one
//! address nor a handful can take every slot. A connection over a cap is closed as soon as it is
//! accepted, never queued.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// The address already holds its share.
    AddressCap,
    /// Only the reserved slots are left, and the address already holds a few connections.
    Reserved,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Full => "every connection slot is taken",
            Refusal::AddressCap => "the address holds its maximum of connections",
            Refusal::Reserved => {
                "only reserved slots are left and the address already holds connections"
            }
        })
    }
}

/// The grouping key of a peer address: IPv4 addresses (also IPv4-mapped IPv6) as they are, IPv6
/// addresses by their /64 prefix (one subscriber's usual allocation).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    refused: u64,
}

/// The connection counts, shared by the accept loop and every connection's [`Slot`].
#[derive(Clone)]
pub struct Admission {
    max: usize,
    per_address: usize,
    reserved: usize,
    light: usize,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    /// Caps of `max` connections in all and `per_address` per address.
    pub fn new(max: usize, per_address: usize) -> Self {
        Admission {
            max,
            per_address,
            reserved: max / 4,
            light: (per_address / 8).min(max / 32).max(1),
            counts: Arc::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = address_key(ip);
        let mut counts = self.counts();
        let held = counts.by_address.get(&key).copied().unwrap_or(0);
        let refusal = if counts.total >= self.max {
            Some(Refusal::Full)
        } else if held >= self.per_address {
            Some(Refusal::AddressCap)
        } else if counts.total >= self.max - self.reserved && held >= self.light {
            Some(Refusal::Reserved)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            counts.refused += 1;
            return Err(refusal);
        }
        counts.total += 1;
        *counts.by_address.entry(key).or_insert(0) += 1;
        Ok(Slot {
            admission: self.clone(),
            key,
        })
    }

    /// Connections held now.
    pub fn in_use(&self) -> usize {
        self.counts().total
    }

    /// Connections refused since the last call (for a periodic log line).
    pub fn take_refused(&self) -> u64 {
        std::mem::take(&mut self.counts().refused)
    }
}

/// One connection's place; dropping it frees the place.
pub struct Slot {
    admission: Admission,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_frees_it_on_drop() {
        let admission = Admission::new(100, 3);
        let held: Vec<Slot> = (0..3)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refusal::AddressCap)
        );
        assert!(admission.admit(ip("10.0.0.2")).is_ok());
        drop(held);
        assert_eq!(admission.in_use(), 0);
        assert!(admission.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn the_reserve_is_for_addresses_holding_few_connections() {
        // 8 slots, 2 reserved; a per-address cap above the global cap.
        let admission = Admission::new(8, 100);
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(admission.admit(ip("10.0.0.1")).unwrap());
        }
        assert_eq!(
            admission.admit(ip("10.0.0.1")).err(),
            Some(Refusal::Reserved)
        );
        held.push(admission.admit(ip("10.0.0.2")).unwrap());
        held.push(admission.admit(ip("10.0.0.3")).unwrap());
        assert_eq!(admission.admit(ip("10.0.0.4")).err(), Some(Refusal::Full));
        assert_eq!(admission.take_refused(), 2);
    }

    #[test]
    fn ipv6_addresses_count_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
