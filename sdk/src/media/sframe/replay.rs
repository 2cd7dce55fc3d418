//! A sliding replay window over counters (RFC 9605 §7.5 leaves the size to the application; this
//! one remembers the last [`REPLAY_WINDOW`] counters).

/// Counters remembered below the highest one received.
pub const REPLAY_WINDOW: u64 = 1024;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Which counters of one key were received: a ring of [`REPLAY_WINDOW`] bits indexed by the
/// counter modulo the window (RFC 6479), so moving the window forward clears only the slots it
/// passes — nothing is shifted per frame.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit `ctr % REPLAY_WINDOW`: whether `ctr` (one of the last REPLAY_WINDOW counters) was seen.
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

/// The word and mask of `ctr`'s slot.
fn slot(ctr: u64) -> (usize, u64) {
    let i = (ctr % REPLAY_WINDOW) as usize;
    (i / 64, 1 << (i % 64))
}

impl ReplayWindow {
    /// Checks `ctr` without recording it.
    pub fn check(&self, ctr: u64) -> ReplayCheck {
        match self.highest {
            None => ReplayCheck::Fresh,
            Some(h) if ctr > h => ReplayCheck::Fresh,
            Some(h) if h - ctr >= REPLAY_WINDOW => ReplayCheck::TooOld,
            Some(_) => {
                let (word, mask) = slot(ctr);
                if self.bits[word] & mask != 0 {
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
                if h - ctr >= REPLAY_WINDOW {
                    return;
                }
            }
            Some(h) if ctr - h < REPLAY_WINDOW => {
                // The slots of the counters passed over now stand for counters not seen yet.
                for skipped in h + 1..ctr {
                    let (word, mask) = slot(skipped);
                    self.bits[word] &= !mask;
                }
                self.highest = Some(ctr);
            }
            _ => {
                self.bits = [0; WORDS];
                self.highest = Some(ctr);
            }
        }
        let (word, mask) = slot(ctr);
        self.bits[word] |= mask;
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

    proptest::proptest! {
        #[test]
        fn agrees_with_a_plain_model(ctrs in proptest::collection::vec(0u64..6000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            let mut highest: Option<u64> = None;
            for ctr in ctrs {
                let expected = match highest {
                    Some(h) if ctr <= h && h - ctr >= REPLAY_WINDOW => ReplayCheck::TooOld,
                    _ if seen.contains(&ctr) => ReplayCheck::Replay,
                    _ => ReplayCheck::Fresh,
                };
                proptest::prop_assert_eq!(w.check(ctr), expected, "ctr {}", ctr);
                if expected == ReplayCheck::Fresh {
                    w.record(ctr);
                    seen.insert(ctr);
                    highest = Some(highest.map_or(ctr, |h| h.max(ctr)));
                }
            }
        }
    }

    #[test]
    fn moving_the_window_keeps_bits_in_place() {
        let mut w = ReplayWindow::default();
        w.record(100);
        w.record(37); // age 63
        w.record(36); // age 64, next word
        w.record(165); // the window moves by 65
        for ctr in [100, 37, 36, 165] {
            assert_eq!(w.check(ctr), ReplayCheck::Replay, "{ctr}");
        }
        for ctr in [38, 35, 101, 164] {
            assert_eq!(w.check(ctr), ReplayCheck::Fresh, "{ctr}");
        }
    }
}
