//! The state of a conference, rebuilt by every member (and by the server) from the sequenced
//! control messages: the roster in join order, the group epoch, the policy in force and the one
//! waiting for the next epoch, the moderator, open invitations and the open vote. Applying the
//! same entries in the same order gives the same state everywhere; an entry that breaks a rule —
//! wrong signer, replayed counter, stale epoch, wrong roster hash, an action the author may not
//! take — is rejected by everyone alike and changes nothing.

use std::collections::{BTreeMap, HashMap};

use aws_lc_rs::digest::{digest, SHA256};
use rustls::pki_types::UnixTime;

use super::entry::{
    Body, Content, Entry, MemberKeys, Opened, Sequenced, MAX_INVITE_TTL_SECS, MAX_MEMBERS,
    SERVER_AUTHOR, VOTE_DEADLINE_SECS,
};
use super::group_key::{validate_keys, X25519_LEN};
use super::policy::{Mode, Policy};
use crate::pki::CertificateCheck;
use crate::util::{hex, unhex};

/// A member of the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its index: the sender number in its media KIDs. Given in join order and never reused.
    pub index: u16,
    /// Its client id.
    pub id: String,
    /// Its announced keys.
    pub keys: MemberKeys,
    /// The sequence number of its join (or create) entry.
    pub joined_seq: u64,
    /// When it joined, Unix ms (server time).
    pub joined_at_ms: i64,
}

/// An open invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Its id: the hash of the invite entry's content, hex.
    pub id: String,
    /// Who is invited.
    pub invitee: String,
    /// Who invited.
    pub inviter: String,
    /// SHA-256 of the certificate the inviter checked for the invitee, hex.
    pub invitee_certificate: String,
    /// When it lapses, Unix ms (server time).
    pub expires_at_ms: i64,
}

/// Proposals remembered by number after they close (for [`ConferenceState::proposal_number`]).
const REMEMBERED_PROPOSALS: usize = 64;

/// The open proposal (voting mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Its number in this conference: 1 for the first proposal, 2 for the next, and so on — what
    /// people see and vote by. Every member counts the same log, so all agree on it.
    pub number: u64,
    /// The sequence number of its entry: what ballots name on the wire.
    pub seq: u64,
    /// Who proposed it.
    pub proposer: String,
    /// The proposed policy.
    pub policy: Policy,
    /// Ballots count until then, Unix ms (server time).
    pub deadline_ms: i64,
    /// The ballots of current members.
    pub votes: BTreeMap<String, bool>,
}

/// What an applied entry changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The conference was created.
    Created {
        /// By whom.
        creator: String,
    },
    /// Someone was invited.
    Invited {
        /// Who.
        invitee: String,
        /// By whom.
        inviter: String,
        /// The invitation's id.
        invite: String,
    },
    /// A member joined.
    Joined {
        /// Who.
        member: String,
        /// Its index.
        index: u16,
    },
    /// An invitee declined.
    Declined {
        /// Who.
        invitee: String,
    },
    /// A member is gone.
    Left {
        /// Who.
        member: String,
        /// Its index.
        index: u16,
        /// Why: "left", "removed by …", or the server's reason.
        reason: String,
    },
    /// A new policy waits for the next epoch.
    PolicyPending {
        /// The policy.
        policy: Policy,
        /// Who set it (the moderator), or who proposed it (voting mode).
        by: String,
        /// What it lowers compared with the policy in force ([`Policy::lowering_from`]).
        lowered: Option<String>,
    },
    /// A new epoch began, with the policy in force from it.
    EpochStarted {
        /// The epoch.
        epoch: u32,
        /// The policy from now on.
        policy: Policy,
        /// Who distributed it.
        distributor: String,
    },
    /// The moderator changed.
    ModeratorChanged {
        /// The new moderator (none in voting mode).
        moderator: Option<String>,
    },
    /// A member proposed a policy.
    ProposalOpened {
        /// The proposal's number (1 for the conference's first).
        proposal: u64,
        /// Who.
        proposer: String,
        /// What.
        policy: Policy,
        /// Until when votes count, Unix ms.
        deadline_ms: i64,
    },
    /// A ballot was cast.
    Voted {
        /// The proposal's number.
        proposal: u64,
        /// Who.
        voter: String,
        /// For or against.
        approve: bool,
    },
    /// The open proposal was decided.
    ProposalDecided {
        /// The proposal's number.
        proposal: u64,
        /// Whether it was adopted (its policy then waits for the next epoch).
        adopted: bool,
        /// Why, in words.
        reason: String,
    },
    /// The last member left.
    Ended,
}

