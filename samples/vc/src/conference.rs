//! `vc conf`: conferences from the command line. `vc conf create` and `vc conf join` run a
//! member's session: they print what happens (members joining and leaving, each new epoch with
//! its roster and policy, votes), send a small frame to every member at a steady pace and count
//! what arrives from whom in which epoch. The other commands (`invite`, `leave`, `remove`,
//! `policy`, `vote`, `status`) talk to the running session through its control socket,
//! `IDENTITY_DIR/conference.sock` (mode 0600: only the identity's owner can use it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent, Conference, ConferenceEvent, ConferenceOptions};
use vcsdk::conference::{AccessList, Mode, Policy, Protection};
use vcsdk::dir_lock::DirLock;

use crate::exit::{self, Exit};
use vcsdk::media::Stream;

/// File name of the session's control socket in the identity directory.
pub const CONTROL_SOCKET: &str = "conference.sock";
/// File name of the access list in the identity directory.
pub const ACL_FILE: &str = "acl.toml";

/// What a session does besides following the conference.
pub struct Session {
    /// The identity directory (for the control socket).
    pub dir: PathBuf,
    /// Send a frame to every member this often (none: send nothing).
    pub frame_interval: Option<Duration>,
    /// Leave after this long.
    pub duration: Option<Duration>,
    /// Media settings.
    pub options: ConferenceOptions,
}

/// A policy from command-line words: level, mode, and the streams left plain.
pub fn policy(level: u8, mode: &str, plain: &[String]) -> Result<Policy, String> {
    let mode: Mode = mode.parse().map_err(|e| format!("--mode: {e}"))?;
    let mut policy = Policy::for_level(level, mode);
    if level > 3 {
        return Err("--level must be 0 to 3".into());
    }
    for s in plain {
        let stream: Stream = s.parse().map_err(|e| format!("--plain: {e}"))?;
        policy.streams.set(stream, Protection::Plain);
    }
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

/// A policy change as `vc conf policy` asks for it: only the fields given change; the rest keep
/// the conference's current values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    /// A new level (its usual stream protection comes with it).
    pub level: Option<u8>,
    /// A new mode.
    pub mode: Option<Mode>,
    /// Streams to leave plain (audio, video, data).
    pub plain: Vec<String>,
    /// Whether a change that lowers the protection is meant.
    pub allow_downgrade: bool,
}

impl PolicyChange {
    /// Checks the command-line words.
    pub fn from_words(
        level: Option<u8>,
        mode: Option<&str>,
        plain: &[String],
        allow_downgrade: bool,
    ) -> Result<PolicyChange, String> {
        if level.is_some_and(|l| l > 3) {
            return Err("--level must be 0 to 3".into());
        }
        let mode = mode
            .map(|m| m.parse::<Mode>().map_err(|e| format!("--mode: {e}")))
            .transpose()?;
        for s in plain {
            s.parse::<Stream>().map_err(|e| format!("--plain: {e}"))?;
        }
        let plain = plain.to_vec();
        if level.is_none() && mode.is_none() && plain.is_empty() {
            return Err("say what to change: --level, --mode or --plain".into());
        }
        Ok(PolicyChange {
            level,
            mode,
            plain,
            allow_downgrade,
        })
    }

    /// The policy `current` becomes; a downgrade without `allow_downgrade` is refused, naming
    /// what it would lower.
    pub fn apply(&self, current: &Policy) -> Result<Policy, String> {
        let mut policy = match self.level {
            Some(level) if level != current.level => {
                let mut p = Policy::for_level(level, current.mode);
                p.rekey_interval_secs = current.rekey_interval_secs;
                p
            }
            _ => *current,
        };
        if let Some(mode) = self.mode {
            policy.mode = mode;
        }
        for stream in &self.plain {
            let stream: Stream = stream.parse().map_err(|e| format!("--plain: {e}"))?;
            policy.streams.set(stream, Protection::Plain);
        }
        policy.validate().map_err(|e| e.to_string())?;
        if let Some(lowered) = policy.lowering_from(current) {
            if !self.allow_downgrade {
                return Err(format!(
                    "this lowers the conference's protection ({lowered}); repeat with --allow-downgrade if you mean it (every member is told)"
                ));
            }
        }
        Ok(policy)
    }
}

