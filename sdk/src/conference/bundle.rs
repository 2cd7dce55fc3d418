//! The distributor's next epoch: a fresh secret wrapped to every other member of the roster
//! ([`super::group_key::wrap_epoch`]) and the signed bundle that names the wraps and the policy in
//! force from that epoch.

use super::entry::{Body, Entry};
use super::group_key::{wrap_epoch, PreparedEpoch, Recipient, WrapContext};
use super::state::ConferenceState;
use crate::identity::Identity;
use crate::util::hex;
use crate::{Error, Result};

/// A bundle ready to post, with the wraps to send before it.
pub struct NextEpoch {
    /// The epoch it starts.
    pub epoch: u32,
    /// The signed bundle.
    pub entry: Entry,
    /// The secret and the wraps.
    pub prepared: PreparedEpoch,
}

impl NextEpoch {
    /// Bytes sent for it: the entry and the wraps (hex).
    pub fn bytes(&self) -> usize {
        self.entry.content.len()
            + self.entry.signature.len()
            + self.entry.certificate.len()
            + self.prepared.wrap_bytes() * 2
    }
}

/// Makes the next epoch of `state` as `identity` (who must be its distributor), signing with
/// `counter`: the policy agreed for it (the pending one, else the current) decides whether the
/// wraps use the post-quantum hybrid.
pub fn next_epoch(state: &ConferenceState, identity: &Identity, counter: u64) -> Result<NextEpoch> {
    let me = identity.id();
    if state.distributor() != Some(me) {
        return Err(Error::InvalidArgument(format!(
            "{me} is not the distributor of conference {}",
            state.conf()
        )));
    }
    let epoch = state
        .epoch()
        .checked_add(1)
        .ok_or_else(|| Error::Crypto("the conference used every epoch number".into()))?;
    let policy = state.pending_policy().copied().unwrap_or(*state.policy());
    let recipients: Vec<Recipient<'_>> = state
        .members()
        .iter()
        .filter(|m| m.id != me)
        .map(|m| Recipient {
            member: m.index,
            id: &m.id,
            keys: &m.keys,
        })
        .collect();
    let ctx = WrapContext {
        conf: state.conf(),
        epoch,
        roster_hash: state.roster_hash(),
        post_quantum: policy.post_quantum(),
    };
    let prepared = wrap_epoch(&ctx, &recipients)?;
    let mut content = state.content(
        me,
        Body::Bundle {
            epoch,
            ephemeral: hex(&prepared.ephemeral),
            policy,
            wraps: prepared.wrap_refs(),
        },
    );
    content.counter = counter;
    Ok(NextEpoch {
        epoch,
        entry: Entry::sign(identity, &content)?,
        prepared,
    })
}