/// Why an entry was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq} ({kind} by {author}) rejected: {reason}")]
pub struct Rejection {
    /// Its sequence number.
    pub seq: u64,
    /// Its author, as far as it could be read.
    pub author: String,
    /// Its kind, as far as it could be read.
    pub kind: String,
    /// A stable code: `order` (a replayed or missing sequence number), `malformed`,
    /// `signature`, `replay` (a counter not above the author's last), `stale` (another epoch or
    /// roster than the current), `forbidden` (the author may not do this), `invalid`.
    pub code: &'static str,
    /// What was wrong.
    pub reason: String,
}

/// How entries are authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The pinned root and the current CRL.
    pub check: &'a CertificateCheck,
    /// The server's name (for entries the server signs).
    pub server_name: Option<&'a str>,
    /// Live entries are checked now against the CRL; entries of the log before we joined are
    /// checked at their own time and without the CRL (their authors may have renewed since).
    pub live: bool,
}

/// The conference state.
#[derive(Debug, Clone)]
pub struct ConferenceState {
    conf: String,
    members: Vec<Member>,
    next_index: u16,
    epoch: u32,
    policy: Policy,
    pending_policy: Option<Policy>,
    /// The moderator a pending switch to moderation mode appoints.
    pending_moderator: Option<String>,
    moderator: Option<String>,
    invitations: Vec<Invitation>,
    counters: HashMap<String, u64>,
    proposal: Option<Proposal>,
    /// The latest proposals opened, (entry seq, number), oldest first; the last is the newest.
    proposals: std::collections::VecDeque<(u64, u64)>,
    /// How many proposals were opened in this conference.
    proposals_opened: u64,
    next_seq: u64,
    roster_hash: [u8; 32],
    rekey_due: bool,
    last_epoch_at_ms: i64,
    ended: bool,
}

/// The roster hash of `members` in conference `conf`.
pub fn roster_hash(conf: &str, members: &[Member]) -> [u8; 32] {
    let mut data = Vec::with_capacity(64 + members.len() * 2500);
    let mut lp = |b: &[u8]| {
        data.extend_from_slice(&(b.len() as u32).to_be_bytes());
        data.extend_from_slice(b);
    };
    lp(b"vcsdk roster/1");
    lp(conf.as_bytes());
    for m in members {
        lp(&m.index.to_be_bytes());
        lp(m.id.as_bytes());
        lp(m.keys.x25519.as_bytes());
        lp(m.keys.mlkem.as_bytes());
    }
    digest(&SHA256, &data)
        .as_ref()
        .try_into()
        .unwrap_or([0; 32])
}

fn reject(code: &'static str, reason: impl Into<String>) -> (&'static str, String) {
    (code, reason.into())
}