/// Loads the access list of the identity directory (anyone may invite when there is none).
pub fn load_acl(dir: &Path) -> Result<AccessList, String> {
    let path = dir.join(ACL_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => AccessList::from_toml(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccessList::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A request on the control socket (one JSON line; one JSON line answers it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Invite a user.
    Invite {
        /// Who.
        user: String,
    },
    /// Leave the conference (the session then ends).
    Leave,
    /// Remove a member (moderator).
    Remove {
        /// Who.
        member: String,
    },
    /// Set the policy (moderator) or, in voting mode, propose it.
    Policy {
        /// What changes.
        change: PolicyChange,
        /// Votes count this many seconds (voting mode).
        deadline_secs: u64,
    },
    /// Vote on the open proposal.
    Vote {
        /// The proposal.
        proposal: u64,
        /// For or against.
        approve: bool,
    },
    /// Hand the moderator role over.
    HandOver {
        /// To whom.
        to: String,
    },
    /// The conference's state.
    Status,
}

/// The answer on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlAnswer {
    /// Whether it worked.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
}

/// Sends one request to the session running for `dir` and prints its answer.
pub async fn control(dir: &Path, request: ControlRequest) -> Result<(), String> {
    let path = dir.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "no conference session for {} ({e}): start one with vc conf create or vc conf join",
            dir.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(read).lines();
    let answer = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| "the session did not answer within 60 s".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("the session closed the connection")?;
    let answer: ControlAnswer = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    if answer.ok {
        println!("{}", answer.message);
        Ok(())
    } else {
        Err(answer.message)
    }
}

/// Lock file of the one conference session an identity directory may run at a time.
pub const SESSION_LOCK: &str = "conference.lock";

/// Takes the identity directory's session lock before anything else happens: a second session
/// is refused (and told which process holds it) instead of taking over the first one's control
/// socket.
pub fn lock_session(dir: &Path) -> Result<DirLock, String> {
    DirLock::acquire(dir, SESSION_LOCK, "a vc conf session")
        .map_err(|e| format!("{e} (one conference session per identity directory; steer it with vc conf invite|status|leave …)"))
}

/// `vc conf create`: creates a conference, invites `invite`, runs the session.
pub async fn create(
    (client, events): (Client, Receiver<ClientEvent>),
    policy: Policy,
    invite: Vec<String>,
    session: Session,
) -> Result<(), Exit> {
    client.set_access_list(load_acl(&session.dir)?);
    let options = ConferenceOptions {
        policy,
        ..session.options.clone()
    };
    let conf = client
        .create_conference(options)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "created conference {} ({})",
        conf.id(),
        conf.policy().describe()
    );
    for user in invite {
        match conf.invite(&user).await {
            Ok(()) => println!("invited {user}"),
            Err(e) => println!("could not invite {user}: {e}"),
        }
    }
    run(client, events, conf, session).await
}

/// `vc conf join`: waits for an invitation (from `from`, or anyone the access list admits; to
/// `conf`, or any), joins, runs the session.
pub async fn join(
    (client, mut events): (Client, Receiver<ClientEvent>),
    from: Option<String>,
    conf_id: Option<String>,
    timeout: Duration,
    session: Session,
) -> Result<(), Exit> {
    client.set_access_list(load_acl(&session.dir)?);
    println!("waiting for an invitation as {}", client.user());
    let wait = async {
        loop {
            match events.recv().await {
                Some(ClientEvent::ConferenceInvitation {
                    conf,
                    from: inviter,
                    ..
                }) => {
                    let wanted = from.as_deref().is_none_or(|f| f == inviter)
                        && conf_id.as_deref().is_none_or(|c| c == conf);
                    if wanted {
                        println!("invited to conference {conf} by {inviter}");
                        return Ok(conf);
                    }
                    println!("ignoring the invitation to {conf} from {inviter}");
                }
                Some(ClientEvent::Disconnected {
                    reason,
                    reconnecting: false,
                }) => {
                    return Err(Exit::new(
                        exit::UNREACHABLE,
                        format!("the connection to the server ended for good: {reason}"),
                    ))
                }
                Some(ClientEvent::Disconnected { reason, .. }) => {
                    println!("disconnected from the server ({reason}); reconnecting");
                }
                Some(_) => {}
                None => {
                    return Err(Exit::new(
                        exit::UNREACHABLE,
                        "the connection to the server is gone",
                    ))
                }
            }
        }
    };
    let conf = tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("no invitation within {} s", timeout.as_secs()))??;
    let conference = client
        .join_conference(&conf, session.options.clone())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "joined conference {} as member {}",
        conference.id(),
        conference.index().unwrap_or_default()
    );
    run(client, events, conference, session).await
}

