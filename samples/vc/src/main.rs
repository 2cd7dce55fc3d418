//! `vc`: a command-line client on the vcsdk SDK.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod calls;
mod conference;
mod exit;
mod transfer;
use exit::Exit;
use vcsdk::billing::Money;
use vcsdk::identity::{Identity, IdentityStore};
use vcsdk::pki::CsrSubject;
use vcsdk::proto::ca::RevocationReason;
use vcsdk::ClientId;

/// A command-line client for vcsdk: enroll an identity with the CA, renew, revoke and show it;
/// register with a conferencing server, see who is online, place and answer calls.
#[derive(Parser)]
#[command(name = "vc", version, about, long_about = None, after_help = exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the call's media is carried.
#[derive(Args, Clone)]
struct MediaArgs {
    /// Security level of the key agreement: 2 (X25519) or 3 (X25519 + ML-KEM-768, AES-256);
    /// both parties must use the same.
    #[arg(long, default_value_t = 2)]
    level: u8,
    /// Never send media directly to the peer (and never reveal our address): use the server's
    /// relay.
    #[arg(long)]
    relay_only: bool,
}

impl MediaArgs {
    fn config(&self) -> Result<vcsdk::media::MediaConfig, String> {
        if !matches!(self.level, 2 | 3) {
            return Err("--level must be 2 or 3".into());
        }
        Ok(vcsdk::media::MediaConfig {
            level: self.level,
            direct: !self.relay_only,
            ..Default::default()
        })
    }
}

#[derive(Args)]
struct IdentityDir {
    /// Directory holding the identity (cert.pem, key.pem, root.pem, identity.toml).
    #[arg(long, value_name = "DIR")]
    identity_dir: PathBuf,
}

#[derive(Args)]
struct ServerArgs {
    /// The conferencing server, HOST:PORT.
    #[arg(long)]
    server: String,
    /// The name the server's certificate must carry (defaults to HOST).
    #[arg(long)]
    server_name: Option<String>,
    #[command(flatten)]
    dir: IdentityDir,
}