type Rule<T> = Result<T, (&'static str, String)>;

impl ConferenceState {
    /// The empty state of conference `conf`, before its create entry.
    pub fn new(conf: &str) -> ConferenceState {
        ConferenceState {
            conf: conf.to_owned(),
            members: Vec::new(),
            next_index: 0,
            epoch: 0,
            policy: Policy::default(),
            pending_policy: None,
            pending_moderator: None,
            moderator: None,
            invitations: Vec::new(),
            counters: HashMap::new(),
            proposal: None,
            proposals: std::collections::VecDeque::new(),
            proposals_opened: 0,
            next_seq: 0,
            roster_hash: roster_hash(conf, &[]),
            rekey_due: false,
            last_epoch_at_ms: 0,
            ended: false,
        }
    }

    /// The conference id.
    pub fn conf(&self) -> &str {
        &self.conf
    }

    /// The roster, in join order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member `id`, if in the roster.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The member with `index`, if in the roster.
    pub fn member_at(&self, index: u16) -> Option<&Member> {
        self.members.iter().find(|m| m.index == index)
    }

    /// The group epoch (0 until the first bundle).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy waiting for the next epoch.
    pub fn pending_policy(&self) -> Option<&Policy> {
        self.pending_policy.as_ref()
    }

    /// The moderator (moderation mode).
    pub fn moderator(&self) -> Option<&str> {
        self.moderator.as_deref()
    }

    /// Who makes the next epoch: the moderator in moderation mode, else the longest-present
    /// member.
    pub fn distributor(&self) -> Option<&str> {
        if self.ended {
            return None;
        }
        match (self.policy.mode, &self.moderator) {
            (Mode::Moderation, Some(m)) => Some(m.as_str()),
            _ => self.members.first().map(|m| m.id.as_str()),
        }
    }

    /// The roster hash.
    pub fn roster_hash(&self) -> &[u8; 32] {
        &self.roster_hash
    }

    /// The roster hash, hex (as entries carry it).
    pub fn roster_hash_hex(&self) -> String {
        hex(&self.roster_hash)
    }

    /// The open proposal.
    pub fn proposal(&self) -> Option<&Proposal> {
        self.proposal.as_ref()
    }

    /// How many proposals were opened in this conference (the newest one's number).
    pub fn proposals_opened(&self) -> u64 {
        self.proposals_opened
    }

    /// The entry that opened proposal number `number` (one of the latest 64 proposals).
    pub fn proposal_seq(&self, number: u64) -> Option<u64> {
        self.proposals
            .iter()
            .find(|(_, n)| *n == number)
            .map(|(seq, _)| *seq)
    }

    /// The number of the proposal opened by entry `seq` (one of the latest 64 proposals).
    pub fn proposal_number(&self, seq: u64) -> Option<u64> {
        self.proposals
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, number)| *number)
    }

    /// The open invitations.
    pub fn invitations(&self) -> &[Invitation] {
        &self.invitations
    }

    /// The invitation `id`.
    pub fn invitation(&self, id: &str) -> Option<&Invitation> {
        self.invitations.iter().find(|i| i.id == id)
    }

    /// The last counter `author` used.
    pub fn counter_of(&self, author: &str) -> u64 {
        self.counters.get(author).copied().unwrap_or(0)
    }

    /// Whether a membership or policy change waits for a new epoch.
    pub fn rekey_due(&self) -> bool {
        self.rekey_due
    }

    /// When the current epoch began, Unix ms (server time).
    pub fn last_epoch_at_ms(&self) -> i64 {
        self.last_epoch_at_ms
    }

    /// The sequence number the next entry must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the last member left.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The content of a new entry by `author` with `body` against this state (the next counter,
    /// the current epoch and roster hash).
    pub fn content(&self, author: &str, body: Body) -> Content {
        Content {
            version: super::entry::CONFERENCE_VERSION,
            conf: self.conf.clone(),
            author: author.to_owned(),
            counter: self.counter_of(author) + 1,
            epoch: self.epoch,
            roster: self.roster_hash_hex(),
            body,
        }
    }

    /// A member applies the next sequenced entry, or rejects it: a rejected entry uses up its
    /// sequence number and changes nothing else (apart from forgetting lapsed invitations), the
    /// same at every member. An entry out of order (a replay or a gap) is refused and uses up
    /// nothing.
    pub fn apply(
        &mut self,
        sequenced: &Sequenced,
        verifier: &Verifier<'_>,
    ) -> Result<Vec<Change>, Rejection> {
        let result = self.apply_at(sequenced, verifier);
        if result.as_ref().is_err_and(|r| r.code != "order") {
            self.next_seq += 1;
        }
        result
    }

    /// The server admits an entry before sequencing it: applied when it passes every rule,
    /// otherwise refused with the state unchanged (its sequence number is not used).
    pub fn admit(
        &mut self,
        sequenced: &Sequenced,
        verifier: &Verifier<'_>,
    ) -> Result<Vec<Change>, Rejection> {
        self.apply_at(sequenced, verifier)
    }

    fn apply_at(
        &mut self,
        sequenced: &Sequenced,
        verifier: &Verifier<'_>,
    ) -> Result<Vec<Change>, Rejection> {
        let opened = sequenced.entry.open();
        let (author, kind) = match &opened {
            Ok(o) => (o.content.author.clone(), o.content.body.kind().to_owned()),
            Err(_) => ("?".to_owned(), "?".to_owned()),
        };
        let rejection = |(code, reason): (&'static str, String)| Rejection {
            seq: sequenced.seq,
            author: author.clone(),
            kind: kind.clone(),
            code,
            reason,
        };
        if sequenced.seq != self.next_seq {
            return Err(rejection(if sequenced.seq < self.next_seq {
                reject(
                    "order",
                    "this sequence number was already applied (a replay)",
                )
            } else {
                reject(
                    "order",
                    format!("expected entry {}, the log has a gap", self.next_seq),
                )
            }));
        }
        let opened = opened.map_err(|e| rejection(reject("malformed", e.to_string())))?;
        let changes = self
            .check_and_apply(&sequenced.entry, &opened, sequenced, verifier)
            .map_err(rejection)?;
        self.next_seq += 1;
        Ok(changes)
    }

    fn check_and_apply(
        &mut self,
        entry: &Entry,
        opened: &Opened,
        sequenced: &Sequenced,
        verifier: &Verifier<'_>,
    ) -> Rule<Vec<Change>> {
        let c = &opened.content;
        if c.conf != self.conf {
            return Err(reject(
                "invalid",
                format!("entry of conference {}, not {}", c.conf, self.conf),
            ));
        }
        if self.ended {
            return Err(reject("invalid", "the conference has ended"));
        }
        let is_server = c.author == SERVER_AUTHOR;
        if is_server != c.body.server_only() {
            return Err(reject(
                "forbidden",
                if is_server {
                    format!("the server may not author a {} entry", c.body.kind())
                } else {
                    format!("only the server may author a {} entry", c.body.kind())
                },
            ));
        }
        // Authentication: the author's certificate and signature.
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_millis(
            sequenced.at_ms.max(0) as u64,
        ));
        let result = if verifier.live {
            entry.verify(
                opened,
                verifier.check,
                verifier.server_name,
                UnixTime::now(),
            )
        } else {
            let mut historical = verifier.check.clone();
            historical.clear_crl();
            entry.verify(opened, &historical, verifier.server_name, at)
        };
        result.map_err(|e| reject("signature", e.to_string()))?;
        if c.counter <= self.counter_of(&c.author) {
            return Err(reject(
                "replay",
                format!(
                    "counter {} is not above {}'s last, {}",
                    c.counter,
                    c.author,
                    self.counter_of(&c.author)
                ),
            ));
        }
        // Freshness: everything but the first entry and an invitee's answer names the epoch and
        // roster its author saw, which must be the current ones.
        let from_invitee = matches!(c.body, Body::Join { .. } | Body::Decline { .. });
        let first = matches!(c.body, Body::Create { .. });
        if !from_invitee && !first {
            if c.epoch != self.epoch {
                return Err(reject(
                    "stale",
                    format!(
                        "names epoch {}; the conference is at {}",
                        c.epoch, self.epoch
                    ),
                ));
            }
            if c.roster != self.roster_hash_hex() {
                return Err(reject(
                    "stale",
                    "names another roster hash than the current roster's",
                ));
            }
            if !is_server && self.member(&c.author).is_none() {
                return Err(reject("forbidden", format!("{} is not a member", c.author)));
            }
        }
        let at_ms = sequenced.at_ms;
        let changes = match &c.body {
            Body::Create { policy, keys } => self.create(c, sequenced, policy, keys)?,
            Body::Invite {
                invitee,
                invitee_certificate,
                ttl_secs,
            } => self.invite(c, opened, at_ms, invitee, invitee_certificate, *ttl_secs)?,
            Body::Join { invite, keys } => self.join(c, sequenced, invite, keys)?,
            Body::Decline { invite } => {
                let inv = self.open_invitation(invite, &c.author, at_ms)?;
                self.invitations.retain(|i| i.id != inv.id);
                vec![Change::Declined {
                    invitee: c.author.clone(),
                }]
            }
            Body::Leave => self.remove(&c.author, "left".into()),
            Body::Remove { member } => {
                self.require_moderator(&c.author)?;
                if member == &c.author {
                    return Err(reject("invalid", "the moderator leaves instead"));
                }
                if self.member(member).is_none() {
                    return Err(reject("invalid", format!("{member} is not a member")));
                }
                self.remove(member, format!("removed by {}", c.author))
            }
            Body::Departed { member, reason } => {
                if self.member(member).is_none() {
                    return Err(reject("invalid", format!("{member} is not a member")));
                }
                self.remove(member, reason.chars().take(200).collect())
            }
            Body::Bundle {
                epoch,
                ephemeral,
                policy,
                wraps,
            } => self.bundle(c, at_ms, *epoch, ephemeral, policy, wraps)?,
            Body::SetPolicy { policy } => {
                self.require_moderator(&c.author)?;
                policy
                    .validate()
                    .map_err(|e| reject("invalid", e.to_string()))?;
                self.pending_policy = Some(*policy);
                self.pending_moderator =
                    (policy.mode == Mode::Moderation).then(|| c.author.clone());
                self.rekey_due = true;
                vec![Change::PolicyPending {
                    policy: *policy,
                    by: c.author.clone(),
                    lowered: policy.lowering_from(&self.policy),
                }]
            }
            Body::HandOver { to } => {
                self.require_moderator(&c.author)?;
                if to == &c.author || self.member(to).is_none() {
                    return Err(reject("invalid", format!("{to} is not another member")));
                }
                self.moderator = Some(to.clone());
                vec![Change::ModeratorChanged {
                    moderator: Some(to.clone()),
                }]
            }
            Body::Propose {
                policy,
                deadline_secs,
            } => self.propose(c, sequenced, policy, *deadline_secs)?,
            Body::Vote { proposal, approve } => {
                if self.policy.mode != Mode::Voting {
                    return Err(reject("forbidden", "votes are for voting mode"));
                }
                let open = self
                    .proposal
                    .as_mut()
                    .filter(|p| p.seq == *proposal)
                    .ok_or_else(|| {
                        reject(
                            "invalid",
                            format!("the ballot names entry {proposal}, not the open proposal"),
                        )
                    })?;
                if at_ms > open.deadline_ms {
                    return Err(reject("invalid", "the proposal's deadline has passed"));
                }
                if open.votes.contains_key(&c.author) {
                    return Err(reject("invalid", format!("{} already voted", c.author)));
                }
                open.votes.insert(c.author.clone(), *approve);
                let mut changes = vec![Change::Voted {
                    proposal: open.number,
                    voter: c.author.clone(),
                    approve: *approve,
                }];
                changes.extend(self.decide());
                changes
            }
            Body::Expired { proposal } => {
                let open = self
                    .proposal
                    .as_ref()
                    .filter(|p| p.seq == *proposal)
                    .ok_or_else(|| {
                        reject(
                            "invalid",
                            format!("entry {proposal} is not the open proposal"),
                        )
                    })?;
                if at_ms <= open.deadline_ms {
                    return Err(reject("invalid", "the proposal's deadline has not passed"));
                }
                let number = open.number;
                self.proposal = None;
                vec![Change::ProposalDecided {
                    proposal: number,
                    adopted: false,
                    reason: "the deadline passed without a majority".into(),
                }]
            }
        };
        self.counters.insert(c.author.clone(), c.counter);
        Ok(changes)
    }

    fn require_moderator(&self, author: &str) -> Rule<()> {
        if self.policy.mode != Mode::Moderation {
            return Err(reject("forbidden", "there is no moderator in voting mode"));
        }
        if self.moderator.as_deref() != Some(author) {
            return Err(reject(
                "forbidden",
                format!("{author} is not the moderator"),
            ));
        }
        Ok(())
    }

    fn create(
        &mut self,
        c: &Content,
        s: &Sequenced,
        policy: &Policy,
        keys: &MemberKeys,
    ) -> Rule<Vec<Change>> {
        if self.next_seq != 0 {
            return Err(reject("invalid", "the conference already exists"));
        }
        policy
            .validate()
            .map_err(|e| reject("invalid", e.to_string()))?;
        validate_keys(keys).map_err(|e| reject("invalid", e.to_string()))?;
        self.members.push(Member {
            index: 0,
            id: c.author.clone(),
            keys: keys.clone(),
            joined_seq: s.seq,
            joined_at_ms: s.at_ms,
        });
        self.next_index = 1;
        self.policy = *policy;
        self.moderator = (policy.mode == Mode::Moderation).then(|| c.author.clone());
        self.rekey_due = true;
        self.last_epoch_at_ms = s.at_ms;
        self.roster_hash = roster_hash(&self.conf, &self.members);
        Ok(vec![
            Change::Created {
                creator: c.author.clone(),
            },
            Change::Joined {
                member: c.author.clone(),
                index: 0,
            },
        ])
    }

    fn invite(
        &mut self,
        c: &Content,
        opened: &Opened,
        at_ms: i64,
        invitee: &str,
        invitee_certificate: &str,
        ttl_secs: u32,
    ) -> Rule<Vec<Change>> {
        crate::id::validate_id(invitee).map_err(|e| reject("invalid", e))?;
        if self.member(invitee).is_some() {
            return Err(reject("invalid", format!("{invitee} is already a member")));
        }
        if !(1..=MAX_INVITE_TTL_SECS).contains(&ttl_secs) {
            return Err(reject(
                "invalid",
                format!("ttl_secs must be 1..={MAX_INVITE_TTL_SECS}"),
            ));
        }
        if unhex(invitee_certificate).is_none_or(|h| h.len() != 32) {
            return Err(reject(
                "invalid",
                "invitee_certificate must be a SHA-256 hash in hex",
            ));
        }
        self.invitations.retain(|i| i.expires_at_ms >= at_ms);
        let mut invited: Vec<&str> = self
            .invitations
            .iter()
            .map(|i| i.invitee.as_str())
            .collect();
        invited.sort_unstable();
        invited.dedup();
        let others = invited.iter().filter(|i| **i != invitee).count();
        if self.members.len() + others + 1 > MAX_MEMBERS {
            return Err(reject(
                "invalid",
                format!("a conference has at most {MAX_MEMBERS} members"),
            ));
        }
        let id = hex(&opened.id);
        self.invitations.push(Invitation {
            id: id.clone(),
            invitee: invitee.to_owned(),
            inviter: c.author.clone(),
            invitee_certificate: invitee_certificate.to_owned(),
            expires_at_ms: at_ms.saturating_add(i64::from(ttl_secs) * 1000),
        });
        Ok(vec![Change::Invited {
            invitee: invitee.to_owned(),
            inviter: c.author.clone(),
            invite: id,
        }])
    }

    fn open_invitation(&self, id: &str, author: &str, at_ms: i64) -> Rule<Invitation> {
        let inv = self
            .invitation(id)
            .filter(|i| i.invitee == author)
            .ok_or_else(|| reject("forbidden", format!("{author} holds no invitation {id}")))?;
        if at_ms > inv.expires_at_ms {
            return Err(reject("invalid", "the invitation has lapsed"));
        }
        Ok(inv.clone())
    }

    fn join(
        &mut self,
        c: &Content,
        s: &Sequenced,
        invite: &str,
        keys: &MemberKeys,
    ) -> Rule<Vec<Change>> {
        self.open_invitation(invite, &c.author, s.at_ms)?;
        if self.member(&c.author).is_some() {
            return Err(reject(
                "invalid",
                format!("{} is already a member", c.author),
            ));
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(reject(
                "invalid",
                format!("a conference has at most {MAX_MEMBERS} members"),
            ));
        }
        validate_keys(keys).map_err(|e| reject("invalid", e.to_string()))?;
        let index = self.next_index;
        self.next_index = index
            .checked_add(1)
            .ok_or_else(|| reject("invalid", "the conference used every member index"))?;
        self.members.push(Member {
            index,
            id: c.author.clone(),
            keys: keys.clone(),
            joined_seq: s.seq,
            joined_at_ms: s.at_ms,
        });
        self.invitations.retain(|i| i.invitee != c.author);
        self.roster_hash = roster_hash(&self.conf, &self.members);
        self.rekey_due = true;
        let mut changes = vec![Change::Joined {
            member: c.author.clone(),
            index,
        }];
        changes.extend(self.decide());
        Ok(changes)
    }

    fn remove(&mut self, member: &str, reason: String) -> Vec<Change> {
        let index = self.member(member).map_or(0, |m| m.index);
        self.members.retain(|m| m.id != member);
        self.roster_hash = roster_hash(&self.conf, &self.members);
        self.rekey_due = true;
        let mut changes = vec![Change::Left {
            member: member.to_owned(),
            index,
            reason,
        }];
        if self.members.is_empty() {
            self.ended = true;
            self.proposal = None;
            changes.push(Change::Ended);
            return changes;
        }
        if self.moderator.as_deref() == Some(member) {
            let next = self.members.first().map(|m| m.id.clone());
            self.moderator = next.clone();
            changes.push(Change::ModeratorChanged { moderator: next });
        }
        if self.pending_moderator.as_deref() == Some(member) {
            self.pending_moderator = self.members.first().map(|m| m.id.clone());
        }
        if let Some(p) = self.proposal.as_mut() {
            p.votes.remove(member);
        }
        changes.extend(self.decide());
        changes
    }

    fn bundle(
        &mut self,
        c: &Content,
        at_ms: i64,
        epoch: u32,
        ephemeral: &str,
        policy: &Policy,
        wraps: &[super::entry::WrapRef],
    ) -> Rule<Vec<Change>> {
        if self.distributor() != Some(c.author.as_str()) {
            return Err(reject(
                "forbidden",
                format!(
                    "{} is not the distributor ({})",
                    c.author,
                    self.distributor().unwrap_or("none")
                ),
            ));
        }
        if Some(epoch) != self.epoch.checked_add(1) {
            return Err(reject(
                "stale",
                format!("bundle for epoch {epoch}; the next is {}", self.epoch + 1),
            ));
        }
        if unhex(ephemeral).is_none_or(|k| k.len() != X25519_LEN) {
            return Err(reject(
                "invalid",
                "the ephemeral key is not 32 bytes of hex",
            ));
        }
        let expected_policy = self.pending_policy.unwrap_or(self.policy);
        if policy != &expected_policy {
            return Err(reject(
                "invalid",
                "the bundle's policy is not the one agreed for the next epoch",
            ));
        }
        let recipients: Vec<u16> = self
            .members
            .iter()
            .filter(|m| m.id != c.author)
            .map(|m| m.index)
            .collect();
        let named: Vec<u16> = wraps.iter().map(|w| w.member).collect();
        if named != recipients {
            return Err(reject(
                "invalid",
                "the bundle must wrap the secret to every other member of the roster, in order",
            ));
        }
        if wraps
            .iter()
            .any(|w| unhex(&w.hash).is_none_or(|h| h.len() != 32))
        {
            return Err(reject("invalid", "a wrap hash is not SHA-256 in hex"));
        }
        let mut changes = Vec::new();
        let mode_before = self.policy.mode;
        self.epoch = epoch;
        self.policy = *policy;
        self.pending_policy = None;
        self.rekey_due = false;
        self.last_epoch_at_ms = at_ms;
        if policy.mode != mode_before {
            self.moderator = match policy.mode {
                Mode::Voting => None,
                Mode::Moderation => self
                    .pending_moderator
                    .clone()
                    .filter(|m| self.member(m).is_some())
                    .or_else(|| Some(c.author.clone())),
            };
            if policy.mode == Mode::Moderation {
                self.proposal = None;
            }
            changes.push(Change::ModeratorChanged {
                moderator: self.moderator.clone(),
            });
        }
        self.pending_moderator = None;
        changes.insert(
            0,
            Change::EpochStarted {
                epoch,
                policy: *policy,
                distributor: c.author.clone(),
            },
        );
        Ok(changes)
    }

    fn propose(
        &mut self,
        c: &Content,
        s: &Sequenced,
        policy: &Policy,
        deadline_secs: u32,
    ) -> Rule<Vec<Change>> {
        if self.policy.mode != Mode::Voting {
            return Err(reject(
                "forbidden",
                "proposals are for voting mode; the moderator sets the policy",
            ));
        }
        if !VOTE_DEADLINE_SECS.contains(&deadline_secs) {
            return Err(reject(
                "invalid",
                format!(
                    "deadline_secs must be {}..={}",
                    VOTE_DEADLINE_SECS.start(),
                    VOTE_DEADLINE_SECS.end()
                ),
            ));
        }
        policy
            .validate()
            .map_err(|e| reject("invalid", e.to_string()))?;
        let mut changes = Vec::new();
        if let Some(open) = &self.proposal {
            if s.at_ms <= open.deadline_ms {
                return Err(reject(
                    "invalid",
                    format!(
                        "proposal {} by {} is open; vote on it first",
                        open.number, open.proposer
                    ),
                ));
            }
            changes.push(Change::ProposalDecided {
                proposal: open.number,
                adopted: false,
                reason: "the deadline passed without a majority".into(),
            });
        }
        let deadline_ms = s.at_ms.saturating_add(i64::from(deadline_secs) * 1000);
        self.proposals_opened += 1;
        let number = self.proposals_opened;
        if self.proposals.len() == REMEMBERED_PROPOSALS {
            self.proposals.pop_front();
        }
        self.proposals.push_back((s.seq, number));
        self.proposal = Some(Proposal {
            number,
            seq: s.seq,
            proposer: c.author.clone(),
            policy: *policy,
            deadline_ms,
            votes: BTreeMap::from([(c.author.clone(), true)]),
        });
        changes.push(Change::ProposalOpened {
            proposal: number,
            proposer: c.author.clone(),
            policy: *policy,
            deadline_ms,
        });
        changes.push(Change::Voted {
            proposal: number,
            voter: c.author.clone(),
            approve: true,
        });
        changes.extend(self.decide());
        Ok(changes)
    }

    /// Decides the open proposal when a majority of the current roster is for it, or when a
    /// majority can no longer be reached.
    fn decide(&mut self) -> Vec<Change> {
        let Some(p) = &self.proposal else {
            return Vec::new();
        };
        let n = self.members.len();
        let counted = |approve: bool| {
            p.votes
                .iter()
                .filter(|(who, v)| **v == approve && self.member(who).is_some())
                .count()
        };
        let (yes, no) = (counted(true), counted(false));
        let decision = if yes * 2 > n {
            Some((true, format!("adopted by {yes} of {n} members")))
        } else if (n - no) * 2 <= n {
            Some((false, format!("refused by {no} of {n} members")))
        } else {
            None
        };
        let Some((adopted, reason)) = decision else {
            return Vec::new();
        };
        let p = self.proposal.take().expect("checked above");
        let mut changes = Vec::new();
        if adopted {
            self.pending_policy = Some(p.policy);
            self.pending_moderator =
                (p.policy.mode == Mode::Moderation).then(|| p.proposer.clone());
            self.rekey_due = true;
        }
        changes.push(Change::ProposalDecided {
            proposal: p.number,
            adopted,
            reason,
        });
        if adopted {
            changes.push(Change::PolicyPending {
                policy: p.policy,
                lowered: p.policy.lowering_from(&self.policy),
                by: p.proposer,
            });
        }
        changes
    }
}