/// Follows the conference until we leave (or are removed, or the duration passes).
async fn run(
    client: Client,
    mut events: Receiver<ClientEvent>,
    conf: Conference,
    session: Session,
) -> Result<(), Exit> {
    let socket = session.dir.join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("control socket {}: {e}", socket.display()))?;
    set_owner_only(&socket)?;
    let _cleanup = RemoveOnDrop(socket.clone());
    let (commands_tx, mut commands) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio::spawn(accept(listener, commands_tx));
    let mut received: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut sent = 0u64;
    let period = session.frame_interval.unwrap_or(Duration::from_secs(3600));
    let mut pace = tokio::time::interval(period);
    let end_at = session
        .duration
        .map(|d| tokio::time::Instant::now() + d)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut leaving = false;
    let mut media_open = true;
    let outcome = loop {
        tokio::select! {
            event = conf.next_event() => match event {
                Some(ConferenceEvent::Ended { reason }) if !leaving && !client.is_connected() => {
                    // The connection went, and the participation with it: not a clean end.
                    println!("{}", ended(&reason));
                    break Err(Exit::new(exit::UNREACHABLE, format!("the connection to the server was lost, and the conference with it: {reason}")));
                }
                Some(ConferenceEvent::Ended { reason }) => {
                    println!("{}", ended(&reason));
                    break Ok(());
                }
                Some(ConferenceEvent::Epoch { epoch, policy, distributor, roster }) => {
                    report(&mut received);
                    println!(
                        "epoch {epoch}: {} ({}; keys from {distributor})",
                        roster.join(", "),
                        policy.describe()
                    );
                }
                Some(e) => println!("{}", describe(&e)),
                None => break Ok(()),
            },
            frame = conf.recv(), if media_open => match frame {
                Some(f) => *received.entry((f.member.to_string(), f.epoch)).or_default() += 1,
                None => media_open = false,
            },
            _ = pace.tick(), if session.frame_interval.is_some() => {
                sent += 1;
                let frame = format!("{} #{sent}", conf.me());
                if conf.send(Stream::Audio, frame.as_bytes()).await.is_err() {
                    sent -= 1;
                }
            }
            Some((request, reply)) = commands.recv() => {
                leaving |= matches!(request, ControlRequest::Leave);
                let answer = handle(&conf, request).await;
                let _ = reply.send(answer);
            }
            event = events.recv() => match event {
                Some(ClientEvent::Disconnected { reason, reconnecting: true }) => println!("disconnected from the server ({reason})"),
                Some(ClientEvent::Disconnected { reason, reconnecting: false }) => {
                    break Err(Exit::new(exit::UNREACHABLE, format!("the connection to the server ended for good: {reason}")));
                }
                Some(ClientEvent::LowBalance { balance, seconds_left, .. }) => {
                    println!("{}", crate::low_balance(&client, balance, seconds_left).await);
                }
                Some(_) => {}
                None => break Err(Exit::new(exit::UNREACHABLE, "the connection to the server is gone")),
            },
            _ = tokio::time::sleep_until(end_at), if !leaving => {
                leaving = true;
                if let Err(e) = conf.leave().await {
                    break Err(format!("leaving: {e}").into());
                }
            }
            _ = &mut ctrl_c, if !leaving => {
                leaving = true;
                if let Err(e) = conf.leave().await {
                    break Err(format!("leaving: {e}").into());
                }
            }
        }
    };
    acceptor.abort();
    report(&mut received);
    let s = conf.stats();
    println!(
        "media: {sent} frames sent; {} received, {} lost, {} replays / {} authentication failures / {} unknown keys / {} foreign packets refused",
        s.frames_received, s.frames_lost, s.replays_refused, s.auth_failures, s.unknown_key, s.foreign_packets
    );
    let _ = client.close().await;
    outcome
}

/// Prints and clears the frames counted per member and epoch.
fn report(received: &mut BTreeMap<(String, u32), u64>) {
    if received.is_empty() {
        return;
    }
    let parts: Vec<String> = received
        .iter()
        .map(|((m, e), n)| format!("{n} from {m} in epoch {e}"))
        .collect();
    println!("frames received: {}", parts.join(", "));
    received.clear();
}

