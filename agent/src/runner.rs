//! The only place a process is spawned.
//!
//! Layers and backends *describe* commands as [`Command`] values; a [`Runner`] runs them. The
//! real runner uses an argv vector (never a shell), writes an optional secret to stdin and closes
//! it, bounds every step with a timeout and captures stdout/stderr. Every child dies with the
//! agent ([`die_with_parent`]). Tests use [`RecordingRunner`], which records every argv and
//! answers from a script.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use blockstor_proto::wire::Passphrase;
use tokio::io::AsyncWriteExt;

/// Default bound of one step; formatting or syncing a large device can take a while.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// One process to run: program, argv (without the program) and an optional secret for stdin.
#[derive(Clone)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// Written to stdin, then stdin is closed. Never part of argv, logs or errors.
    pub stdin: Option<Passphrase>,
    pub timeout: Duration,
    /// Extra environment variables (never secrets: they may show in `/proc/<pid>/environ`).
    pub env: Vec<(String, String)>,
}

impl Command {
    /// A command with no stdin and the default timeout.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the process (not shown in argv, plans or logs).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sends `secret` on stdin (for `--key-file=-`).
    pub fn with_secret(mut self, secret: &Passphrase) -> Self {
        self.stdin = Some(secret.clone());
        self
    }

    /// Program followed by its arguments. Secrets never appear here: they travel on stdin.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

impl fmt::Display for Command {
    /// The argv joined by spaces, for messages; the stdin secret is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv().join(" "))
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("argv", &self.argv())
            .field("stdin", &self.stdin.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What a finished process left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `-1` when killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code 0 with this stdout.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Output {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// A failure with this exit code and stderr.
    pub fn fail(status: i32, stderr: impl Into<String>) -> Self {
        Output {
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Why a command could not produce an [`Output`], or failed when success was required.
/// Messages carry the argv and trimmed stderr, never the stdin secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("{program} is not installed (running `{command}`); run `blockstor-agent check` to see which package provides it")]
    NotInstalled { program: String, command: String },
    #[error("`{command}` did not finish within {secs} s and was killed")]
    Timeout { command: String, secs: u64 },
    #[error("could not run `{command}`: {error}")]
    Spawn { command: String, error: String },
    #[error("`{command}` failed with exit code {status}: {stderr}")]
    Failed {
        command: String,
        status: i32,
        stderr: String,
    },
}

/// Runs commands. The real one spawns processes; the recording one is for tests.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Runs `cmd` to completion. A non-zero exit is an `Ok(Output)`: observing commands such as
    /// `cryptsetup isLuks` answer through their exit code. Use [`Runner::run_ok`] to require 0.
    async fn run(&self, cmd: &Command) -> Result<Output, RunError>;

    /// Runs `cmd` and turns a non-zero exit into [`RunError::Failed`].
    async fn run_ok(&self, cmd: &Command) -> Result<Output, RunError> {
        let out = self.run(cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(RunError::Failed {
                command: cmd.to_string(),
                status: out.status,
                stderr: trim_stderr(&out.stderr),
            })
        }
    }
}

/// Keeps error messages readable: the last lines of stderr, at most 1000 characters.
pub fn trim_stderr(stderr: &str) -> String {
    let t = stderr.trim();
    if t.chars().count() <= 1000 {
        return t.to_owned();
    }
    let tail: String = t
        .chars()
        .rev()
        .take(1000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Spawns real processes with tokio.
#[derive(Debug, Default, Clone)]
pub struct SystemRunner;

#[async_trait]
impl Runner for SystemRunner {
    async fn run(&self, cmd: &Command) -> Result<Output, RunError> {
        let command = cmd.to_string();
        tracing::debug!(%command, "run");
        let mut proc = tokio::process::Command::new(&cmd.program);
        die_with_parent(&mut proc);
        let mut child = proc
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    RunError::NotInstalled {
                        program: cmd.program.clone(),
                        command: command.clone(),
                    }
                } else {
                    RunError::Spawn {
                        command: command.clone(),
                        error: e.to_string(),
                    }
                }
            })?;
        crate::crash::during_step();
        if let (Some(secret), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            // A tool that exits early closes the pipe; its exit code tells what happened.
            let _ = stdin.write_all(secret.expose().as_bytes()).await;
            let _ = stdin.shutdown().await;
            drop(stdin);
        }
        let waited = tokio::time::timeout(cmd.timeout, child.wait_with_output()).await;
        let out = match waited {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(RunError::Spawn {
                    command,
                    error: e.to_string(),
                })
            }
            Err(_) => {
                return Err(RunError::Timeout {
                    command,
                    secs: cmd.timeout.as_secs(),
                })
            }
        };
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Makes the kernel SIGKILL the child when the agent dies (`PR_SET_PDEATHSIG`), so no tool
/// outlives a killed agent and keeps writing behind the back of the one that restarts (a
/// `luksFormat` finishing its header while the next apply looks at it). `kill_on_drop` covers
/// only an orderly drop. The signal follows the death of the spawning *thread*: tokio's worker
/// threads live as long as the runtime, and the runner is never called from a blocking-pool
/// thread. A parent that died between fork and `prctl` is caught by comparing `getppid`.
fn die_with_parent(proc: &mut tokio::process::Command) {
    let agent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), both async-signal-safe; it allocates nothing.
    unsafe {
        proc.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != agent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(any(test, feature = "test-support"))]
mod recording;
#[cfg(any(test, feature = "test-support"))]
pub use recording::{Recorded, RecordingRunner};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn real_runner_passes_the_secret_on_stdin_only() {
        let cmd = Command::new("cat", Vec::<String>::new()).with_secret(&Passphrase::new("pw-1"));
        let out = SystemRunner.run_ok(&cmd).await.unwrap();
        assert_eq!(out.stdout, "pw-1");
        assert!(!cmd.to_string().contains("pw-1"));
        assert!(!format!("{cmd:?}").contains("pw-1"));
    }

    #[tokio::test]
    async fn real_runner_reports_command_and_trimmed_stderr_without_the_secret() {
        let cmd = Command::new("sh", ["-c", "cat >/dev/null; echo '  boom  ' >&2; exit 3"])
            .with_secret(&Passphrase::new("hidden-pw"));
        let err = SystemRunner.run_ok(&cmd).await.unwrap_err().to_string();
        assert!(
            err.contains("exit code 3") && err.contains(": boom"),
            "{err}"
        );
        assert!(!err.contains("hidden-pw"));
    }

    #[tokio::test]
    async fn real_runner_times_out_and_names_the_command() {
        let mut cmd = Command::new("sleep", ["5"]);
        cmd.timeout = Duration::from_millis(100);
        let err = SystemRunner.run(&cmd).await.unwrap_err();
        assert!(matches!(err, RunError::Timeout { ref command, .. } if command == "sleep 5"));
    }

    #[tokio::test]
    async fn missing_program_is_reported_as_not_installed() {
        let cmd = Command::new("blockstor-no-such-tool", ["x"]);
        let err = SystemRunner.run(&cmd).await.unwrap_err();
        assert!(matches!(err, RunError::NotInstalled { .. }), "{err:?}");
    }

    /// Pids of processes whose argv is exactly `argv` (zombies have none).
    fn pids_running(argv: &[&str]) -> Vec<u32> {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok() == Some(want.clone()))
            .collect()
    }

    /// Polls `f` until it holds or `secs` pass; whether it held.
    fn within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f()
    }

