//! A sliding replay window over counters (RFC 9605 §7.5 leaves the size to the application; this
//! one remembers the last [`REPLAY_WINDOW`] counters).

/// Counters remembered below the highest one received.
pub const REPLAY_WINDOW: u64 = 1024;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Which counters of one key were received.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit `i` of the window is counter `highest - i`.
    bits: [u64; WORDS],
}

/// Whether a counter may be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Not seen and inside (or ahead of) the window.
    Fresh,
    /// Already received.
    Replay,
    /// Older than the window.
    TooOld,
}

impl ReplayWindow {
    /// Checks `ctr` without recording it.
    pub fn check(&self, ctr: u64) -> ReplayCheck {
        match self.highest {
            None => ReplayCheck::Fresh,
            Some(h) if ctr > h => ReplayCheck::Fresh,
            Some(h) => {
                let age = h - ctr;
                if age >= REPLAY_WINDOW {
                    ReplayCheck::TooOld
                } else if self.bits[(age / 64) as usize] & (1 << (age % 64)) != 0 {
                    ReplayCheck::Replay
                } else {
                    ReplayCheck::Fresh
                }
            }
        }
    }

    /// Records `ctr` (call after the frame authenticated).
    pub fn record(&mut self, ctr: u64) {
        match self.highest {
            Some(h) if ctr <= h => {
                let age = h - ctr;
                if age < REPLAY_WINDOW {
                    self.bits[(age / 64) as usize] |= 1 << (age % 64);
                }
            }
            Some(h) => {
                self.shift(ctr - h);
                self.highest = Some(ctr);
                self.bits[0] |= 1;
            }
            None => {
                self.highest = Some(ctr);
                self.bits[0] = 1;
            }
        }
    }

    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let mut v = from.map_or(0, |f| self.bits[f] << bits);
            if bits > 0 {
                if let Some(lower) = from.and_then(|f| f.checked_sub(1)) {
                    v |= self.bits[lower] >> (64 - bits);
                }
            }
            self.bits[i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_new_refuses_seen_and_old() {
        let mut w = ReplayWindow::default();
        for ctr in [5, 3, 4, 1000, 7, 1500] {
            assert_eq!(w.check(ctr), ReplayCheck::Fresh, "{ctr}");
            w.record(ctr);
            assert_eq!(w.check(ctr), ReplayCheck::Replay, "{ctr}");
        }
        // 1500 is the highest: 1500 - 1024 = 476 is the oldest remembered.
        assert_eq!(w.check(476), ReplayCheck::TooOld);
        assert_eq!(w.check(477), ReplayCheck::Fresh);
        assert_eq!(
            w.check(1000),
            ReplayCheck::Replay,
            "still inside the window"
        );
        assert_eq!(w.check(999), ReplayCheck::Fresh);
        w.record(5000);
        assert_eq!(w.check(1500), ReplayCheck::TooOld);
        assert_eq!(w.check(4999), ReplayCheck::Fresh);
        for ctr in 3977..5000 {
            w.record(ctr);
        }
        assert!((3977..=5000).all(|c| w.check(c) == ReplayCheck::Replay));
        assert_eq!(w.check(3976), ReplayCheck::TooOld);
    }

    #[test]
    fn shifting_keeps_bits_in_place() {
        let mut w = ReplayWindow::default();
        w.record(100);
        w.record(37); // age 63
        w.record(36); // age 64, next word
        w.record(165); // shift by 65
        for ctr in [100, 37, 36, 165] {
            assert_eq!(w.check(ctr), ReplayCheck::Replay, "{ctr}");
        }
        for ctr in [38, 35, 101, 164] {
            assert_eq!(w.check(ctr), ReplayCheck::Fresh, "{ctr}");
        }
    }
}
