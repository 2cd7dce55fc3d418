//! Which receipt requests a client signs. A receipt is the user's signature under a moment the
//! server bills by, so a client signs only for calls and conference participations it took part
//! in, at moments it saw itself (within a tolerance that covers network delay and the clock
//! difference between client and server), and each receipt at most once. Anything else — a call
//! that never happened, a stretched answer or end, a second record for one participation — is
//! refused with the reason.
//!
//! The guard only judges: the client feeds it what it observes (calls placed, offered, accepted,
//! answered and ended; members joining and leaving its conferences, from verified entries) and
//! asks it about each request.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{receipt_statement, ReceiptKind};

/// Default largest difference between a receipt's moment and the moment the client saw.
pub const DEFAULT_RECEIPT_TOLERANCE: Duration = Duration::from_secs(5);
/// Longest statement judged (a genuine one is about 200 bytes).
pub const MAX_STATEMENT_BYTES: usize = 512;
/// Calls remembered (the oldest are forgotten first).
const REMEMBERED_CALLS: usize = 1024;
/// Conference participations remembered (the oldest are forgotten first).
const REMEMBERED_PARTICIPATIONS: usize = 1024;

/// The fields of a receipt statement ([`receipt_statement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Answer or end.
    pub kind: ReceiptKind,
    /// The call (or participation record).
    pub call_id: String,
    /// The caller (for a conference, the payer).
    pub caller: String,
    /// The callee (for a conference, `conf:<id>` or `conf:<id>:<member>`).
    pub callee: String,
    /// The moment, Unix ms.
    pub at_ms: i64,
}

/// Reads a statement that must be exactly [`receipt_statement`] of `kind` for `call_id`.
pub fn parse_statement(
    kind: ReceiptKind,
    call_id: &str,
    statement: &str,
) -> Result<Statement, String> {
    if statement.len() > MAX_STATEMENT_BYTES {
        return Err(format!(
            "the statement is {} bytes long; at most {MAX_STATEMENT_BYTES} are signed",
            statement.len()
        ));
    }
    let lines: Vec<&str> = statement.split('\n').collect();
    let [version, k, call, caller, callee, at, end] = lines[..] else {
        return Err("the statement does not have the receipt's seven lines".into());
    };
    if version != "vcsdk-call-receipt/1" || !end.is_empty() {
        return Err("the statement is not a vcsdk-call-receipt/1".into());
    }
    if k != kind.as_str() {
        return Err(format!(
            "the statement is of kind {k:?}, the request says {}",
            kind.as_str()
        ));
    }
    if call != call_id {
        return Err("the statement names another call than the request".into());
    }
    let at_ms: i64 = at
        .parse()
        .map_err(|_| "the statement's time is not a number".to_string())?;
    if receipt_statement(kind, call_id, caller, callee, at_ms) != statement {
        return Err("the statement is not in the canonical form".into());
    }
    Ok(Statement {
        kind,
        call_id: call_id.to_owned(),
        caller: caller.to_owned(),
        callee: callee.to_owned(),
        at_ms,
    })
}

/// What to do with a receipt request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It describes what this client saw: sign it.
    Sign,
    /// It does not: refuse, for this reason.
    Refuse(String),
    /// Not seen yet: it may match once what already arrived is applied (a conference entry
    /// being verified); judge again shortly, and refuse with this reason if it still does not.
    Unseen(String),
}

/// A call as this client saw it.
#[derive(Debug)]
struct CallSeen {
    caller: String,
    callee: String,
    /// We are the callee and accepted it.
    we_accepted: bool,
    answered_ms: Option<i64>,
    ended_ms: Option<i64>,
    answer_signed: bool,
    end_signed: bool,
}

/// A member's time in a conference as this client saw it.
#[derive(Debug)]
struct Participation {
    conf: String,
    member: String,
    joined_ms: i64,
    left_ms: Option<i64>,
    /// The billing record whose answer receipt we signed for it.
    record: Option<String>,
    end_signed: bool,
}

