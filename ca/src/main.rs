//! `vc-ca`: the command line of the vcsdk certification authority.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vcca::config::CaConfig;
use vcca::grant::Grant;
use vcca::service::Actor;
use vcca::CertificationAuthority;
use vcsdk::proto::ca::RevocationReason;
use vcsdk::ClientId;

/// The vcsdk certification authority: issues certificates to clients and servers from a CSR and a
/// one-time token, renews them over mutual TLS, revokes them and publishes a signed CRL.
#[derive(Parser)]
#[command(name = "vc-ca", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct DataDir {
    /// The CA's data directory (root.pem, ca-key.pem, ca.toml, ca.db).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new self-signed CA (ECDSA P-256) in DIR; refuses to overwrite an existing one.
    Init {
        #[command(flatten)]
        dir: DataDir,
        /// The CA's name (the root's common name).
        #[arg(long, default_value = "vcsdk Conferencing CA")]
        name: String,
        /// Lifetime of the root certificate, in days.
        #[arg(long, default_value_t = 3650)]
        validity_days: u32,
        /// Lifetime of issued certificates (e.g. 7d, 12h).
        #[arg(long, default_value = "7d")]
        cert_validity: String,
        /// How long each CRL is valid (nextUpdate); it is re-signed at half that.
        #[arg(long, default_value = "24h")]
        crl_validity: String,
        /// Default lifetime of enrollment tokens.
        #[arg(long, default_value = "24h")]
        token_ttl: String,
        /// Host names and addresses for the CA's own HTTPS certificate (repeat or comma-separate).
        #[arg(long = "hostname", value_delimiter = ',', default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hostnames: Vec<String>,
        /// Public base URL (https://host:port); issued certificates then name its CRL.
        #[arg(long)]
        public_url: Option<String>,
        /// How old a certificate obtained by renewal must be before it renews again (e.g. 3d);
        /// half of --cert-validity when absent.
        #[arg(long)]
        renew_min_interval: Option<String>,
    },
    /// Serve the HTTPS+JSON API; logs "listening on HOST:PORT" once bound.
    ///
    /// Connection and time limits come from the [limits] table of DIR/ca.toml (defaults shown):
    /// max_connections = 1024, max_connections_per_address = 64 (IPv6: per /64; the last quarter
    /// of max_connections is kept for addresses holding few connections), handshake_timeout =
    /// "10s", header_timeout = "10s", body_timeout = "10s", handler_timeout = "20s" (waiting for
    /// the database; then 503 busy), write_timeout = "10s" (the whole response), idle_timeout =
    /// "15s" (between kept-alive requests). A connection over a cap is closed at once; one whose
    /// stage outlives its limit is closed.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Revoke a certificate by serial; publishes a new CRL.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        /// The certificate's serial (hex, as `vc-ca list` shows it).
        #[arg(long)]
        serial: String,
        /// unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
    },
    /// Write the current CRL (PEM, or DER with --der).
    Crl {
        #[command(flatten)]
        dir: DataDir,
        /// Output file; `-` for standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// Write DER instead of PEM.
        #[arg(long)]
        der: bool,
    },
    /// List issued certificates: id, usage, serial, not-after, status.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// `table` or `json`.
        #[arg(long, default_value = "table")]
        format: Format,
    },
    /// Show the audit log of issuances, renewals, revocations and refusals.
    Audit {
        #[command(flatten)]
        dir: DataDir,
        /// `table` or `json`.
        #[arg(long, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a one-time enrollment token bound to a client id or to server host names.
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// The client id the token may enroll.
        #[arg(long, conflicts_with = "server", required_unless_present = "server")]
        client: Option<String>,
        /// The server host names the token may enroll (comma-separated).
        #[arg(long, value_delimiter = ',')]
        server: Option<Vec<String>>,
        /// How long the token stays usable (e.g. 24h, 30m; a unit is required); the CA's default
        /// when absent.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List the tokens (their ids, never the tokens themselves), newest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// `table` or `json`.
        #[arg(long, default_value = "table")]
        format: Format,
    },
    /// Revoke unused tokens: one by its id from `token list` (a prefix will do), or every one of
    /// a client id.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        /// The token's id (or a unique prefix) from `token list`.
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        id: Option<String>,
        /// Every unused token of this client id.
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vc-ca: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Init {
            dir,
            name,
            validity_days,
            cert_validity,
            crl_validity,
            token_ttl,
            hostnames,
            public_url,
            renew_min_interval,
        } => {
            let config = CaConfig {
                name,
                cert_validity,
                crl_validity,
                token_ttl,
                tls_hostnames: hostnames,
                public_url,
                renew_min_interval,
                limits: Default::default(),
            };
            let validity = Duration::from_secs(u64::from(validity_days) * 86_400);
            CertificationAuthority::init(&dir.data_dir, &config, validity).map_err(text)?;
            println!(
                "CA initialised in {}; pin {}",
                dir.data_dir.display(),
                dir.data_dir.join("root.pem").display()
            );
            Ok(())
        }
        Command::Serve { dir, listen } => serve(&dir.data_dir, &listen),
        Command::Token {
            command:
                TokenCommand::Create {
                    dir,
                    client,
                    server,
                    ttl,
                },
        } => {
            let grant = match (client, server) {
                (Some(id), _) => Grant::Client(ClientId::new(&id).map_err(text)?),
                (None, Some(names)) => {
                    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
                    if names.is_empty() {
                        return Err("--server needs at least one host name".into());
                    }
                    for name in &names {
                        vcsdk::id::validate_host_name(name)?;
                    }
                    Grant::Server(names)
                }
                (None, None) => return Err("give --client ID or --server HOSTNAME".into()),
            };
            let ttl = ttl
                .map(|t| vcsdk::util::parse_duration(&t).map_err(|e| format!("--ttl: {e}")))
                .transpose()?;
            let ca = open(&dir.data_dir)?;
            println!("{}", ca.create_token(&grant, ttl).map_err(text)?);
            Ok(())
        }
        Command::Token {
            command: TokenCommand::List { dir, format },
        } => {
            let ca = open(&dir.data_dir)?;
            let tokens = ca.tokens().map_err(text)?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&tokens).map_err(text)?)
                }
                Format::Table => {
                    let now = vcsdk::util::unix_now();
                    println!(
                        "{:<12}  {:<6}  {:<24}  {:<20}  {:<20}  STATUS",
                        "ID", "USAGE", "SUBJECT", "CREATED", "EXPIRES"
                    );
                    for t in tokens {
                        let status = match (&t.used_serial, t.status(now)) {
                            (Some(serial), "used") => format!("used for {serial}"),
                            (_, s) => s.to_owned(),
                        };
                        println!(
                            "{:<12}  {:<6}  {:<24}  {:<20}  {:<20}  {status}",
                            t.id,
                            t.usage,
                            t.subject,
                            vcsdk::util::rfc3339(t.created_at),
                            vcsdk::util::rfc3339(t.expires_at),
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { dir, id, client },
        } => {
            if id
                .as_deref()
                .is_some_and(|i| i.len() < 4 || !i.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(
                    "--id takes at least 4 hex digits of an id from `vc-ca token list`".into(),
                );
            }
            let ca = open(&dir.data_dir)?;
            let n = ca
                .revoke_tokens(id.as_deref(), client.as_deref())
                .map_err(text)?;
            if n == 0 {
                return Err("no unused token matches; see `vc-ca token list`".into());
            }
            println!("revoked {n} token{}", if n == 1 { "" } else { "s" });
            Ok(())
        }
        Command::Revoke {
            dir,
            serial,
            reason,
        } => {
            let ca = open(&dir.data_dir)?;
            let done = ca
                .revoke_serial(&serial, reason, Actor::Operator)
                .map_err(text)?;
            println!(
                "revoked {} ({}); CRL number {} published",
                done.serial, done.reason, done.crl.number
            );
            Ok(())
        }
        Command::Crl { dir, out, der } => {
            let ca = open(&dir.data_dir)?;
            let crl = ca.current_crl().map_err(text)?;
            let data = if der {
                crl.der
            } else {
                vcsdk::pki::pem::encode("X509 CRL", &crl.der).into_bytes()
            };
            if out.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&data)
                    .map_err(|e| e.to_string())
            } else {
                vcsdk::util::write_atomic(&out, &data, 0o644)
                    .map_err(|e| format!("writing {}: {e}", out.display()))
            }
        }
        Command::List { dir, format } => {
            let ca = open(&dir.data_dir)?;
            let records = ca.list().map_err(text)?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&records).map_err(text)?)
                }
                Format::Table => {
                    println!(
                        "{:<32} {:<7} {:<32} {:<20} STATUS",
                        "ID", "USAGE", "SERIAL", "NOT AFTER"
                    );
                    for r in records {
                        let status = match (&r.revocation_reason, r.status.as_str()) {
                            (Some(reason), "revoked") => format!("revoked ({reason})"),
                            _ if r.not_after <= vcsdk::util::unix_now() => "expired".into(),
                            (_, s) => s.to_owned(),
                        };
                        println!(
                            "{:<32} {:<7} {:<32} {:<20} {status}",
                            r.subject,
                            r.usage,
                            r.serial,
                            vcsdk::util::rfc3339(r.not_after)
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Audit { dir, format } => {
            let ca = open(&dir.data_dir)?;
            let entries = ca.audit_log().map_err(text)?;
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&entries).map_err(text)?)
                }
                Format::Table => {
                    println!(
                        "{:>5}  {:<20}  {:<16}  {:<24}  {:<24}  {:<32}  DETAIL",
                        "SEQ", "AT (UTC)", "EVENT", "ACTOR", "SUBJECT", "SERIAL"
                    );
                    for e in entries {
                        let repeated = match e.last_at {
                            Some(last) if e.count > 1 => {
                                format!(" (x{}, last {})", e.count, vcsdk::util::rfc3339(last))
                            }
                            _ => String::new(),
                        };
                        println!(
                            "{:>5}  {:<20}  {:<16}  {:<24}  {:<24}  {:<32}  {}{repeated}",
                            e.seq,
                            vcsdk::util::rfc3339(e.at),
                            e.event,
                            e.actor,
                            e.subject.unwrap_or_default(),
                            e.serial.unwrap_or_default(),
                            e.detail.unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

fn serve(dir: &Path, listen: &str) -> Result<(), String> {
    let ca = Arc::new(open(dir)?);
    // One serving CA per data directory: two would issue from one serial counter and CRL.
    let _lock = vcsdk::dir_lock::DirLock::acquire(dir, "serve.lock", "vc-ca serve")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("binding {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Printed whatever the log level, on standard output, for scripts and tests.
        println!("listening on {addr}");
        vcca::api::serve(ca, listener, vcsdk::util::shutdown_signal())
            .await
            .map_err(text)
    })
}

fn open(dir: &Path) -> Result<CertificationAuthority, String> {
    if !dir.join("root.pem").exists() {
        return Err(format!(
            "{} holds no CA; run `vc-ca init --data-dir {}` first",
            dir.display(),
            dir.display()
        ));
    }
    CertificationAuthority::open(dir).map_err(text)
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}
