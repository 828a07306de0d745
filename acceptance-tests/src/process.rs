//! Running a command to completion with a time bound, capturing its output.
//!
//! Output goes to temporary files, not pipes: when Terraform crashes, the provider processes
//! it started can outlive it while holding its stdout/stderr, and a pipe reader would then
//! wait for them instead of returning when Terraform itself has exited.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::Outcome;

/// Runs `cmd` with stdin closed, kills it after `timeout`, and returns its captured output.
/// `label` is what [`Outcome`] shows as the command line.
pub fn run(mut cmd: Command, label: String, timeout: Duration) -> Outcome {
    let out = tempfile::tempfile().expect("create stdout capture file");
    let err = tempfile::tempfile().expect("create stderr capture file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone stdout capture"))
        .stderr(err.try_clone().expect("clone stderr capture"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{label}`: {e}"));
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for killed child");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let outcome = Outcome {
        command: label,
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    };
    if timed_out {
        panic!("command did not finish within {timeout:?} and was killed:\n{outcome}");
    }
    outcome
}

fn read_all(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut bytes = Vec::new();
    let _ = file.rewind();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