/// Judges receipt requests against what one client saw.
#[derive(Debug)]
pub struct ReceiptGuard {
    me: String,
    tolerance_ms: i64,
    calls: HashMap<String, CallSeen>,
    call_order: VecDeque<String>,
    participations: VecDeque<Participation>,
}

impl ReceiptGuard {
    /// A guard for client `me`, accepting moments within `tolerance` of what it saw.
    pub fn new(me: &str, tolerance: Duration) -> Self {
        ReceiptGuard {
            me: me.to_owned(),
            tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
            calls: HashMap::new(),
            call_order: VecDeque::new(),
            participations: VecDeque::new(),
        }
    }

    fn remember_call(&mut self, call_id: &str, caller: &str, callee: &str) {
        if self.calls.contains_key(call_id) {
            return;
        }
        if self.call_order.len() >= REMEMBERED_CALLS {
            if let Some(old) = self.call_order.pop_front() {
                self.calls.remove(&old);
            }
        }
        self.call_order.push_back(call_id.to_owned());
        self.calls.insert(
            call_id.to_owned(),
            CallSeen {
                caller: caller.to_owned(),
                callee: callee.to_owned(),
                we_accepted: false,
                answered_ms: None,
                ended_ms: None,
                answer_signed: false,
                end_signed: false,
            },
        );
    }

    /// The server placed our call `call_id` to `callee`.
    pub fn call_placed(&mut self, call_id: &str, callee: &str) {
        let me = self.me.clone();
        self.remember_call(call_id, &me, callee);
    }

    /// `caller` calls us (`incoming_call`).
    pub fn call_offered(&mut self, call_id: &str, caller: &str) {
        let me = self.me.clone();
        self.remember_call(call_id, caller, &me);
    }

