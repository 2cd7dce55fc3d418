//! `vc call` and `vc listen`: placing and answering calls, printing each outcome; with
//! `--send FILE` / `--save DIR`, streaming a file over the call's end-to-end encrypted media.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent};
use vcsdk::media::MediaConfig;
use vcsdk::proto::signal::{Answer, CallState};

use crate::exit::{self, Exit};
use crate::transfer::{self, SendOptions};

/// What a call sends over its media.
pub struct Sending {
    /// The file.
    pub file: PathBuf,
    /// Framing and pacing.
    pub options: SendOptions,
    /// The media session's settings.
    pub config: MediaConfig,
}

/// Starts the media of `call_id`, sends the file, prints the outcome and the statistics.
async fn stream_file(client: Client, call_id: String, sending: Sending) -> Result<(), String> {
    let session = client
        .media(&call_id, sending.config)
        .await
        .map_err(|e| format!("media: {e}"))?;
    println!(
        "media up: {}",
        session.path().map_or("closed".into(), |p| p.to_string())
    );
    let result = transfer::send_file(&session, &sending.file, &sending.options).await;
    println!("{}", transfer::describe(&session.stats()));
    result.map(|line| println!("{line}"))
}

/// How `vc listen` answers.
#[derive(Clone, Copy)]
pub enum AnswerPolicy {
    /// Accept every call.
    Accept,
    /// Decline every call.
    Decline,
    /// Ask on the terminal.
    Ask,
}

fn outcome(state: CallState, reason: Option<&str>) -> String {
    let name = match state {
        CallState::Ringing => "ringing",
        CallState::Accepted => "accepted",
        CallState::Declined => "declined",
        CallState::Busy => "busy",
        CallState::NoAnswer => "no answer",
        CallState::Ended => "ended",
        CallState::AnsweredElsewhere => "answered on another device",
    };
    match reason {
        Some(r) if state.is_final() => format!("{name} ({r})"),
        _ => name.to_owned(),
    }
}

/// The exit a call's final state gives: answered calls succeed, the others say why not.
fn exit_for(state: CallState, reason: Option<&str>, answered: bool) -> Result<(), Exit> {
    let code = match state {
        CallState::Declined => exit::DECLINED,
        CallState::Busy => exit::BUSY,
        CallState::NoAnswer => exit::NO_ANSWER,
        _ if answered => return Ok(()),
        _ => exit::ERROR,
    };
    Err(Exit::new(
        code,
        format!("the call was not answered: {}", outcome(state, reason)),
    ))
}

/// Calls `user` and follows the call to its end. SIGINT and SIGTERM hang up (or cancel while it
/// rings) and wait for the end to be recorded.
pub async fn call(
    (client, mut events): (Client, Receiver<ClientEvent>),
    user: &str,
    duration: Option<Duration>,
    mut sending: Option<Sending>,
) -> Result<(), Exit> {
    let call_id = client.call(user).await?;
    println!("calling {user} (call {call_id})");
    let mut hangup: Option<tokio::time::Instant> = None;
    let mut hung_up = false;
    let mut answered = false;
    let mut result = Ok(());
    let mut media: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let mut failure = None;
    let stop = vcsdk::util::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let deadline =
            hangup.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::CallState { call_id: id, state, reason }) if id == call_id => {
                    println!("{}", outcome(state, reason.as_deref()));
                    if state.is_final() {
                        result = exit_for(state, reason.as_deref(), answered);
                    }
                    if state == CallState::Accepted {
                        answered = true;
                        if let Some(d) = duration {
                            hangup = Some(tokio::time::Instant::now() + d);
                        }
                        if let Some(s) = sending.take() {
                            media = Some(tokio::spawn(stream_file(client.clone(), call_id.clone(), s)));
                        }
                    }
                    if state.is_final() {
                        break;
                    }
                }
                Some(ClientEvent::Disconnected { reason, reconnecting: true }) => {
                    println!("disconnected from the server ({reason}); reconnecting");
                }
                Some(ClientEvent::Disconnected { reason, reconnecting: false }) => {
                    return Err(Exit::new(
                        exit::UNREACHABLE,
                        format!("the connection to the server ended for good: {reason}"),
                    ));
                }
                Some(ClientEvent::LowBalance { balance, seconds_left, .. }) => {
                    println!("{}", crate::low_balance(&client, balance, seconds_left).await);
                }
                Some(_) => {}
                None => return Err(Exit::new(exit::UNREACHABLE, "the connection to the server is gone")),
            },
            done = async { media.as_mut().expect("guarded").await }, if media.is_some() => {
                media = None;
                if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                    println!("{e}");
                    failure = Some(e);
                }
                if hangup.is_none() && !hung_up {
                    hung_up = true;
                    client.terminate(&call_id, None).await?;
                }
            }
            _ = tokio::time::sleep_until(deadline), if hangup.is_some() && !hung_up => {
                hung_up = true;
                client.terminate(&call_id, None).await?;
            }
            _ = &mut stop, if !hung_up => {
                hung_up = true;
                println!("hanging up");
                client.terminate(&call_id, None).await?;
            }
        }
    }
    if let Some(task) = media.take() {
        // The call ended under the transfer: its report still counts.
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), task).await {
            println!("{e}");
            failure = Some(e);
        }
    }
    let _ = client.close().await;
    match failure {
        Some(e) => Err(Exit::new(exit::MEDIA_FAILED, e)),
        None => result,
    }
}

