//! `vc-server`: the command line of the vcsdk conferencing server.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vcsdk::billing::{parse_major, Money};
use vcserver::config::ServerConfig;
use vcserver::store::Store;

/// The vcsdk conferencing server: admits clients by certificate (mutual TLS 1.3), keeps the
/// registered and active user lists, and routes calls between clients.
#[derive(Parser)]
#[command(name = "vc-server", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct DataDir {
    /// The server's data directory (server.toml, root.pem, identity/, server.db).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Pin the CA root and write the default settings (server.toml) into DIR.
    Init {
        #[command(flatten)]
        dir: DataDir,
        /// The CA root certificate (PEM) every client and this server trust.
        #[arg(long)]
        ca_root: PathBuf,
    },
    /// Obtain the server's certificate from the CA with a one-time token.
    Enroll {
        #[command(flatten)]
        dir: DataDir,
        /// The CA's URL, e.g. https://127.0.0.1:8443.
        #[arg(long)]
        ca_url: String,
        /// A server token from `vc-ca token create --server HOSTNAMES`.
        #[arg(long)]
        token: String,
        /// Host names and addresses the certificate names (repeat or comma-separate).
        #[arg(long = "hostname", value_delimiter = ',', required = true)]
        hostnames: Vec<String>,
    },
    /// Serve clients; logs "listening on HOST:PORT" once bound. SIGTERM ends calls and exits
    /// cleanly; SIGHUP refreshes the CRL now.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// Address to listen on (port 0 picks a free port); `listen` in server.toml by default.
        #[arg(long)]
        listen: Option<String>,
        /// UDP address of the media relay: "same" (the signalling address, UDP), an address
        /// (port 0 picks a free port), or "off" (no relay); `media_listen` in server.toml by
        /// default, which is "same". Logs "media relay on HOST:PORT" once bound.
        #[arg(long)]
        media_listen: Option<String>,
    },
    /// List registered users.
    Users {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Add credit to a user's account.
    Credit {
        #[command(subcommand)]
        command: CreditCommand,
    },
    /// One-time vouchers that clients redeem for credit (`vc credit redeem CODE`).
    Voucher {
        #[command(subcommand)]
        command: VoucherCommand,
    },
    /// Call detail records.
    Cdr {
        #[command(subcommand)]
        command: CdrCommand,
    },
    /// Every account: balance, credits, charges, and whether balance = credits − charges.
    Accounts {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Change one account.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Make an account prepaid, or postpaid with a credit limit (minor units it may go below zero).
    Set {
        #[command(flatten)]
        dir: DataDir,
        /// The user.
        #[arg(long)]
        user: String,
        /// `prepaid` or `postpaid`.
        #[arg(long = "type")]
        account_type: String,
        /// For postpaid accounts: how far below zero the balance may go, in the currency's major
        /// units (e.g. 50.00).
        #[arg(long, default_value = "0", allow_negative_numbers = true)]
        credit_limit: String,
    },
}

#[derive(Subcommand)]
enum CreditCommand {
    /// Add an amount to a registered user's balance.
    Add {
        #[command(flatten)]
        dir: DataDir,
        /// The user.
        #[arg(long)]
        user: String,
        /// In the tariff's currency, major units with its decimals (e.g. 10.00 for ten euros;
        /// 0.01 to 10,000,000,000.00).
        #[arg(long, allow_negative_numbers = true)]
        amount: String,
    },
}

#[derive(Subcommand)]
enum VoucherCommand {
    /// List the vouchers (ids, never the codes), newest first, with who redeemed each.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Print a new one-time voucher code worth an amount.
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// In the tariff's currency, major units with its decimals (e.g. 5.00).
        #[arg(long, allow_negative_numbers = true)]
        amount: String,
    },
}

