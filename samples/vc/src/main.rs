//! `vc`: a command-line client on the vcsdk SDK.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vcsdk::identity::{Identity, IdentityStore};
use vcsdk::pki::CsrSubject;
use vcsdk::proto::ca::RevocationReason;
use vcsdk::ClientId;

/// A command-line client for vcsdk: enroll an identity with the CA, renew it, revoke it, show it.
#[derive(Parser)]
#[command(name = "vc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct IdentityDir {
    /// Directory holding the identity (cert.pem, key.pem, root.pem, identity.toml).
    #[arg(long, value_name = "DIR")]
    identity_dir: PathBuf,
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
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Enroll {
            ca_url,
            ca_root,
            token,
            id,
            dir,
        } => {
            let id = ClientId::new(&id).map_err(text)?;
            let root = std::fs::read(&ca_root)
                .map_err(|e| format!("reading {}: {e}", ca_root.display()))?;
            let store = IdentityStore::new(&dir.identity_dir);
            let identity = store
                .enroll(&ca_url, &root, &token, CsrSubject::Client(id))
                .await
                .map_err(text)?;
            println!("enrolled {}", describe(&identity));
            Ok(())
        }
        Command::Renew { dir, if_due } => {
            let store = IdentityStore::new(&dir.identity_dir);
            if if_due {
                match store.renew_if_due().await.map_err(text)? {
                    Some(identity) => println!("renewed {}", describe(&identity)),
                    None => {
                        let identity = store.load().map_err(text)?;
                        println!(
                            "not due: renewal at {}",
                            rfc3339(identity.info().renewal_due_at())
                        );
                    }
                }
            } else {
                let identity = store.renew().await.map_err(text)?;
                println!("renewed {}", describe(&identity));
            }
            Ok(())
        }
        Command::Revoke { dir, reason } => {
            let store = IdentityStore::new(&dir.identity_dir);
            let done = store.revoke(reason).await.map_err(text)?;
            println!(
                "revoked serial {} ({}) at {}",
                done.serial,
                done.reason,
                rfc3339(done.revoked_at)
            );
            Ok(())
        }
        Command::Whoami { dir, check, json } => {
            let store = IdentityStore::new(&dir.identity_dir);
            let identity = store.load().map_err(text)?;
            let status = if check {
                let checker = store.refresh_crl().await.map_err(text)?;
                match checker.verify(
                    std::slice::from_ref(identity.certificate()),
                    vcsdk::pki::Usage::Client,
                    Some(identity.id()),
                    rustls_now(),
                ) {
                    Ok(_) => "valid (checked against the CA's current CRL)".to_owned(),
                    Err(e) => format!("refused: {e}"),
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
                println!("valid from:  {}", rfc3339(info.not_before));
                println!("valid until: {}", rfc3339(info.not_after));
                println!("renew at:    {}", rfc3339(info.renewal_due_at()));
                println!("status:      {status}");
            }
            Ok(())
        }
    }
}

fn describe(identity: &Identity) -> String {
    let info = identity.info();
    format!(
        "{} (serial {}, valid until {})",
        info.id,
        info.serial,
        rfc3339(info.not_after)
    )
}

fn rustls_now() -> rustls_pki_types::UnixTime {
    rustls_pki_types::UnixTime::now()
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}