#[derive(Subcommand)]
enum Command {
    /// Make a key, send a CSR with a one-time token to the CA, and store the issued identity.
    Enroll {
        /// The CA's URL, e.g. https://127.0.0.1:8443.
        #[arg(long)]
        ca_url: String,
        /// The CA root certificate to pin (PEM), obtained out of band.
        #[arg(long)]
        ca_root: PathBuf,
        /// The one-time enrollment token from the CA's operator.
        #[arg(long)]
        token: String,
        /// Your client id (the token must be for this id).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Renew the certificate with a new key (the old one is revoked as superseded).
    Renew {
        #[command(flatten)]
        dir: IdentityDir,
        /// Renew only when two thirds of the lifetime have passed.
        #[arg(long)]
        if_due: bool,
    },
    /// Revoke the certificate at the CA; the identity directory then holds none.
    Revoke {
        #[command(flatten)]
        dir: IdentityDir,
        /// unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
    },
    /// Register with the server, accepting its terms of use.
    Register {
        #[command(flatten)]
        server: ServerArgs,
        /// Accept the server's current terms of use (their version is shown without this flag).
        #[arg(long)]
        accept_terms: bool,
    },
    /// Stop being a registered user of the server.
    Unregister {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the registered users online now.
    Users {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Call a user; hang up after --duration, otherwise on Ctrl-C.
    Call {
        /// The user to call.
        user: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Hang up this long after the call is accepted (e.g. 10s, 2m); with --send, the call
        /// ends when the file is through unless this is given.
        #[arg(long)]
        duration: Option<String>,
        /// Stream this file over the call's end-to-end encrypted media; the receiver writes it
        /// back (`vc listen --save DIR`) and confirms its SHA-256.
        #[arg(long)]
        send: Option<PathBuf>,
        /// Bytes of the file per media frame.
        #[arg(long, default_value_t = 16_384)]
        frame_size: usize,
        /// Frames per second (0: as fast as the path takes them).
        #[arg(long, default_value_t = 30)]
        rate: u32,
        /// The stream the file goes on: audio, video, data or signalling.
        #[arg(long, default_value = "video")]
        stream: String,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Wait for calls and answer them (asks on the terminal unless --auto-accept). Other
    /// devices of the same identity may be connected at once: calls ring on all of them.
    /// Exit status: 0 after Ctrl-C or --max-calls; 3 with the reason on stderr when the
    /// connection to the server ends for good (certificate revoked, too many devices, ...).
    Listen {
        #[command(flatten)]
        server: ServerArgs,
        /// Accept every call without asking.
        #[arg(long)]
        auto_accept: bool,
        /// Decline every call without asking.
        #[arg(long, conflicts_with = "auto_accept")]
        auto_decline: bool,
        /// Exit after this many calls have ended.
        #[arg(long)]
        max_calls: Option<u32>,
        /// Write files streamed over accepted calls into this directory.
        #[arg(long)]
        save: Option<PathBuf>,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Show your account: balance, tariff, recent calls.
    Account {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Prepaid credit.
    Credit {
        #[command(subcommand)]
        command: CreditCommand,
    },
    /// Signed call receipts: export your records with them, and verify a file offline.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Conferences of several members: create or join one (a session that runs until you leave),
    /// and steer the running session: invite, remove, policy, vote, leave, status. A session
    /// exits 0 when it leaves or the conference ends, and 3 with the reason on stderr when its
    /// connection to the server is lost (the participation goes with it) or ends for good.
    Conf {
        #[command(subcommand)]
        command: ConfCommand,
    },
    /// Show the identity: id, serial (keyID), validity, renewal time.
    Whoami {
        #[command(flatten)]
        dir: IdentityDir,
        /// Also fetch the CA's CRL and check the certificate against it.
        #[arg(long)]
        check: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a conference session does besides following the conference.
#[derive(Args, Clone)]
struct SessionArgs {
    /// Send a small frame to every member this often (e.g. 200ms; 0: send nothing).
    #[arg(long, default_value = "200ms")]
    frame_interval: String,
    /// Leave after this long (e.g. 30s); otherwise on Ctrl-C or `vc conf leave`.
    #[arg(long)]
    duration: Option<String>,
    /// Never send media directly to other members (and never reveal our address): use the
    /// server's relay.
    #[arg(long)]
    relay_only: bool,
}

/// A policy on the command line.
#[derive(Args, Clone)]
struct PolicyArgs {
    /// Security level 0-3: 0 and 1 plain, 2 encrypted (AES-128-GCM), 3 AES-256-GCM with
    /// post-quantum key wraps. Creating: 2 unless given; changing the policy: the conference's
    /// level unless given.
    #[arg(long)]
    level: Option<u8>,
    /// moderation (the moderator decides) or voting (a majority decides); creating: moderation
    /// unless given; changing the policy: the conference's mode unless given.
    #[arg(long)]
    mode: Option<String>,
    /// Streams to leave plain at level 2 (audio, video, data; comma-separated).
    #[arg(long, value_delimiter = ',')]
    plain: Vec<String>,
}

#[derive(Subcommand)]
enum ConfCommand {
    /// Create a conference, invite users, and run the session (prints members, epochs, votes).
    Create {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Users to invite at once (comma-separated).
        #[arg(long, value_delimiter = ',')]
        invite: Vec<String>,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Wait for an invitation the access list (IDENTITY_DIR/acl.toml) admits, join, and run the
    /// session.
    Join {
        #[command(flatten)]
        server: ServerArgs,
        /// Only an invitation from this user.
        #[arg(long)]
        from: Option<String>,
        /// Only an invitation to this conference.
        #[arg(long)]
        conf: Option<String>,
        /// Give up after this long without an invitation.
        #[arg(long, default_value = "10m")]
        wait: String,
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Invite a user into the running session's conference.
    Invite {
        /// Who.
        user: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Leave the running session's conference.
    Leave {
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Remove a member (moderator).
    Remove {
        /// Who.
        member: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Set the policy (moderator), or propose it in voting mode; it takes effect at the next
    /// epoch for everyone.
    Policy {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Allow a change that lowers the protection (a lower level, or a stream left plain or
        /// with a weaker cipher); without it such a change is refused. Every member is told.
        #[arg(long)]
        allow_downgrade: bool,
        /// Voting mode: votes count this long.
        #[arg(long, default_value = "60s")]
        deadline: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Vote on the open proposal.
    Vote {
        /// The proposal's number (printed when it was opened).
        proposal: u64,
        /// yes or no.
        choice: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Hand the moderator role to another member.
    HandOver {
        /// The new moderator.
        to: String,
        #[command(flatten)]
        dir: IdentityDir,
    },
    /// Show the running session's conference: epoch, policy, members, open proposal.
    Status {
        #[command(flatten)]
        dir: IdentityDir,
    },
}

impl SessionArgs {
    fn session(&self, dir: &std::path::Path) -> Result<conference::Session, String> {
        let parse = |what: &str, v: &str| {
            vcsdk::util::parse_duration(v).map_err(|e| format!("--{what}: {e}"))
        };
        let interval = parse("frame-interval", &self.frame_interval)?;
        Ok(conference::Session {
            dir: dir.to_owned(),
            frame_interval: (!interval.is_zero()).then_some(interval),
            duration: self
                .duration
                .as_deref()
                .map(|d| parse("duration", d))
                .transpose()?,
            options: vcsdk::client::ConferenceOptions {
                media: vcsdk::conference::ConferenceMediaConfig {
                    direct: !self.relay_only,
                    ..Default::default()
                },
                ..Default::default()
            },
        })
    }
}

#[derive(Subcommand)]
enum CreditCommand {
    /// Redeem a voucher code from the operator.
    Redeem {
        /// The voucher code.
        code: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Write all your call records with their signed receipts to FILE (JSON).
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check offline that every charge in FILE matches a call you signed (exit 1 if one does not).
    Verify {
        /// A file from `vc receipts export`.
        file: PathBuf,
        /// Your identity: its id and pinned root are used.
        #[arg(long, value_name = "DIR")]
        identity_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vc: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vc: {e}");
            ExitCode::from(e.code)
        }
    }
}

async fn run(command: Command) -> Result<(), Exit> {
    match command {
        Command::Enroll {
            ca_url,
            ca_root,
            token,
            id,
            dir,
        } => {
            let id = ClientId::new(&id)?;
            let root = std::fs::read(&ca_root)
                .map_err(|e| format!("reading {}: {e}", ca_root.display()))?;
            let store = IdentityStore::new(&dir.identity_dir);
            let identity = store
                .enroll(&ca_url, &root, &token, CsrSubject::Client(id))
                .await?;
            println!("enrolled {}", describe(&identity));
            Ok(())
        }
        Command::Renew { dir, if_due } => {
            let store = IdentityStore::new(&dir.identity_dir);
            if if_due {
                match store.renew_if_due().await? {
                    Some(identity) => println!("renewed {}", describe(&identity)),
                    None => {
                        let identity = store.load()?;
                        println!(
                            "not due: renewal at {}",
                            vcsdk::util::rfc3339(identity.info().renewal_due_at())
                        );
                    }
                }
            } else {
                let identity = store.renew().await?;
                println!("renewed {}", describe(&identity));
            }
            Ok(())
        }
        Command::Revoke { dir, reason } => {
            let store = IdentityStore::new(&dir.identity_dir);
            let done = store.revoke(reason).await?;
            println!(
                "revoked serial {} ({}) at {}",
                done.serial,
                done.reason,
                vcsdk::util::rfc3339(done.revoked_at)
            );
            Ok(())
        }
        Command::Register {
            server,
            accept_terms,
        } => {
            let (client, _events) = connect(&server).await?;
            let terms = client.welcome().terms_version;
            if !accept_terms {
                return Err(format!(
                    "the server's terms of use are version {terms}; run again with --accept-terms to accept them and register"
                )
                .into());
            }
            client.register(&terms).await?;
            println!(
                "registered {} (terms of use version {terms})",
                client.user()
            );
            let _ = client.close().await;
            Ok(())
        }
        Command::Unregister { server } => {
            let (client, _events) = connect(&server).await?;
            client.unregister().await?;
            println!("unregistered {}", client.user());
            let _ = client.close().await;
            Ok(())
        }
        Command::Users { server } => {
            let (client, _events) = connect(&server).await?;
            for user in client.active_users().await? {
                println!(
                    "{} (online since {})",
                    user.user,
                    vcsdk::util::rfc3339(user.online_since)
                );
            }
            let _ = client.close().await;
            Ok(())
        }
        Command::Call {
            user,
            server,
            duration,
            send,
            frame_size,
            rate,
            stream,
            media,
        } => {
            let duration = duration
                .map(|d| vcsdk::util::parse_duration(&d).map_err(|e| format!("--duration: {e}")))
                .transpose()?;
            let sending = match send {
                Some(file) => {
                    if !(1..=1 << 24).contains(&frame_size) {
                        return Err("--frame-size must be 1 to 16777216 bytes".into());
                    }
                    // Checked before anything rings or is charged.
                    transfer::check_readable(&file)?;
                    Some(calls::Sending {
                        file,
                        options: transfer::SendOptions {
                            frame_size,
                            rate,
                            stream: stream.parse().map_err(|e| format!("--stream: {e}"))?,
                        },
                        config: media.config()?,
                    })
                }
                None => None,
            };
            calls::call(connect(&server).await?, &user, duration, sending).await
        }
        Command::Listen {
            server,
            auto_accept,
            auto_decline,
            max_calls,
            save,
            media,
        } => {
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("--save {}: {e}", dir.display()))?;
            }
            let policy = match (auto_accept, auto_decline) {
                (true, _) => calls::AnswerPolicy::Accept,
                (_, true) => calls::AnswerPolicy::Decline,
                _ => calls::AnswerPolicy::Ask,
            };
            Ok(calls::listen(
                connect(&server).await?,
                policy,
                max_calls,
                save,
                media.config()?,
            )
            .await?)
        }
        Command::Account { server } => {
            let (client, _events) = connect(&server).await?;
            let a = client.account_info().await?;
            let money = |minor| Money::new(minor, &a.currency);
            println!("user:     {}", a.user);
            if a.account_type == "postpaid" {
                println!(
                    "account:  postpaid, may go {} below zero",
                    money(a.credit_limit)
                );
            } else {
                println!("account:  {}", a.account_type);
            }
            println!("balance:  {}", money(a.balance));
            println!("tariff:   {}", a.tariff.describe());
            println!("recent calls:");
            for r in &a.recent_calls {
                println!("  {}", describe_record(r, &a.tariff));
            }
            let _ = client.close().await;
            Ok(())
        }
        Command::Credit {
            command: CreditCommand::Redeem { code, server },
        } => {
            let (client, _events) = connect(&server).await?;
            let a = client.add_credit(&code).await?;
            println!("redeemed; balance {}", Money::new(a.balance, &a.currency));
            let _ = client.close().await;
            Ok(())
        }
        Command::Receipts {
            command: ReceiptsCommand::Export { server, out },
        } => {
            let (client, _events) = connect(&server).await?;
            let records = client.call_records().await?;
            let json = serde_json::to_vec_pretty(&records).map_err(text)?;
            vcsdk::util::write_atomic(&out, &json, 0o600)
                .map_err(|e| format!("writing {}: {e}", out.display()))?;
            println!(
                "exported {} call records to {}",
                records.len(),
                out.display()
            );
            let _ = client.close().await;
            Ok(())
        }
        Command::Receipts {
            command: ReceiptsCommand::Verify { file, identity_dir },
        } => verify_receipts(&file, &identity_dir),
        Command::Conf { command } => Ok(conf(command).await?),
        Command::Whoami { dir, check, json } => {
            let store = IdentityStore::new(&dir.identity_dir);
            let identity = store.load()?;
            let mut refused = None;
            let status = if check {
                let checker = store.refresh_crl().await?;
                match checker.verify(
                    std::slice::from_ref(identity.certificate()),
                    vcsdk::pki::Usage::Client,
                    Some(identity.id()),
                    rustls_now(),
                ) {
                    Ok(_) => "valid (checked against the CA's current CRL)".to_owned(),
                    Err(e) => {
                        refused = Some(e.to_string());
                        format!("refused: {e}")
                    }
                }
            } else {
                "not checked (use --check)".to_owned()
            };
            let info = identity.info();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": info.id,
                        "serial": info.serial,
                        "not_before": info.not_before,
                        "not_after": info.not_after,
                        "renewal_due_at": info.renewal_due_at(),
                        "status": status,
                    })
                );
            } else {
                println!("id:          {}", info.id);
                println!("serial:      {}", info.serial);
                println!("valid from:  {}", vcsdk::util::rfc3339(info.not_before));
                println!("valid until: {}", vcsdk::util::rfc3339(info.not_after));
                println!(
                    "renew at:    {}",
                    vcsdk::util::rfc3339(info.renewal_due_at())
                );
                println!("status:      {status}");
            }
            match refused {
                Some(why) => Err(Exit::new(
                    exit::CHECK_FAILED,
                    format!("the certificate does not pass the check: {why}"),
                )),
                None => Ok(()),
            }
        }
    }
}

/// `vc conf …`.
async fn conf(command: ConfCommand) -> Result<(), Exit> {
    use conference::ControlRequest as R;
    match command {
        ConfCommand::Create {
            server,
            policy,
            invite,
            session,
        } => {
            let mode = policy.mode.as_deref().unwrap_or("moderation");
            let policy = conference::policy(policy.level.unwrap_or(2), mode, &policy.plain)?;
            let session = session.session(&server.dir.identity_dir)?;
            let _lock = conference::lock_session(&server.dir.identity_dir)?;
            Ok(conference::create(connect(&server).await?, policy, invite, session).await?)
        }
        ConfCommand::Join {
            server,
            from,
            conf,
            wait,
            session,
        } => {
            let wait = vcsdk::util::parse_duration(&wait).map_err(|e| format!("--wait: {e}"))?;
            let session = session.session(&server.dir.identity_dir)?;
            let _lock = conference::lock_session(&server.dir.identity_dir)?;
            Ok(conference::join(connect(&server).await?, from, conf, wait, session).await?)
        }
        ConfCommand::Invite { user, dir } => control(&dir.identity_dir, R::Invite { user }).await,
        ConfCommand::Leave { dir } => control(&dir.identity_dir, R::Leave).await,
        ConfCommand::Remove { member, dir } => {
            control(&dir.identity_dir, R::Remove { member }).await
        }
        ConfCommand::Policy {
            policy,
            allow_downgrade,
            deadline,
            dir,
        } => {
            let change = conference::PolicyChange::from_words(
                policy.level,
                policy.mode.as_deref(),
                &policy.plain,
                allow_downgrade,
            )?;
            let deadline =
                vcsdk::util::parse_duration(&deadline).map_err(|e| format!("--deadline: {e}"))?;
            control(
                &dir.identity_dir,
                R::Policy {
                    change,
                    deadline_secs: deadline.as_secs(),
                },
            )
            .await
        }
        ConfCommand::Vote {
            proposal,
            choice,
            dir,
        } => {
            let approve = match choice.as_str() {
                "yes" | "y" => true,
                "no" | "n" => false,
                other => return Err(format!("vote yes or no, not {other:?}").into()),
            };
            control(&dir.identity_dir, R::Vote { proposal, approve }).await
        }
        ConfCommand::HandOver { to, dir } => control(&dir.identity_dir, R::HandOver { to }).await,
        ConfCommand::Status { dir } => control(&dir.identity_dir, R::Status).await,
    }
}

/// `vc receipts verify`: every record charged to us must match receipts we signed.
/// Steers the conference session of an identity directory through its control socket.
async fn control(dir: &std::path::Path, request: conference::ControlRequest) -> Result<(), Exit> {
    Ok(conference::control(dir, request).await?)
}

fn verify_receipts(file: &std::path::Path, identity_dir: &std::path::Path) -> Result<(), Exit> {
    use vcsdk::billing::RecordCheck;
    let store = IdentityStore::new(identity_dir);
    let identity = store.load().map_err(text)?;
    let check = vcsdk::pki::CertificateCheck::new(identity.root().clone()).map_err(text)?;
    let data = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let records: Vec<vcsdk::billing::CallRecord> = serde_json::from_slice(&data)
        .map_err(|e| format!("{}: not a receipts export: {e}", file.display()))?;
    let (mut verified, mut free, mut unverifiable, mut failed) = (0, 0, 0, 0);
    // Amounts read in major units, per currency (one server bills in one).
    let currency_of: std::collections::HashMap<&str, &str> = records
        .iter()
        .map(|r| (r.call_id.as_str(), r.currency.as_str()))
        .collect();
    let mut totals: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for outcome in vcsdk::billing::verify_records(&records, identity.id(), &check) {
        match outcome {
            RecordCheck::Verified { call_id, cost } => {
                verified += 1;
                let currency = currency_of.get(call_id.as_str()).copied().unwrap_or("");
                *totals.entry(currency.to_owned()).or_default() += cost;
                println!(
                    "ok        {call_id}: charged {}, signed by you",
                    Money::new(cost, currency)
                );
            }
            RecordCheck::NoCharge { .. } => free += 1,
            RecordCheck::Unverifiable { call_id, reason } => {
                unverifiable += 1;
                println!("UNPROVEN  {call_id}: {reason}");
            }
            RecordCheck::Failed { call_id, reason } => {
                failed += 1;
                println!("FAILED    {call_id}: {reason}");
            }
        }
    }
    let total = if totals.is_empty() {
        "nothing".to_owned()
    } else {
        totals
            .iter()
            .map(|(currency, minor)| Money::new(*minor, currency).to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    println!(
        "{verified} charges verified (total {total}), {free} without charge to you, {unverifiable} without an end receipt, {failed} failed"
    );
    if failed > 0 {
        Err(Exit::new(
            exit::CHECK_FAILED,
            format!("{failed} records do not match your signed receipts"),
        ))
    } else {
        Ok(())
    }
}

/// Connects to the server with the identity, checking the server against the pinned root and the
/// freshest CRL available (fetched from the CA, else the cached one).
async fn connect(
    args: &ServerArgs,
) -> Result<
    (
        vcsdk::client::Client,
        tokio::sync::mpsc::Receiver<vcsdk::client::ClientEvent>,
    ),
    Exit,
> {
    let store = IdentityStore::new(&args.dir.identity_dir);
    let identity = std::sync::Arc::new(store.load()?);
    let check = match store.refresh_crl().await {
        Ok(check) => check,
        Err(e) => {
            tracing::warn!(error = %e, "CRL not refreshed; using the cached one");
            store.certificate_check()?
        }
    };
    let mut options = vcsdk::client::ClientOptions::new(args.server.clone(), identity, check)
        .with_crl_source(vcsdk::client::CrlSource::Store(store));
    options.server_name = args.server_name.clone();
    Ok(vcsdk::client::Client::connect(options).await?)
}

fn describe(identity: &Identity) -> String {
    let info = identity.info();
    format!(
        "{} (serial {}, valid until {})",
        info.id,
        info.serial,
        vcsdk::util::rfc3339(info.not_after)
    )
}

fn rustls_now() -> rustls_pki_types::UnixTime {
    rustls_pki_types::UnixTime::now()
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One call record as a person reads it: who, how it ended, how long it lasted, what was charged.
fn describe_record(r: &vcsdk::billing::CallRecord, tariff: &vcsdk::billing::Tariff) -> String {
    let outcome = r
        .disposition
        .as_deref()
        .unwrap_or("still open")
        .replace('_', " ");
    let length = match r.answered_at_ms {
        Some(_) if r.billable_secs > 0 => format!(
            ", lasted {} s, charged as {} s",
            r.billable_secs,
            r.tariff
                .as_ref()
                .unwrap_or(tariff)
                .charged_seconds(r.billable_secs)
        ),
        _ => String::new(),
    };
    format!(
        "{} {} {} -> {}: {outcome}{length}, {}{}",
        vcsdk::util::rfc3339(r.requested_at_ms / 1000),
        r.call_id,
        r.caller,
        r.callee,
        Money::new(r.cost, &r.currency),
        if r.end_receipt_missing {
            " (end receipt missing)"
        } else {
            ""
        }
    )
}

/// The low-balance warning in the account's currency (asked of the server: the event carries
/// minor units only).
async fn low_balance(client: &vcsdk::client::Client, balance: i64, seconds_left: i64) -> String {
    let amount = match client.account_info().await {
        Ok(a) => Money::new(balance, &a.currency).to_string(),
        Err(_) => format!("{balance} minor units"),
    };
    format!("low balance: {amount} left, about {seconds_left} s of talk")
}
