//! [`RecordingRunner`]: a scripted runner for tests (feature `test-support` outside this crate).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Command, Output, RunError, Runner};

/// One command seen by the [`RecordingRunner`].
#[derive(Clone, PartialEq, Eq)]
pub struct Recorded {
    pub argv: Vec<String>,
    /// What was written to stdin. Kept in memory only, so tests can prove the secret went there.
    pub stdin: Option<String>,
}

/// Redacts stdin: it carries a passphrase.
impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorded")
            .field("argv", &self.argv)
            .field("stdin", &self.stdin.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A scripted answer: argv prefix to match, the output, and whether it is used once.
struct Rule {
    prefix: Vec<String>,
    output: Result<Output, RunError>,
    once: bool,
}

/// A fake runner for tests: records every argv and answers from a script. The first matching
/// rule (argv starts with its prefix) wins; `once` rules are consumed. Unmatched commands
/// succeed with empty output.
#[derive(Default)]
pub struct RecordingRunner {
    rules: Mutex<VecDeque<Rule>>,
    calls: Mutex<Vec<Recorded>>,
}

impl fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingRunner")
            .field("calls", &self.calls.lock().unwrap().len())
            .finish()
    }
}

impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call whose argv starts with `prefix` answers `output`.
    pub fn on(&self, prefix: &[&str], output: Output) -> &Self {
        self.push(prefix, Ok(output), false)
    }

    /// The next call whose argv starts with `prefix` answers `output`; later ones fall through.
    pub fn once(&self, prefix: &[&str], output: Output) -> &Self {
        self.push(prefix, Ok(output), true)
    }

    /// Calls whose argv starts with `prefix` fail to run (e.g. tool not installed).
    pub fn on_error(&self, prefix: &[&str], error: RunError) -> &Self {
        self.push(prefix, Err(error), false)
    }

    fn push(&self, prefix: &[&str], output: Result<Output, RunError>, once: bool) -> &Self {
        let rule = Rule {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            output,
            once,
        };
        let mut rules = self.rules.lock().unwrap();
        // `once` rules go first so they shadow a standing rule for the same prefix.
        if once {
            rules.push_front(rule);
        } else {
            rules.push_back(rule);
        }
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }

    /// Every argv so far, joined by spaces, in order.
    pub fn commands(&self) -> Vec<String> {
        self.calls().iter().map(|c| c.argv.join(" ")).collect()
    }

    /// Forgets the calls recorded so far (the script stays).
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

#[async_trait]
impl Runner for RecordingRunner {
    async fn run(&self, cmd: &Command) -> Result<Output, RunError> {
        let argv = cmd.argv();
        self.calls.lock().unwrap().push(Recorded {
            argv: argv.clone(),
            stdin: cmd.stdin.as_ref().map(|s| s.expose().to_owned()),
        });
        let mut rules = self.rules.lock().unwrap();
        let hit = rules.iter().position(|r| argv.starts_with(&r.prefix));
        match hit {
            Some(i) if rules[i].once => rules.remove(i).expect("index is valid").output,
            Some(i) => rules[i].output.clone(),
            None => Ok(Output::ok("")),
        }
    }
}

#[cfg(test)]
mod tests {
    use blockstor_proto::wire::Passphrase;

    use super::*;

    #[tokio::test]
    async fn a_recorded_call_keeps_its_stdin_but_debug_shows_none_of_it() {
        let runner = RecordingRunner::new();
        let cmd = Command::new("cryptsetup", ["open"]).with_secret(&Passphrase::new("pw-9"));
        runner.run(&cmd).await.unwrap();
        let call = &runner.calls()[0];
        assert_eq!(call.stdin.as_deref(), Some("pw-9"));
        let shown = format!("{call:?}");
        assert!(
            !shown.contains("pw-9") && shown.contains("cryptsetup"),
            "{shown}"
        );
    }
}
