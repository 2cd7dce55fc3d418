//! Multi-party conferences (secure BRAVIS): the signed, server-sequenced control messages
//! ([`entry`]) and the state every member rebuilds from them ([`state`]: roster, epochs, policy,
//! moderation and voting); access-control lists ([`acl`]); security levels and per-stream
//! protection ([`policy`]); group keys wrapped by the distributor to each member
//! ([`group_key`], [`bundle`]); and the full-mesh media of a conference ([`media`]). The client side that
//! runs all of it over the server is [`crate::client::Conference`].

pub mod acl;
pub mod bundle;
pub mod entry;
pub mod group_key;
pub mod media;
pub mod policy;
pub mod state;

pub use acl::{AccessList, AclDecision, AclDefault};
pub use bundle::{next_epoch, NextEpoch};
pub use entry::{Body, Content, Entry, Sequenced};
pub use media::{ConferenceFrame, ConferenceMedia, ConferenceMediaConfig, ConferenceMediaStats};
pub use policy::{Mode, Policy, Protection, StreamProtection};
pub use state::{Change, ConferenceState, Member, Rejection, Verifier};
