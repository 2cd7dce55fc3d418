//! How `vc` ends: one exit code per outcome a script may want to tell apart. The codes are
//! listed in `vc --help` and the README; they never change meaning.

use std::fmt;

/// Anything else that went wrong (bad input, a file that cannot be read, …).
pub const ERROR: u8 = 1;
// 2: the command line itself was wrong (clap reports it and exits).
/// The server or the CA could not be reached, or the connection ended for good.
pub const UNREACHABLE: u8 = 3;
/// The server or the CA refused the request (its code is printed, e.g. `user_offline`).
pub const REFUSED: u8 = 4;
/// `vc call`: the callee declined.
pub const DECLINED: u8 = 5;
/// `vc call`: the callee was busy.
pub const BUSY: u8 = 6;
/// `vc call`: nobody answered in time.
pub const NO_ANSWER: u8 = 7;
/// `vc call --send`: the call was answered but the media or the file transfer failed.
pub const MEDIA_FAILED: u8 = 8;
/// `vc receipts verify` / `vc whoami --check`: the check ran and failed.
pub const CHECK_FAILED: u8 = 9;

/// The exit codes as `vc --help` lists them.
pub const HELP: &str = "Exit codes: 0 done; 1 error; 2 usage; 3 server or CA unreachable, or the \
connection ended for good; 4 refused by the server or the CA; 5 declined; 6 busy; 7 no answer; \
8 media or transfer failed; 9 a check failed (receipts verify, whoami --check).";

/// A failure with its exit code and what to print.
#[derive(Debug)]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Exit {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Exit {
    fn from(message: String) -> Exit {
        Exit::new(ERROR, message)
    }
}

impl From<&str> for Exit {
    fn from(message: &str) -> Exit {
        Exit::new(ERROR, message)
    }
}

impl From<vcsdk::Error> for Exit {
    fn from(e: vcsdk::Error) -> Exit {
        let code = match &e {
            vcsdk::Error::Connection { .. } => UNREACHABLE,
            vcsdk::Error::ServerRefused { .. } | vcsdk::Error::CaRefused { .. } => REFUSED,
            _ => ERROR,
        };
        Exit::new(code, e.to_string())
    }
}