#[derive(Subcommand)]
enum CdrCommand {
    /// Export call detail records, oldest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only the calls of this user.
        #[arg(long)]
        user: Option<String>,
        /// `csv` or `json`.
        #[arg(long, default_value = "csv")]
        format: CdrFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CdrFormat {
    Csv,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vc-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vc-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Init { dir, ca_root } => {
            vcserver::init(&dir.data_dir, &ca_root)?;
            println!(
                "server initialised in {}; settings in {}",
                dir.data_dir.display(),
                dir.data_dir.join(vcserver::config::CONFIG_FILE).display()
            );
            Ok(())
        }
        Command::Enroll {
            dir,
            ca_url,
            token,
            hostnames,
        } => {
            println!(
                "{}",
                vcserver::enroll(&dir.data_dir, &ca_url, &token, hostnames).await?
            );
            Ok(())
        }
        Command::Serve {
            dir,
            listen,
            media_listen,
        } => {
            let _lock = vcserver::lock_data_dir(&dir.data_dir)?;
            let config = ServerConfig::load(&dir.data_dir)?;
            let listen = listen.unwrap_or(config.listen);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("binding {listen}: {e}"))?;
            let media_listen = media_listen.unwrap_or(config.media_listen);
            let same = listener
                .local_addr()
                .map_err(|e| format!("the signalling address: {e}"))?
                .to_string();
            let media = match media_listen.as_str() {
                "" | "off" => None,
                configured => {
                    let addr = if configured == vcserver::config::MEDIA_LISTEN_SAME {
                        same.as_str()
                    } else {
                        configured
                    };
                    let socket = tokio::net::UdpSocket::bind(addr)
                        .await
                        .map_err(|e| format!("binding the media relay on {addr}: {e}"))?;
                    println!(
                        "media relay on {}",
                        socket.local_addr().map_err(|e| e.to_string())?
                    );
                    Some(socket)
                }
            };
            let (refresh_tx, refresh_rx) = tokio::sync::mpsc::channel(1);
            spawn_hangup_listener(refresh_tx);
            // "listening on" is printed whatever the log level, on standard output, once the
            // server is ready to admit clients.
            vcserver::serve(
                dir.data_dir.clone(),
                listener,
                media,
                vcsdk::util::shutdown_signal(),
                refresh_rx,
                |addr| println!("listening on {addr}"),
            )
            .await
        }
        Command::Users { dir } => {
            let (store, _) = open_store(&dir.data_dir)?;
            println!("{:<32} {:<10} {:<22} STATUS", "ID", "TERMS", "REGISTERED");
            for u in store.users()? {
                let status = if u.unregistered_at.is_some() {
                    "unregistered"
                } else {
                    "registered"
                };
                println!(
                    "{:<32} {:<10} {:<22} {status}",
                    u.id,
                    u.terms_version,
                    vcsdk::util::rfc3339(u.registered_at)
                );
            }
            Ok(())
        }
        Command::Credit {
            command: CreditCommand::Add { dir, user, amount },
        } => {
            let (store, currency) = open_store(&dir.data_dir)?;
            let amount = positive(parse_major(&amount, &currency), "--amount")?;
            let balance = store
                .credit(&user, amount, "operator")
                .await
                .map_err(|e| e.message)?;
            println!(
                "credited {} to {user}; balance {}",
                Money::new(amount, &currency),
                Money::new(balance, &currency)
            );
            Ok(())
        }
        Command::Voucher {
            command: VoucherCommand::Create { dir, amount },
        } => {
            let (store, currency) = open_store(&dir.data_dir)?;
            let amount = positive(parse_major(&amount, &currency), "--amount")?;
            println!(
                "{}",
                store.create_voucher(amount).await.map_err(|e| e.message)?
            );
            Ok(())
        }
        Command::Voucher {
            command: VoucherCommand::List { dir },
        } => {
            let (store, currency) = open_store(&dir.data_dir)?;
            println!("amounts in {currency}");
            println!(
                "{:<12}  {:>17}  {:<20}  REDEEMED",
                "ID", "AMOUNT", "CREATED (UTC)"
            );
            for v in store.vouchers()? {
                let redeemed = match (&v.redeemed_by, v.redeemed_at) {
                    (Some(by), Some(at)) => format!("by {by} at {}", vcsdk::util::rfc3339(at)),
                    _ => "no".to_owned(),
                };
                println!(
                    "{:<12}  {:>17}  {:<20}  {redeemed}",
                    v.id,
                    Money::new(v.amount, &currency).major(),
                    vcsdk::util::rfc3339(v.created_at)
                );
            }
            Ok(())
        }
        Command::Cdr {
            command: CdrCommand::List { dir, user, format },
        } => {
            let (store, _) = open_store(&dir.data_dir)?;
            vcserver::cdr::export(
                &store,
                user.as_deref(),
                matches!(format, CdrFormat::Json),
                std::io::stdout().lock(),
            )
        }
        Command::Account {
            command:
                AccountCommand::Set {
                    dir,
                    user,
                    account_type,
                    credit_limit,
                },
        } => {
            let (store, currency) = open_store(&dir.data_dir)?;
            let credit_limit = parse_major(&credit_limit, &currency)
                .map_err(|e| format!("--credit-limit: {e}"))?;
            if credit_limit < 0 {
                return Err("--credit-limit: say how far below zero, as a positive amount".into());
            }
            store
                .set_account(&user, &account_type, credit_limit)
                .await
                .map_err(|e| e.message)?;
            if account_type == "postpaid" {
                println!(
                    "{user}: postpaid account, may go {} below zero",
                    Money::new(credit_limit, &currency)
                );
            } else {
                println!("{user}: {account_type} account");
            }
            Ok(())
        }
        Command::Accounts { dir } => {
            let (store, currency) = open_store(&dir.data_dir)?;
            let money = |minor| Money::new(minor, &currency).major();
            println!("amounts in {currency}");
            println!(
                "{:<24} {:<9} {:>17} {:>17} {:>17} {:>17} CONSISTENT",
                "USER", "TYPE", "BALANCE", "LIMIT", "CREDITS", "CHARGES"
            );
            for l in store.ledgers()? {
                println!(
                    "{:<24} {:<9} {:>17} {:>17} {:>17} {:>17} {}",
                    l.user,
                    l.account_type,
                    money(l.balance),
                    money(l.credit_limit),
                    money(l.credits),
                    money(l.debits),
                    if l.consistent { "yes" } else { "NO" }
                );
            }
            Ok(())
        }
    }
}

/// An amount the operator gave, which must be more than zero.
fn positive(amount: Result<i64, String>, flag: &str) -> Result<i64, String> {
    match amount {
        Ok(a) if a > 0 => Ok(a),
        Ok(_) => Err(format!("{flag}: must be more than zero")),
        Err(e) => Err(format!("{flag}: {e}")),
    }
}

/// Opens the database of an initialised data directory, with the currency its amounts are in.
fn open_store(dir: &std::path::Path) -> Result<(Store, String), String> {
    vcserver::require_initialised(dir)?;
    let config = ServerConfig::load(dir)?;
    Ok((Store::open(dir)?, config.billing.tariff.currency))
}

fn spawn_hangup_listener(tx: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = tx.try_send(());
        }
    });
}
