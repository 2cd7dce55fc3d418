//! First use as a person meets it, through the real commands: money shown in major units with
//! the currency's decimals (while integers stay on the wire and in the database), operator
//! commands that refuse a data directory `vc-server init` did not make, and one serving process
//! per data directory.

use std::time::Duration;

use vcsdk::client::ClientEvent;
use vcsdk::proto::signal::{Answer, CallState};
use vcsdk_tests::{enroll, online, run, TestCa, TestServer};

const WAIT: Duration = Duration::from_secs(20);

fn server_args(server: &TestServer, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--server".into(),
        server.addr(),
        "--server-name".into(),
        "localhost".into(),
        "--identity-dir".into(),
        dir.to_str().unwrap().into(),
    ]
}

fn vc(args: &[&str], more: &[String]) -> (bool, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(more.iter().map(String::as_str));
    let out = run("vc", &all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_reads_in_major_units_everywhere_a_person_reads_it() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &[]);
    let home = tempfile::tempdir().unwrap();
    let alice_store = enroll(&ca, home.path(), "alice").await;
    let bob_store = enroll(&ca, home.path(), "bob").await;
    let (alice, mut alice_events) = online(&server, &ca, &alice_store).await;
    let (bob, mut bob_events) = online(&server, &ca, &bob_store).await;

    // Refused before any credit: the message names the amount as a person reads it.
    let refused = alice.call("bob").await.unwrap_err().to_string();
    assert!(
        refused.contains("needs 0.10 EUR") && refused.contains("you have 0.00 EUR available"),
        "{refused}"
    );

    // The operator types and reads major units.
    let out = server.cli(&["credit", "add", "--user", "alice", "--amount", "10"]);
    assert!(
        out.contains("credited 10.00 EUR to alice; balance 10.00 EUR"),
        "{out}"
    );
    let code = server
        .cli(&["voucher", "create", "--amount", "2.50"])
        .trim()
        .to_owned();

    // One short call: charged as the first increment (60 s at 0.10 EUR a minute).
    let call = alice.call("bob").await.unwrap();
    let incoming = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::IncomingCall { call_id, .. }) = bob_events.recv().await {
                break call_id;
            }
        }
    })
    .await
    .unwrap();
    bob.answer(&incoming, Answer::Accept).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::CallState {
                state: CallState::Accepted,
                ..
            }) = alice_events.recv().await
            {
                break;
            }
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice.terminate(&call, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The wire keeps integers of minor units.
    assert_eq!(alice.account_info().await.unwrap().balance, 990);
    alice.close().await.unwrap();
    bob.close().await.unwrap();

    let alice_dir = home.path().join("alice");
    let (ok, out) = vc(&["account"], &server_args(&server, &alice_dir));
    assert!(ok, "{out}");
    assert!(out.contains("balance:  9.90 EUR"), "{out}");
    assert!(
        out.contains("0.10 EUR per minute, no connect fee; charged for the first 60 s, then every 1 s; a part of a minor unit is rounded up"),
        "{out}"
    );
    let record = out
        .lines()
        .find(|l| l.contains("alice -> bob: answered, lasted "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(record.ends_with(" s, charged as 60 s, 0.10 EUR"), "{out}");
    assert!(!out.contains("minor units") && !out.contains("Up"), "{out}");

    let bob_dir = home.path().join("bob");
    let (ok, out) = vc(
        &["credit", "redeem", &code],
        &server_args(&server, &bob_dir),
    );
    assert!(ok && out.contains("redeemed; balance 2.50 EUR"), "{out}");

    // Operator tables: major units, with the currency named once.
    let table = server.cli(&["accounts"]);
    assert!(table.starts_with("amounts in EUR"), "{table}");
    let alice_row = table
        .lines()
        .find(|l| l.starts_with("alice "))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = alice_row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["alice", "prepaid", "9.90", "0.00", "10.00", "0.10", "yes"],
        "{table}"
    );
    // The CSV keeps the integer for machines and adds the amount for people.
    let csv = server.cli(&["cdr", "list", "--user", "alice"]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (column("cost"), column("currency"), column("cost_major")),
        ("10", "EUR", "0.10"),
        "{csv}"
    );

    // Postpaid limits are typed and shown in major units too.
    let out = server.cli(&[
        "account",
        "set",
        "--user",
        "bob",
        "--type",
        "postpaid",
        "--credit-limit",
        "50",
    ]);
    assert!(
        out.contains("bob: postpaid account, may go 50.00 EUR below zero"),
        "{out}"
    );
}

#[test]
fn operator_commands_refuse_a_directory_that_init_did_not_make() {
    let nowhere = tempfile::tempdir().unwrap();
    let wrong = nowhere.path().join("wrongdir");
    let wrong_str = wrong.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["voucher", "create", "--amount", "5"],
        &["credit", "add", "--user", "alice", "--amount", "5"],
        &["users"],
        &["accounts"],
        &["cdr", "list"],
        &["account", "set", "--user", "alice", "--type", "prepaid"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--data-dir", wrong_str]);
        let out = run("vc-server", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} succeeded");
        assert!(
            stderr.contains("is not a server data directory") && stderr.contains("vc-server init"),
            "{command:?}: {stderr}"
        );
        assert!(!wrong.exists(), "{command:?} created {}", wrong.display());
    }
    // An existing directory that holds something else is refused the same way and left as it is.
    let other = nowhere.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = run(
        "vc-server",
        &[
            "voucher",
            "create",
            "--amount",
            "5",
            "--data-dir",
            other.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
    let out = run(
        "vc-server",
        &[
            "serve",
            "--data-dir",
            other.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a server data directory"));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
}

#[test]
fn a_second_server_or_ca_on_the_same_directory_is_refused_and_told_who_holds_it() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &[]);
    let data = server.data_dir();
    let out = run(
        "vc-server",
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--media-listen",
            "off",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by vc-server serve (pid ") && stderr.contains("stop that first"),
        "{stderr}"
    );
    // Operator commands still run beside the serving server.
    assert!(server.cli(&["users"]).starts_with("ID"));

    let ca_data = ca.data_dir();
    let out = run(
        "vc-ca",
        &[
            "serve",
            "--data-dir",
            ca_data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by vc-ca serve (pid "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_common_mistakes_get_errors_that_say_what_to_do() {
    let ca = TestCa::start(&[]);
    let server = TestServer::start(&ca, &[]);
    let home = tempfile::tempdir().unwrap();
    enroll(&ca, home.path(), "alice").await;
    let alice = home.path().join("alice");
    let alice = alice.to_str().unwrap();
    let ca_addr = ca.url().trim_start_matches("https://").to_owned();

    // The CA's address where vc-server's belongs.
    let (ok, out) = vc(
        &[
            "users",
            "--server",
            &ca_addr,
            "--server-name",
            "localhost",
            "--identity-dir",
            alice,
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("answered in HTTP: is this the CA's address?")
            && !out.contains("exceeds the limit"),
        "{out}"
    );
    // No port at all.
    let (ok, out) = vc(
        &["users", "--server", "127.0.0.1", "--identity-dir", alice],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("has no port: write HOST:PORT"), "{out}");
    // vc-server's address where the CA's belongs.
    let root = ca.root_path();
    let (ok, out) = vc(
        &[
            "enroll",
            "--ca-url",
            &format!("https://{}", server.addr()),
            "--ca-root",
            root.to_str().unwrap(),
            "--token",
            &ca.client_token("bob"),
            "--id",
            "bob",
            "--identity-dir",
            home.path().join("bob").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("is this vc-server's address?"), "{out}");

    // A CA whose root would be born expired (or outlived by what it signs) is refused, and
    // nothing is written.
    let nowhere = tempfile::tempdir().unwrap();
    for (args, why) in [
        (vec!["--validity-days", "0"], "at least 1 day"),
        (
            vec!["--validity-days", "1", "--cert-validity", "2d"],
            "shorter than the root",
        ),
    ] {
        let dir = nowhere.path().join("ca");
        let mut all = vec!["init", "--data-dir", dir.to_str().unwrap()];
        all.extend(args);
        let out = run("vc-ca", &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(!dir.join("root.pem").exists());
    }
}

#[test]
fn operators_list_and_revoke_tokens_and_list_vouchers() {
    let ca = TestCa::start(&[]);
    // A duration without a unit is refused (was it seconds or days?).
    let out = run(
        "vc-ca",
        &[
            "token",
            "create",
            "--client",
            "zoe",
            "--ttl",
            "5",
            "--data-dir",
            ca.data_dir().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a unit: 5s, 5m, 5h or 5d"));

    let kept = ca.client_token("zoe");
    let dropped = ca.client_token("yann");
    let list = ca.cli(&["token", "list"]);
    let mut lines = list.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{list}");
    assert!(
        !list.contains(&kept) && !list.contains(&dropped),
        "tokens are never shown"
    );
    let yann = list.lines().find(|l| l.contains(" yann ")).unwrap();
    assert!(yann.ends_with("usable"), "{list}");
    let id = yann.split_whitespace().next().unwrap();
    assert_eq!(
        ca.cli(&["token", "revoke", "--id", &id[..8]]).trim(),
        "revoked 1 token"
    );
    let list = ca.cli(&["token", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(" yann ") && l.ends_with("revoked")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(" zoe ") && l.ends_with("usable")),
        "{list}"
    );
    // The revoked token is refused with its own code; the other still works.
    let home = tempfile::tempdir().unwrap();
    let root = ca.root_path();
    let enroll_with = |id: &str, token: &str| {
        run(
            "vc",
            &[
                "enroll",
                "--ca-url",
                &ca.url(),
                "--ca-root",
                root.to_str().unwrap(),
                "--token",
                token,
                "--id",
                id,
                "--identity-dir",
                home.path().join(id).to_str().unwrap(),
            ],
        )
    };
    let out = enroll_with("yann", &dropped);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_revoked"));
    assert!(enroll_with("zoe", &kept).status.success());
    let list = ca.cli(&["token", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(" zoe ") && l.contains("used for ")),
        "{list}"
    );
    // Nothing left to revoke says so.
    let out = run(
        "vc-ca",
        &[
            "token",
            "revoke",
            "--client",
            "zoe",
            "--data-dir",
            ca.data_dir().to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    // The audit table has a header and names what happened.
    let audit = ca.cli(&["audit"]);
    assert!(audit.lines().next().unwrap().contains("EVENT"), "{audit}");
    assert!(audit.contains("tokens_revoked"), "{audit}");

    // Vouchers: listed by id and amount, never by code; redeemed ones say by whom.
    let server = TestServer::start(&ca, &[]);
    let code = server
        .cli(&["voucher", "create", "--amount", "7.50"])
        .trim()
        .to_owned();
    let list = server.cli(&["voucher", "list"]);
    assert!(list.starts_with("amounts in EUR"), "{list}");
    assert!(!list.contains(&code), "voucher codes are never shown");
    let row = list.lines().nth(2).unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains(" 7.50 ") && row.ends_with("no"), "{list}");
    // server.toml explains itself.
    let settings = std::fs::read_to_string(server.data_dir().join("server.toml")).unwrap();
    assert!(
        settings
            .contains("# Seconds a call rings before it ends as \"no answer\".\nring_timeout_secs"),
        "{settings}"
    );
}