/// Waits for calls and answers them by `policy`, until Ctrl-C or `max_calls` calls have ended.
/// Fails (so `vc listen` exits 1) when the connection ends for good: a final reason from the
/// server, or a reconnection refused for good.
pub async fn listen(
    (client, mut events): (Client, Receiver<ClientEvent>),
    policy: AnswerPolicy,
    max_calls: Option<u32>,
    save: Option<PathBuf>,
    config: MediaConfig,
) -> Result<(), Exit> {
    println!("listening as {}", client.user());
    let mut media: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ended = 0u32;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::IncomingCall { call_id, from }) => {
                    println!("incoming call from {from} (call {call_id})");
                    let answer = match policy {
                        AnswerPolicy::Accept => Answer::Accept,
                        AnswerPolicy::Decline => Answer::Decline,
                        AnswerPolicy::Ask => {
                            println!("accept? [y = accept, b = busy, anything else = decline]");
                            match stdin.next_line().await {
                                Ok(Some(line)) if line.trim().eq_ignore_ascii_case("y") => Answer::Accept,
                                Ok(Some(line)) if line.trim().eq_ignore_ascii_case("b") => Answer::Busy,
                                _ => Answer::Decline,
                            }
                        }
                    };
                    if let Err(e) = client.answer(&call_id, answer).await {
                        println!("could not answer: {e}");
                    } else if answer == Answer::Accept {
                        let (client, save, config) = (client.clone(), save.clone(), config.clone());
                        media.push(tokio::spawn(async move {
                            match client.media(&call_id, config).await {
                                Ok(session) => {
                                    println!("media up: {}", session.path().map_or("closed".into(), |p| p.to_string()));
                                    for line in transfer::receive_files(session.clone(), save).await {
                                        println!("{line}");
                                    }
                                    println!("{}", transfer::describe(&session.stats()));
                                }
                                // A call that ended before any media (the caller sent none) is
                                // an outcome, not an error.
                                Err(vcsdk::Error::Closed(_)) => println!("media: none (the call ended before its media started)"),
                                Err(e) => println!("media: {e}"),
                            }
                        }));
                    }
                }
                Some(ClientEvent::CallState { call_id, state, reason }) => {
                    println!("call {call_id}: {}", outcome(state, reason.as_deref()));
                    if state.is_final() {
                        ended += 1;
                        if max_calls.is_some_and(|m| ended >= m) {
                            // Let the media of the calls finish their reports.
                            for task in media.drain(..) {
                                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                            }
                            break;
                        }
                    }
                }
                Some(ClientEvent::Disconnected { reason, reconnecting: true }) => println!("disconnected from the server ({reason}); reconnecting"),
                Some(ClientEvent::Disconnected { reason, reconnecting: false }) => {
                    // Nothing more can reach this listener: say why and fail.
                    for task in media.drain(..) {
                        task.abort();
                    }
                    return Err(Exit::new(
                        exit::UNREACHABLE,
                        format!("the connection to the server ended for good: {reason}"),
                    ));
                }
                Some(ClientEvent::Reconnected) => println!("reconnected"),
                Some(_) => {}
                None => return Err(Exit::new(exit::UNREACHABLE, "the connection to the server is gone")),
            },
            _ = &mut ctrl_c => break,
        }
    }
    let _ = client.close().await;
    Ok(())
}
