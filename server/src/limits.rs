//! Limits that keep one party from taking what others need: token buckets kept per key (call
//! attempts per user) and connection slots per source address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` held.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let earned = now.duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(burst);
        self.last = now;
    }
}

/// Token buckets by key, all with one rate and burst. Buckets that have refilled are forgotten,
/// so the map holds only keys that spent something recently.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Eq + Hash + Clone> KeyedBuckets<K> {
    /// `per_minute` tokens a minute for each key, all of them available at once.
    pub fn per_minute(per_minute: u32) -> Self {
        KeyedBuckets {
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(per_minute.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token of `key`'s; `Err(seconds)` says how long until one is there.
    pub fn take(&mut self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        if self.buckets.len() > 1024 {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| {
                b.refill(rate, burst, now);
                b.tokens < burst
            });
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::full(burst));
        bucket.refill(rate, burst, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err(((1.0 - bucket.tokens) / rate).ceil() as u64)
        } else {
            Err(u64::MAX)
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Connection slots per source address: at most `per_address` connections from one address at
/// once, whatever stage they are in (TLS handshake, hello, serving).
#[derive(Debug, Clone)]
pub struct AddressSlots {
    per_address: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct AddressSlot {
    ip: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressSlots {
    /// At most `per_address` connections from one address.
    pub fn new(per_address: usize) -> Self {
        AddressSlots {
            per_address,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for a connection from `ip`, or `None` when that address holds all of its own.
    pub fn acquire(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            held: self.held.clone(),
        })
    }

    /// Connections held from `ip` now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Says, at most every ten seconds, how many connections were refused for their address, so a
/// flood cannot flood the log too.
#[derive(Debug, Default)]
pub struct RefusalLog {
    refused: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    /// Notes one refused connection from `addr`.
    pub fn note(&mut self, addr: std::net::SocketAddr) {
        self.refused += 1;
        if self
            .last
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10))
        {
            tracing::warn!(
                ip = %addr.ip(),
                refused = self.refused,
                "connections refused: their address holds its share of the connection slots"
            );
            self.refused = 0;
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let mut b = KeyedBuckets::per_minute(3);
        let key = "alice".to_owned();
        for _ in 0..3 {
            assert!(b.take(&key).is_ok());
        }
        let wait = b.take(&key).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(b.take(&"bob".to_owned()).is_ok(), "keys are independent");
    }

    #[test]
    fn slots_are_counted_per_address_and_freed_on_drop() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let one = slots.acquire(a).unwrap();
        let _two = slots.acquire(a).unwrap();
        assert!(slots.acquire(a).is_none(), "a third from one address");
        assert!(slots.acquire(b).is_some(), "another address is not held up");
        drop(one);
        assert_eq!(slots.held(a), 1);
        assert!(slots.acquire(a).is_some());
    }
}