    /// Not a test of its own: the agent stand-in that
    /// `a_child_dies_with_its_sigkilled_agent` starts, then kills.
    #[tokio::test]
    #[ignore = "the helper process of a_child_dies_with_its_sigkilled_agent"]
    async fn agent_stand_in_running_a_long_child() {
        let Ok(secs) = std::env::var("BLOCKSTOR_TEST_STAND_IN_SLEEP") else {
            return;
        };
        let _ = SystemRunner.run(&Command::new("sleep", [secs])).await;
    }

    #[test]
    fn a_child_dies_with_its_sigkilled_agent() {
        // A duration no other process uses, to find this very `sleep` in /proc.
        let secs = format!("3000.{}", std::process::id());
        let mut agent = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "runner::tests::agent_stand_in_running_a_long_child",
                "--exact",
                "--ignored",
            ])
            .env("BLOCKSTOR_TEST_STAND_IN_SLEEP", &secs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            within(30, || !pids_running(&["sleep", &secs]).is_empty()),
            "the stand-in spawned its child"
        );
        let child = pids_running(&["sleep", &secs])[0];
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, agent.id(), "the sleep is the stand-in's child");
        agent.kill().unwrap(); // SIGKILL
        agent.wait().unwrap();
        let died = within(10, || pids_running(&["sleep", &secs]).is_empty());
        for pid in pids_running(&["sleep", &secs]) {
            // SAFETY: kill(2) with a valid signal; cleans up after a failed assertion.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        assert!(died, "the child outlived its SIGKILLed agent");
    }

    #[tokio::test]
    async fn recording_runner_answers_once_rules_first_then_standing_ones() {
        let r = RecordingRunner::new();
        r.on(&["losetup", "-j"], Output::ok("standing"));
        r.once(&["losetup", "-j"], Output::ok("first"));
        let c = Command::new("losetup", ["-j", "/f"]);
        assert_eq!(r.run(&c).await.unwrap().stdout, "first");
        assert_eq!(r.run(&c).await.unwrap().stdout, "standing");
        assert_eq!(r.commands(), ["losetup -j /f", "losetup -j /f"]);
    }
}
