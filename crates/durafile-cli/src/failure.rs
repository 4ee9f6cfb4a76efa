//! How the command reports a failure: one line on stderr, `durafile: <what>`, and an exit
//! status (1 unless a child command's status is passed on).

use std::process::{ExitCode, ExitStatus};

#[derive(Debug)]
pub struct Failure {
    message: String,
    code: ExitCode,
}

impl Failure {
    pub fn new(message: String) -> Failure {
        Failure::with_code(message, ExitCode::FAILURE)
    }

    pub fn with_code(message: String, code: ExitCode) -> Failure {
        Failure { message, code }
    }

    pub fn report(self) -> ExitCode {
        eprintln!("durafile: {}", self.message);
        self.code
    }
}

impl From<durafile::Error> for Failure {
    fn from(err: durafile::Error) -> Failure {
        Failure::new(err.to_string())
    }
}

/// A child's status as ours: its code, or 128 + the signal that killed it, as shells do.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from(128 + signal as u8),
        (None, None) => ExitCode::FAILURE,
    }
}
