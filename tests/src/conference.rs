//! Shared setup of the conference tests: a CA and a server, users, invitations, epochs, frames.

use std::time::Duration;

use vcsdk::client::{ClientEvent, Conference, ConferenceEvent, ConferenceOptions};
use vcsdk::conference::Policy;
use vcsdk::media::Stream;

use crate::{enroll, online, Connected, TestCa, TestServer};

/// How long a test waits for what should happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// A CA, a server (free calls unless settings say otherwise) and a home for identities.
pub struct World {
    /// The running `vc-ca`.
    pub ca: TestCa,
    /// The running `vc-server`.
    pub server: TestServer,
    /// Where the users' identities live.
    pub home: tempfile::TempDir,
}

impl World {
    /// Starts both with `settings` for server.toml (after a free tariff).
    pub fn new(settings: &[&str]) -> World {
        let ca = TestCa::start(&[]);
        let mut all = vec!["rate_per_minute = 0", "connect_fee = 0"];
        all.extend_from_slice(settings);
        let server = TestServer::start(&ca, &all);
        World {
            ca,
            server,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Enrolls `id` and brings it online, registered.
    pub async fn user(&self, id: &str) -> Connected {
        online(
            &self.server,
            &self.ca,
            &enroll(&self.ca, self.home.path(), id).await,
        )
        .await
    }
}

/// The next invitation event (other events are skipped).
pub async fn invitation(events: &mut tokio::sync::mpsc::Receiver<ClientEvent>) -> (String, String) {
    let wait = async {
        loop {
            match events.recv().await {
                Some(ClientEvent::ConferenceInvitation { conf, from, .. }) => return (conf, from),
                Some(_) => {}
                None => panic!("event stream closed"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("an invitation within the bound")
}

/// The next conference event matching `pick`.
pub async fn until<T>(conf: &Conference, mut pick: impl FnMut(&ConferenceEvent) -> Option<T>) -> T {
    let wait = async {
        loop {
            let e = conf.next_event().await.expect("conference events");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("the conference event within the bound")
}

/// Invites `who` into `conf` and has it join.
pub async fn bring_in(conf: &Conference, who: &mut Connected, name: &str) -> Conference {
    conf.invite(name).await.expect("invite");
    let (id, from) = invitation(&mut who.1).await;
    assert_eq!((id.as_str(), from.as_str()), (conf.id(), conf.me()));
    who.0
        .join_conference(&id, ConferenceOptions::default())
        .await
        .expect("join")
}

/// Waits until every member is at epoch `epoch` or later.
pub async fn all_at(members: &[&Conference], epoch: u32) {
    for m in members {
        m.wait_for_epoch(epoch, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{} at epoch {epoch}: {e}", m.me()));
    }
}

/// alice creates a conference with `policy`; bob and carol join; all three reach epoch 3. The
/// clients stay with the caller (their connections carry the conference).
pub async fn trio(w: &World, policy: Policy) -> ([Connected; 3], [Conference; 3]) {
    let alice = w.user("alice").await;
    let mut bob = w.user("bob").await;
    let mut carol = w.user("carol").await;
    let a = alice
        .0
        .create_conference(ConferenceOptions {
            policy,
            ..Default::default()
        })
        .await
        .unwrap();
    let b = bring_in(&a, &mut bob, "bob").await;
    let c = bring_in(&a, &mut carol, "carol").await;
    all_at(&[&a, &b, &c], 3).await;
    ([alice, bob, carol], [a, b, c])
}

/// Sends `data` from `from` until `to` has it (the first frames of a new path may be lost while
/// the path is chosen).
pub async fn deliver(from: &Conference, to: &Conference, data: &[u8]) {
    let wait = async {
        loop {
            from.send(Stream::Audio, data).await.expect("send");
            let got = tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    match to.recv().await {
                        Some(f) if &*f.member == from.me() && f.data == data => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            })
            .await;
            if got == Ok(true) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{}'s frame never reached {}", from.me(), to.me()));
}
