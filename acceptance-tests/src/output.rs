//! The captured result of one command, with assertions that print everything on failure.

use std::fmt;
use std::process::ExitStatus;

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Human-readable command line (never holds a secret: secrets travel in the environment).
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Outcome {
    /// stdout followed by stderr, for searching messages wherever Terraform put them.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Exit code, or -1 when the process died from a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with the full output unless the command exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success:\n{self}");
        self
    }

    /// Panics with the full output unless the command exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit code:\n{self}");
        self
    }

    /// Panics with the full output if the command exited 0.
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.status.success(), "expected failure:\n{self}");
        self
    }

    /// Panics unless stdout or stderr contains `needle`.
    pub fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.combined().contains(needle),
            "expected output to contain {needle:?}:\n{self}"
        );
        self
    }

    /// Panics if stdout or stderr contains `needle`. The needle is not printed: it is
    /// usually a secret.
    pub fn assert_not_contains_secret(&self, needle: &str) -> &Self {
        assert!(
            !self.combined().contains(needle),
            "a secret appeared in the output of `{}` (output withheld)",
            self.command
        );
        self
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}  (exit: {})", self.command, self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}
