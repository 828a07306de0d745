//! Checking a LUKS header from outside the agent, with the real `cryptsetup`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `cryptsetup isLuks <device>`: whether a LUKS header is there.
pub fn is_luks(device: &Path) -> bool {
    Command::new("cryptsetup")
        .arg("isLuks")
        .arg(device)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cryptsetup luksDump <device>` (headers only, no key material), or the error output.
pub fn dump(device: &Path) -> Result<String, String> {
    let out = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(device)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cryptsetup: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `cryptsetup open --test-passphrase --key-file=- <device>`: whether `passphrase` unlocks a
/// keyslot. Needs no device-mapper; the passphrase goes on stdin, never in argv.
pub fn passphrase_unlocks(device: &Path, passphrase: &str) -> bool {
    let Ok(mut child) = Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file=-"])
        .arg(device)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(passphrase.as_bytes());
    }
    child.wait().is_ok_and(|s| s.success())
}
