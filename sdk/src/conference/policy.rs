//! The security policy of a conference (the BRAVIS security levels 0–3 and per-stream
//! protection) and the mode in which it is decided (moderation or voting).
//!
//! | level | joining | signalling between members | media streams |
//! |---|---|---|---|
//! | 0 | authenticated (vcsdk never runs unauthenticated) | plain | plain |
//! | 1 | mutual authentication | plain | plain |
//! | 2 | mutual authentication | encrypted | the streams the policy selects |
//! | 3 | mutual authentication | encrypted | all, AES-256-GCM; key wraps with ML-KEM-768 |

use serde::{Deserialize, Serialize};

use crate::media::sframe::CipherSuite;
use crate::media::Stream;
use crate::{Error, Result};

/// How one stream is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Sent in the clear (levels 0 and 1, or a stream a level-2 policy leaves open).
    Plain,
    /// SFrame with AES-128-GCM (suite 0x0004).
    Aes128Gcm,
    /// SFrame with AES-256-GCM (suite 0x0005).
    Aes256Gcm,
}

impl Protection {
    /// The SFrame suite, or `None` for a plain stream.
    pub fn suite(self) -> Option<CipherSuite> {
        match self {
            Protection::Plain => None,
            Protection::Aes128Gcm => Some(CipherSuite::Aes128GcmSha256),
            Protection::Aes256Gcm => Some(CipherSuite::Aes256GcmSha512),
        }
    }

    /// Its name: `plain`, `aes128gcm` or `aes256gcm`.
    pub fn name(self) -> &'static str {
        match self {
            Protection::Plain => "plain",
            Protection::Aes128Gcm => "aes128gcm",
            Protection::Aes256Gcm => "aes256gcm",
        }
    }
}

impl std::str::FromStr for Protection {
    type Err = Error;

    fn from_str(s: &str) -> Result<Protection> {
        match s {
            "plain" | "none" => Ok(Protection::Plain),
            "aes128gcm" | "aes128" => Ok(Protection::Aes128Gcm),
            "aes256gcm" | "aes256" => Ok(Protection::Aes256Gcm),
            _ => Err(Error::InvalidArgument(format!(
                "unknown protection {s:?} (plain, aes128gcm, aes256gcm)"
            ))),
        }
    }
}

/// The protection of each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamProtection {
    /// Audio.
    pub audio: Protection,
    /// Video.
    pub video: Protection,
    /// Data (whiteboard).
    pub data: Protection,
    /// Signalling between members.
    pub signalling: Protection,
}

impl StreamProtection {
    /// The same protection on every stream.
    pub fn all(p: Protection) -> Self {
        StreamProtection {
            audio: p,
            video: p,
            data: p,
            signalling: p,
        }
    }

    /// The protection of `stream`.
    pub fn get(&self, stream: Stream) -> Protection {
        match stream {
            Stream::Audio => self.audio,
            Stream::Video => self.video,
            Stream::Data => self.data,
            Stream::Signalling => self.signalling,
        }
    }

    /// Sets the protection of `stream`.
    pub fn set(&mut self, stream: Stream, p: Protection) {
        match stream {
            Stream::Audio => self.audio = p,
            Stream::Video => self.video = p,
            Stream::Data => self.data = p,
            Stream::Signalling => self.signalling = p,
        }
    }
}

/// Who changes the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The moderator alone; it also distributes the group keys and may remove members.
    Moderation,
    /// A member proposes, members vote; a majority of the current roster decides. The
    /// longest-present member distributes the group keys.
    Voting,
}

impl Mode {
    /// Its name: `moderation` or `voting`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Moderation => "moderation",
            Mode::Voting => "voting",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "moderation" | "moderated" => Ok(Mode::Moderation),
            "voting" | "vote" => Ok(Mode::Voting),
            _ => Err(Error::InvalidArgument(format!(
                "unknown mode {s:?} (moderation, voting)"
            ))),
        }
    }
}

/// Shortest and longest periodic rekey interval a policy may set (0 turns it off).
pub const REKEY_INTERVAL_SECS: std::ops::RangeInclusive<u32> = 10..=86_400;

/// A conference's security policy. It changes only at a new epoch, for every member at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Security level 0–3.
    pub level: u8,
    /// Moderation or voting.
    pub mode: Mode,
    /// Per-stream protection (must suit the level, see [`Policy::validate`]).
    pub streams: StreamProtection,
    /// The distributor starts a new epoch this often, seconds; 0: only on membership and policy
    /// changes.
    pub rekey_interval_secs: u32,
}

impl Default for Policy {
    /// Level 2, moderation, every stream AES-128-GCM, periodic rekey every 10 minutes.
    fn default() -> Self {
        Policy::for_level(2, Mode::Moderation)
    }
}

impl Policy {
    /// The usual policy of `level`: plain streams at 0 and 1, AES-128-GCM on every stream at 2,
    /// AES-256-GCM on every stream at 3 (and above 3: level 3).
    pub fn for_level(level: u8, mode: Mode) -> Policy {
        let level = level.min(3);
        let streams = match level {
            0 | 1 => StreamProtection::all(Protection::Plain),
            2 => StreamProtection::all(Protection::Aes128Gcm),
            _ => StreamProtection::all(Protection::Aes256Gcm),
        };
        Policy {
            level,
            mode,
            streams,
            rekey_interval_secs: 600,
        }
    }

