//! Locating the binaries cargo built.
//!
//! `CARGO_BIN_EXE_*` only exists for binaries of the crate under test, and the provider and the
//! agent live in other crates, so the tests look in the release directory of the target dir:
//! `$BLOCKSTOR_BIN_DIR`, else `$CARGO_TARGET_DIR/release`, else `<workspace>/target/release`.

use std::path::{Path, PathBuf};

/// File name of the provider binary, as Terraform expects it.
pub const PROVIDER: &str = "terraform-provider-blockstor";
/// File name of the agent binary.
pub const AGENT: &str = "blockstor-agent";
/// Version the filesystem mirror advertises for the provider (the workspace version).
pub const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("acceptance-tests sits inside the workspace")
        .to_path_buf()
}

/// Directory holding the release binaries of the provider and the agent.
pub fn release_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BLOCKSTOR_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    };
    target.join("release")
}

/// Path of the built provider binary (it may not exist yet).
pub fn provider() -> PathBuf {
    release_dir().join(PROVIDER)
}

/// Path of the built agent binary (it may not exist yet).
pub fn agent() -> PathBuf {
    release_dir().join(AGENT)
}
