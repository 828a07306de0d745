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

    /// Terraform's warnings in stdout and stderr, each as its summary, the `with …`/`on …`
    /// lines and the detail paragraph; without the "Provider development overrides" warning
    /// every acceptance run shows.
    pub fn warnings(&self) -> Vec<String> {
        let text = self.combined();
        let mut out = Vec::new();
        for block in text.split("Warning: ").skip(1) {
            if block.starts_with("Provider development overrides") {
                continue;
            }
            let mut paragraphs = block.split("\n\n").filter(|p| !p.trim().is_empty());
            let mut warning = paragraphs.next().unwrap_or_default().to_owned();
            if let Some(next) = paragraphs.next() {
                warning.push('\n');
                warning.push_str(next);
                let trimmed = next.trim_start();
                if trimmed.starts_with("with ") || trimmed.starts_with("on ") {
                    if let Some(detail) = paragraphs.next() {
                        warning.push('\n');
                        warning.push_str(detail);
                    }
                }
            }
            out.push(warning);
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn warnings_skip_the_dev_overrides_one_and_keep_summary_and_detail() {
        let out = Outcome {
            command: "terraform plan".into(),
            status: ExitStatus::from_raw(0),
            stdout: "\nWarning: Provider development overrides are in effect\n\nThe \
                     following provider development overrides are set: n1\n\nPlan: 1 to add\n\n\
                     Warning: Replacing destroys data\n\n  with blockstor_resource_definition.x,\n  \
                     on main.tf line 3:\n\nThe data on n1 is destroyed.\n\nmore text\n"
                .into(),
            stderr: String::new(),
        };
        let w = out.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("Replacing destroys data"), "{w:?}");
        assert!(w[0].contains("The data on n1 is destroyed."), "{w:?}");
        assert!(!w[0].contains("more text"), "{w:?}");
    }
}