fn describe(e: &ConferenceEvent) -> String {
    match e {
        ConferenceEvent::Joined { member } => format!("{member} joined"),
        ConferenceEvent::Left { member, reason } if reason == "left" => format!("{member} left"),
        ConferenceEvent::Left { member, reason } => format!("{member} left ({reason})"),
        ConferenceEvent::Invited { invitee, inviter } => format!("{inviter} invited {invitee}"),
        ConferenceEvent::Declined { invitee } => format!("{invitee} declined"),
        ConferenceEvent::PolicyPending {
            policy,
            by,
            lowered,
        } => match lowered {
            Some(lowered) => format!(
                "WARNING: {by} lowered the protection from the next epoch ({lowered}): {}",
                policy.describe()
            ),
            None => format!(
                "{by} changed the policy from the next epoch: {}",
                policy.describe()
            ),
        },
        ConferenceEvent::ModeratorChanged { moderator } => match moderator {
            Some(m) => format!("{m} is the moderator"),
            None => "no moderator (voting mode)".into(),
        },
        ConferenceEvent::ProposalOpened {
            proposal,
            proposer,
            policy,
            ..
        } => format!(
            "{proposer} proposes ({}): vote with vc conf vote {proposal} yes|no",
            policy.describe()
        ),
        ConferenceEvent::Voted {
            proposal,
            voter,
            approve,
        } => format!(
            "{voter} voted {} on proposal {proposal}",
            if *approve { "yes" } else { "no" }
        ),
        ConferenceEvent::ProposalDecided {
            proposal,
            adopted,
            reason,
        } => format!(
            "proposal {proposal} {}: {reason}",
            if *adopted { "adopted" } else { "not adopted" }
        ),
        ConferenceEvent::Rejected {
            seq,
            author,
            kind,
            code,
            reason,
        } => format!(
            "refused a change from {author} ({}; log entry {seq}): {reason} [{code}]",
            kind.replace('_', " ")
        ),
        ConferenceEvent::KeyUnavailable { epoch, reason } => {
            format!("NO KEY for epoch {epoch}: {reason}")
        }
        ConferenceEvent::Epoch { epoch, .. } => format!("epoch {epoch}"),
        ConferenceEvent::Ended { reason } => ended(reason),
    }
}

/// How our own end in the conference reads: `left the conference`, or why it ended.
fn ended(reason: &str) -> String {
    if reason == "left" {
        "left the conference".to_owned()
    } else {
        format!("out of the conference: {reason}")
    }
}

async fn handle(conf: &Conference, request: ControlRequest) -> ControlAnswer {
    let result: Result<String, String> = async {
        let e = |e: vcsdk::Error| e.to_string();
        match request {
            ControlRequest::Invite { user } => {
                conf.invite(&user).await.map_err(e)?;
                Ok(format!("invited {user} to {}", conf.id()))
            }
            ControlRequest::Leave => {
                conf.leave().await.map_err(e)?;
                Ok(format!("left {}", conf.id()))
            }
            ControlRequest::Remove { member } => {
                conf.remove(&member).await.map_err(e)?;
                Ok(format!("removed {member}"))
            }
            ControlRequest::Policy {
                change,
                deadline_secs,
            } => {
                let policy = change.apply(&conf.policy())?;
                if conf.policy().mode == Mode::Voting {
                    let id = conf
                        .propose(policy, Duration::from_secs(deadline_secs))
                        .await
                        .map_err(e)?;
                    Ok(format!("proposed ({}) as proposal {id}", policy.describe()))
                } else {
                    conf.set_policy(policy).await.map_err(e)?;
                    Ok(format!(
                        "policy set for the next epoch: {}",
                        policy.describe()
                    ))
                }
            }
            ControlRequest::Vote { proposal, approve } => {
                conf.vote(proposal, approve).await.map_err(e)?;
                Ok(format!("voted on proposal {proposal}"))
            }
            ControlRequest::HandOver { to } => {
                conf.hand_over(&to).await.map_err(e)?;
                Ok(format!("{to} is the moderator"))
            }
            ControlRequest::Status => {
                let roster: Vec<String> = conf
                    .roster()
                    .into_iter()
                    .map(|m| {
                        if m.moderator {
                            format!("{} (moderator)", m.id)
                        } else {
                            m.id
                        }
                    })
                    .collect();
                let mut text = format!(
                    "conference {}\n  epoch:     {}\n  policy:    {}\n  members:   {}",
                    conf.id(),
                    conf.epoch(),
                    conf.policy().describe(),
                    roster.join(", ")
                );
                if let Some((id, proposer, policy, _)) = conf.proposal() {
                    text.push_str(&format!(
                        "\n  proposal:  {id} by {proposer}: {} (vote with vc conf vote {id} yes|no)",
                        policy.describe()
                    ));
                }
                Ok(text)
            }
        }
    }
    .await;
    match result {
        Ok(message) => ControlAnswer { ok: true, message },
        Err(message) => ControlAnswer { ok: false, message },
    }
}

type Command = (ControlRequest, tokio::sync::oneshot::Sender<ControlAnswer>);

/// Takes requests on the control socket and hands them to the session.
async fn accept(listener: UnixListener, commands: tokio::sync::mpsc::Sender<Command>) {
    while let Ok((stream, _)) = listener.accept().await {
        let commands = commands.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await
            else {
                return;
            };
            let answer = match serde_json::from_str::<ControlRequest>(&line) {
                Ok(request) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if commands.send((request, tx)).await.is_err() {
                        return;
                    }
                    rx.await.unwrap_or(ControlAnswer {
                        ok: false,
                        message: "the session ended".into(),
                    })
                }
                Err(e) => ControlAnswer {
                    ok: false,
                    message: format!("malformed request: {e}"),
                },
            };
            let mut text = serde_json::to_string(&answer).unwrap_or_default();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

fn set_owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