    /// We accept the incoming call `call_id`.
    pub fn call_accepting(&mut self, call_id: &str) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.we_accepted = c.callee == self.me;
        }
    }

    /// The server says `call_id` was answered; we saw it at `at_ms`. An incoming call counts as
    /// answered only if we accepted it.
    pub fn call_answered(&mut self, call_id: &str, at_ms: i64) {
        let me = self.me.clone();
        if let Some(c) = self.calls.get_mut(call_id) {
            if c.answered_ms.is_none() && (c.caller == me || c.we_accepted) {
                c.answered_ms = Some(at_ms);
            }
        }
    }

    /// The server says `call_id` is over; we saw it at `at_ms`.
    pub fn call_ended(&mut self, call_id: &str, at_ms: i64) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.ended_ms.get_or_insert(at_ms);
        }
    }

    /// A verified entry of conference `conf` made `member` join; it arrived at `at_ms`.
    pub fn conf_joined(&mut self, conf: &str, member: &str, at_ms: i64) {
        if self.participations.len() >= REMEMBERED_PARTICIPATIONS {
            self.participations.pop_front();
        }
        self.participations.push_back(Participation {
            conf: conf.to_owned(),
            member: member.to_owned(),
            joined_ms: at_ms,
            left_ms: None,
            record: None,
            end_signed: false,
        });
    }

    /// `member` left conference `conf` (a verified entry, or our own connection was lost); seen
    /// at `at_ms`.
    pub fn conf_left(&mut self, conf: &str, member: &str, at_ms: i64) {
        if let Some(p) = self
            .participations
            .iter_mut()
            .rev()
            .find(|p| p.conf == conf && p.member == member && p.left_ms.is_none())
        {
            p.left_ms = Some(at_ms);
        }
    }

    /// Judges the request to sign `statement` as the `kind` receipt of `call_id`, arrived at
    /// `now_ms`. A [`Verdict::Sign`] is recorded: the same receipt is not signed twice.
    pub fn judge(
        &mut self,
        kind: ReceiptKind,
        call_id: &str,
        statement: &str,
        now_ms: i64,
    ) -> Verdict {
        let s = match parse_statement(kind, call_id, statement) {
            Ok(s) => s,
            Err(e) => return Verdict::Refuse(e),
        };
        match s.callee.strip_prefix("conf:") {
            Some(rest) => self.judge_participation(&s, rest, now_ms),
            None => self.judge_call(&s),
        }
    }

    fn near(&self, stated: i64, seen: i64) -> bool {
        stated.abs_diff(seen) <= self.tolerance_ms.unsigned_abs()
    }

    fn apart(&self, what: &str, stated: i64, seen: i64) -> String {
        format!(
            "it states the {what} at {stated} ms but this client saw it at {seen} ms ({} ms apart; the tolerance is {} ms)",
            stated.abs_diff(seen),
            self.tolerance_ms
        )
    }

    fn judge_call(&mut self, s: &Statement) -> Verdict {
        let Some(call) = self.calls.get(&s.call_id) else {
            return Verdict::Refuse(format!(
                "this client never placed nor was offered call {}",
                s.call_id
            ));
        };
        if call.caller != s.caller || call.callee != s.callee {
            return Verdict::Refuse(format!(
                "it names {} calling {}, but this client saw {} calling {}",
                s.caller, s.callee, call.caller, call.callee
            ));
        }
        let Some(answered) = call.answered_ms else {
            return Verdict::Refuse("this client never saw the call answered".into());
        };
        let refusal = match s.kind {
            ReceiptKind::Answer if call.answer_signed => Some("it was already signed".into()),
            ReceiptKind::Answer if !self.near(s.at_ms, answered) => {
                Some(self.apart("answer", s.at_ms, answered))
            }
            ReceiptKind::Answer => None,
            ReceiptKind::End => match call.ended_ms {
                _ if call.end_signed => Some("it was already signed".into()),
                None => Some("this client has not seen the call end".into()),
                Some(ended) if !self.near(s.at_ms, ended) => {
                    Some(self.apart("end", s.at_ms, ended))
                }
                Some(_) => None,
            },
        };
        if let Some(why) = refusal {
            return Verdict::Refuse(why);
        }
        if let Some(call) = self.calls.get_mut(&s.call_id) {
            match s.kind {
                ReceiptKind::Answer => call.answer_signed = true,
                ReceiptKind::End => call.end_signed = true,
            }
        }
        Verdict::Sign
    }

    fn judge_participation(&mut self, s: &Statement, rest: &str, now_ms: i64) -> Verdict {
        if s.caller != self.me {
            return Verdict::Refuse(format!(
                "it names {} as the payer of a conference participation, not this client",
                s.caller
            ));
        }
        let (conf, member) = match rest.split_once(':') {
            None => (rest, self.me.clone()),
            Some((conf, member)) if member != self.me && !member.is_empty() => {
                (conf, member.to_owned())
            }
            Some(_) => {
                return Verdict::Refuse("it names a malformed conference participation".into())
            }
        };
        match s.kind {
            ReceiptKind::Answer => self.judge_join(s, conf, &member),
            ReceiptKind::End => self.judge_leave(s, conf, &member, now_ms),
        }
    }

    fn judge_join(&mut self, s: &Statement, conf: &str, member: &str) -> Verdict {
        if self
            .participations
            .iter()
            .any(|p| p.record.as_deref() == Some(s.call_id.as_str()))
        {
            return Verdict::Refuse(format!(
                "record {} was already signed for a participation",
                s.call_id
            ));
        }
        let tolerance = self.tolerance_ms.unsigned_abs();
        let seen = self.participations.iter_mut().rev().find(|p| {
            p.conf == conf && p.member == member && p.joined_ms.abs_diff(s.at_ms) <= tolerance
        });
        match seen {
            Some(p) => match &p.record {
                Some(other) => Verdict::Refuse(format!(
                    "{member}'s participation in conference {conf} from that join was already signed as record {other}"
                )),
                None => {
                    p.record = Some(s.call_id.clone());
                    Verdict::Sign
                }
            },
            None => Verdict::Unseen(format!(
                "this client saw no join of {member} to conference {conf} within {} ms of {} ms",
                self.tolerance_ms, s.at_ms
            )),
        }
    }

    fn judge_leave(&mut self, s: &Statement, conf: &str, member: &str, now_ms: i64) -> Verdict {
        let me = self.me.clone();
        let watching = self
            .participations
            .iter()
            .any(|p| p.conf == conf && p.member == me && p.left_ms.is_none());
        let tolerance = self.tolerance_ms.unsigned_abs();
        let Some(p) = self.participations.iter_mut().find(|p| {
            p.conf == conf && p.member == member && p.record.as_deref() == Some(&s.call_id)
        }) else {
            return Verdict::Refuse(format!(
                "this client signed no join of {member} to conference {conf} as record {}",
                s.call_id
            ));
        };
        if p.end_signed {
            return Verdict::Refuse("it was already signed".into());
        }
        let verdict = match p.left_ms {
            Some(left) if left.abs_diff(s.at_ms) <= tolerance => Verdict::Sign,
            Some(left) => Verdict::Refuse(format!(
                "it states the leave at {} ms but this client saw it at {left} ms ({} ms apart; the tolerance is {} ms)",
                s.at_ms,
                left.abs_diff(s.at_ms),
                self.tolerance_ms
            )),
            // Still there as far as we can see, and we would see it go: an end now cannot bill
            // for more than happened (the server ends it, e.g. when shutting down).
            None if watching && now_ms.abs_diff(s.at_ms) <= tolerance => Verdict::Sign,
            None => Verdict::Unseen(format!(
                "this client has not seen {member} leave conference {conf}"
            )),
        };
        if verdict == Verdict::Sign {
            p.end_signed = true;
            p.left_ms.get_or_insert(s.at_ms);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "0123456789abcdef0123456789abcdef";

    fn guard() -> ReceiptGuard {
        ReceiptGuard::new("alice", Duration::from_secs(5))
    }

    fn st(kind: ReceiptKind, call: &str, caller: &str, callee: &str, at: i64) -> String {
        receipt_statement(kind, call, caller, callee, at)
    }

    #[test]
    fn only_calls_seen_at_the_moments_seen_are_signed_once() {
        let mut g = guard();
        let invented = st(ReceiptKind::Answer, "c9", "alice", "bob", 1000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c9", &invented, 1000),
            Verdict::Refuse(_)
        ));
        g.call_placed("c1", "bob");
        let early = st(ReceiptKind::Answer, "c1", "alice", "bob", 10_000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c1", &early, 10_000),
            Verdict::Refuse(_)
        ));
        g.call_answered("c1", 20_000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c1", &early, 20_000),
            Verdict::Refuse(_)
        ));
        let other = st(ReceiptKind::Answer, "c1", "alice", "carol", 20_100);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c1", &other, 20_100),
            Verdict::Refuse(_)
        ));
        let good = st(ReceiptKind::Answer, "c1", "alice", "bob", 20_100);
        assert_eq!(
            g.judge(ReceiptKind::Answer, "c1", &good, 20_100),
            Verdict::Sign
        );
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c1", &good, 20_100),
            Verdict::Refuse(_)
        ));
        let end = st(ReceiptKind::End, "c1", "alice", "bob", 30_000);
        assert!(matches!(
            g.judge(ReceiptKind::End, "c1", &end, 30_000),
            Verdict::Refuse(_)
        ));
        g.call_ended("c1", 29_000);
        let stretched = st(ReceiptKind::End, "c1", "alice", "bob", 90_000);
        assert!(matches!(
            g.judge(ReceiptKind::End, "c1", &stretched, 90_000),
            Verdict::Refuse(_)
        ));
        assert_eq!(g.judge(ReceiptKind::End, "c1", &end, 30_000), Verdict::Sign);
    }

    #[test]
    fn an_incoming_call_counts_only_once_we_accepted_it() {
        let mut g = guard();
        g.call_offered("c2", "bob");
        g.call_answered("c2", 1000);
        let answer = st(ReceiptKind::Answer, "c2", "bob", "alice", 1000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "c2", &answer, 1000),
            Verdict::Refuse(_)
        ));
        g.call_offered("c3", "bob");
        g.call_accepting("c3");
        g.call_answered("c3", 1000);
        let answer = st(ReceiptKind::Answer, "c3", "bob", "alice", 1200);
        assert_eq!(
            g.judge(ReceiptKind::Answer, "c3", &answer, 1200),
            Verdict::Sign
        );
    }

    #[test]
    fn statements_must_be_canonical() {
        let mut g = guard();
        g.call_placed("c1", "bob");
        g.call_answered("c1", 1000);
        for bad in [
            "vcsdk-call-receipt/1\nanswer\nc1\nalice\nbob\n+1000\n".to_string(),
            "vcsdk-call-receipt/1\nanswer\nc1\nalice\nbob\n01000\n".to_string(),
            "vcsdk-call-receipt/1\nend\nc1\nalice\nbob\n1000\n".to_string(),
            "vcsdk-call-receipt/2\nanswer\nc1\nalice\nbob\n1000\n".to_string(),
            "vcsdk-call-receipt/1\nanswer\nc1\nalice\nbob\n1000\nextra\n".to_string(),
            format!("{}x", st(ReceiptKind::Answer, "c1", "alice", "bob", 1000)),
        ] {
            assert!(
                matches!(
                    g.judge(ReceiptKind::Answer, "c1", &bad, 1000),
                    Verdict::Refuse(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn participations_are_signed_once_for_the_join_and_leave_seen() {
        let mut g = guard();
        let callee = format!("conf:{CONF}");
        let answer = st(ReceiptKind::Answer, "r1", "alice", &callee, 5000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "r1", &answer, 5000),
            Verdict::Unseen(_)
        ));
        g.conf_joined(CONF, "alice", 5100);
        assert_eq!(
            g.judge(ReceiptKind::Answer, "r1", &answer, 5100),
            Verdict::Sign
        );
        // A second record for the same participation is refused.
        let again = st(ReceiptKind::Answer, "r2", "alice", &callee, 5000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "r2", &again, 5100),
            Verdict::Refuse(_)
        ));
        // Someone else's payer, or a member's participation we never saw.
        let theirs = st(ReceiptKind::Answer, "r3", "bob", &callee, 5000);
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "r3", &theirs, 5100),
            Verdict::Refuse(_)
        ));
        let carol = st(
            ReceiptKind::Answer,
            "r4",
            "alice",
            &format!("{callee}:carol"),
            5000,
        );
        assert!(matches!(
            g.judge(ReceiptKind::Answer, "r4", &carol, 5100),
            Verdict::Unseen(_)
        ));
        // The end: not before we see the leave (unless it is now and we are still in), and not
        // stretched.
        let stretched = st(ReceiptKind::End, "r1", "alice", &callee, 90_000);
        assert!(matches!(
            g.judge(ReceiptKind::End, "r1", &stretched, 20_000),
            Verdict::Unseen(_)
        ));
        g.conf_left(CONF, "alice", 20_000);
        assert!(matches!(
            g.judge(ReceiptKind::End, "r1", &stretched, 20_000),
            Verdict::Refuse(_)
        ));
        let end = st(ReceiptKind::End, "r1", "alice", &callee, 20_050);
        assert_eq!(g.judge(ReceiptKind::End, "r1", &end, 20_050), Verdict::Sign);
        assert!(matches!(
            g.judge(ReceiptKind::End, "r1", &end, 20_050),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn a_participation_still_open_may_end_now() {
        let mut g = guard();
        let callee = format!("conf:{CONF}");
        g.conf_joined(CONF, "alice", 1000);
        let answer = st(ReceiptKind::Answer, "r1", "alice", &callee, 1000);
        assert_eq!(
            g.judge(ReceiptKind::Answer, "r1", &answer, 1000),
            Verdict::Sign
        );
        let now = st(ReceiptKind::End, "r1", "alice", &callee, 50_000);
        assert_eq!(g.judge(ReceiptKind::End, "r1", &now, 50_010), Verdict::Sign);
    }
}
