//! `vc call` and `vc listen`: placing and answering calls, printing each outcome.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::Receiver;
use vcsdk::client::{Client, ClientEvent};
use vcsdk::proto::signal::{Answer, CallState};

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
    };
    match reason {
        Some(r) if state.is_final() => format!("{name} ({r})"),
        _ => name.to_owned(),
    }
}

/// Calls `user` and follows the call to its end.
pub async fn call(
    (client, mut events): (Client, Receiver<ClientEvent>),
    user: &str,
    duration: Option<Duration>,
) -> Result<(), String> {
    let call_id = client.call(user).await.map_err(|e| e.to_string())?;
    println!("calling {user} (call {call_id})");
    let mut hangup: Option<tokio::time::Instant> = None;
    let mut hung_up = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let deadline =
            hangup.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::CallState { call_id: id, state, reason }) if id == call_id => {
                    println!("{}", outcome(state, reason.as_deref()));
                    if state == CallState::Accepted {
                        if let Some(d) = duration {
                            hangup = Some(tokio::time::Instant::now() + d);
                        }
                    }
                    if state.is_final() {
                        break;
                    }
                }
                Some(ClientEvent::Disconnected { reason }) => {
                    println!("disconnected from the server ({reason})");
                }
                Some(ClientEvent::LowBalance { balance, seconds_left, .. }) => {
                    println!("low balance: {balance} left, about {seconds_left} s");
                }
                Some(_) => {}
                None => return Err("the connection is gone".into()),
            },
            _ = tokio::time::sleep_until(deadline), if hangup.is_some() && !hung_up => {
                hung_up = true;
                client.terminate(&call_id, None).await.map_err(|e| e.to_string())?;
            }
            _ = &mut ctrl_c, if !hung_up => {
                hung_up = true;
                client.terminate(&call_id, None).await.map_err(|e| e.to_string())?;
            }
        }
    }
    let _ = client.close().await;
    Ok(())
}

/// Waits for calls and answers them by `policy`, until Ctrl-C or `max_calls` calls have ended.
pub async fn listen(
    (client, mut events): (Client, Receiver<ClientEvent>),
    policy: AnswerPolicy,
    max_calls: Option<u32>,
) -> Result<(), String> {
    println!("listening as {}", client.user());
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
                    }
                }
                Some(ClientEvent::CallState { call_id, state, reason }) => {
                    println!("call {call_id}: {}", outcome(state, reason.as_deref()));
                    if state.is_final() {
                        ended += 1;
                        if max_calls.is_some_and(|m| ended >= m) {
                            break;
                        }
                    }
                }
                Some(ClientEvent::Disconnected { reason }) => println!("disconnected from the server ({reason}); reconnecting"),
                Some(ClientEvent::Reconnected) => println!("reconnected"),
                Some(_) => {}
                None => return Err("the connection is gone".into()),
            },
            _ = &mut ctrl_c => break,
        }
    }
    let _ = client.close().await;
    Ok(())
}