    /// Checks that the streams suit the level: all plain at 0 and 1; signalling encrypted at 2;
    /// everything AES-256-GCM at 3.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("policy: {what}")));
        if self.rekey_interval_secs != 0 && !REKEY_INTERVAL_SECS.contains(&self.rekey_interval_secs)
        {
            return bad(format!(
                "rekey_interval_secs must be 0 or {}..={}",
                REKEY_INTERVAL_SECS.start(),
                REKEY_INTERVAL_SECS.end()
            ));
        }
        match self.level {
            0 | 1 => {
                if let Some(s) = Stream::ALL
                    .into_iter()
                    .find(|s| self.streams.get(*s) != Protection::Plain)
                {
                    return bad(format!(
                        "level {} sends every stream plain; {} is {}",
                        self.level,
                        s.name(),
                        self.streams.get(s).name()
                    ));
                }
            }
            2 => {
                if self.streams.signalling == Protection::Plain {
                    return bad("level 2 encrypts signalling".into());
                }
            }
            3 => {
                if let Some(s) = Stream::ALL
                    .into_iter()
                    .find(|s| self.streams.get(*s) != Protection::Aes256Gcm)
                {
                    return bad(format!(
                        "level 3 encrypts every stream with AES-256-GCM; {} is {}",
                        s.name(),
                        self.streams.get(s).name()
                    ));
                }
            }
            n => return bad(format!("security level {n} does not exist (0-3)")),
        }
        Ok(())
    }

    /// Whether group keys are wrapped with the post-quantum hybrid (level 3).
    pub fn post_quantum(&self) -> bool {
        self.level >= 3
    }

    /// What this policy takes away compared with `current`, if it lowers the protection: a lower
    /// level, or a stream sent with weaker (or no) encryption. `None` when nothing is lowered.
    /// A downgrade needs an explicit request and every member is told of it
    /// ([`crate::client::ConferenceEvent::PolicyPending`]).
    pub fn lowering_from(&self, current: &Policy) -> Option<String> {
        let mut lowered = Vec::new();
        if self.level < current.level {
            lowered.push(format!("level {} → {}", current.level, self.level));
        }
        for s in Stream::ALL {
            let (was, now) = (current.streams.get(s), self.streams.get(s));
            if now < was {
                lowered.push(format!("{} {} → {}", s.name(), was.name(), now.name()));
            }
        }
        (!lowered.is_empty()).then(|| lowered.join(", "))
    }

    /// One line: `level 2, moderation, audio aes128gcm, video plain, …`.
    pub fn describe(&self) -> String {
        let streams: Vec<String> = Stream::ALL
            .into_iter()
            .map(|s| format!("{} {}", s.name(), self.streams.get(s).name()))
            .collect();
        format!(
            "level {}, {}, {}",
            self.level,
            self.mode.name(),
            streams.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_names_what_a_policy_takes_away() {
        let three = Policy::for_level(3, Mode::Moderation);
        let two = Policy::for_level(2, Mode::Voting);
        assert_eq!(
            two.lowering_from(&three).unwrap(),
            "level 3 → 2, audio aes256gcm → aes128gcm, video aes256gcm → aes128gcm, data aes256gcm → aes128gcm, signalling aes256gcm → aes128gcm"
        );
        assert_eq!(three.lowering_from(&two), None);
        let mut voting_three = three;
        voting_three.mode = Mode::Voting;
        assert_eq!(voting_three.lowering_from(&three), None);
        let mut plain_video = two;
        plain_video.streams.set(Stream::Video, Protection::Plain);
        assert_eq!(
            plain_video.lowering_from(&two).unwrap(),
            "video aes128gcm → plain"
        );
    }

    #[test]
    fn levels_constrain_streams() {
        for level in 0..=3 {
            Policy::for_level(level, Mode::Voting).validate().unwrap();
        }
        let mut p = Policy::for_level(1, Mode::Moderation);
        p.streams.audio = Protection::Aes128Gcm;
        assert!(p.validate().unwrap_err().to_string().contains("audio"));
        let mut p = Policy::for_level(2, Mode::Moderation);
        p.streams.video = Protection::Plain;
        p.validate().unwrap();
        p.streams.signalling = Protection::Plain;
        assert!(p.validate().is_err());
        let mut p = Policy::for_level(3, Mode::Moderation);
        p.streams.data = Protection::Aes128Gcm;
        assert!(p.validate().is_err());
        let mut p = Policy::for_level(2, Mode::Moderation);
        p.level = 4;
        assert!(p.validate().is_err());
        p.level = 2;
        p.rekey_interval_secs = 3;
        assert!(p.validate().is_err());
        p.rekey_interval_secs = 0;
        p.validate().unwrap();
    }

    #[test]
    fn policy_json_is_strict() {
        let p = Policy::default();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
        let extra = json.replacen('{', "{\"x\":1,", 1);
        assert!(serde_json::from_str::<Policy>(&extra).is_err());
    }
}
