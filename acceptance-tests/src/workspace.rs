//! A temporary Terraform working directory with its own CLI configuration.
//!
//! The CLI config makes both `terraform init` and the later commands use the freshly built
//! provider, offline:
//! - `dev_overrides` points `cozystack/blockstor` at a directory holding the built binary, so
//!   plan/apply always run the binary under test (no checksum pinning);
//! - a `filesystem_mirror` holds the same binary in registry layout
//!   (`registry.terraform.io/cozystack/blockstor/<ver>/linux_amd64/terraform-provider-blockstor_v<ver>`):
//!   with dev_overrides alone, `terraform init` still asks the registry and fails offline
//!   (TERRAFORM-PROTOCOL.md §6); with the mirror it succeeds;
//! - `direct { exclude = ["cozystack/blockstor"] }` keeps every other provider installable.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::terraform::Terraform;
use crate::{binaries, loops};

/// A temporary working directory; removed (and any loop device under it detached) on drop.
#[derive(Debug)]
pub struct Workspace {
    root: TempDir,
}

impl Workspace {
    /// Creates the directory layout (`tf/`, `bin/`, `mirror/`) and the CLI config.
    pub fn new() -> Self {
        Self::with_provider(&binaries::provider())
    }

    /// The same with another build in the provider's place (the bench's echo floor).
    pub fn with_provider(provider: &Path) -> Self {
        let root = tempfile::Builder::new()
            .prefix("blockstor-acc-")
            .tempdir()
            .expect("create temp dir");
        let ws = Workspace { root };
        std::fs::create_dir_all(ws.tf_dir()).expect("create tf dir");
        ws.install_provider(provider);
        std::fs::write(ws.cli_config(), cli_config(&ws.bin_dir(), &ws.mirror_dir()))
            .expect("write CLI config");
        ws
    }

    /// Root of the temporary directory, for other per-test files (agent config, pools).
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The Terraform working directory.
    pub fn tf_dir(&self) -> PathBuf {
        self.path().join("tf")
    }

    /// Path of the CLI config file (`TF_CLI_CONFIG_FILE`).
    pub fn cli_config(&self) -> PathBuf {
        self.path().join("cli.tfrc")
    }

    /// Writes `name` (e.g. `main.tf`) into the Terraform working directory.
    pub fn write(&self, name: &str, contents: &str) -> &Self {
        std::fs::write(self.tf_dir().join(name), contents).expect("write tf file");
        self
    }

    /// Copies every `*.tf` file of `dir` (an example) into the Terraform working directory.
    pub fn copy_tf_files_from(&self, dir: &Path) -> &Self {
        for entry in std::fs::read_dir(dir).expect("read example dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tf") {
                std::fs::copy(&path, self.tf_dir().join(entry.file_name())).expect("copy tf");
            }
        }
        self
    }

    /// A terraform runner for this workspace.
    pub fn terraform(&self) -> Terraform {
        Terraform::new(&self.tf_dir(), &self.cli_config())
    }

    fn bin_dir(&self) -> PathBuf {
        self.path().join("bin")
    }

    fn mirror_dir(&self) -> PathBuf {
        self.path().join("mirror")
    }

    /// Links the built provider into `bin/` (dev_overrides) and into the mirror (init).
    fn install_provider(&self, provider: &Path) {
        let version = binaries::PROVIDER_VERSION;
        let platform = self
            .mirror_dir()
            .join("registry.terraform.io/cozystack/blockstor")
            .join(version)
            .join("linux_amd64");
        std::fs::create_dir_all(&platform).expect("create mirror dir");
        std::fs::create_dir_all(self.bin_dir()).expect("create bin dir");
        symlink(provider, &self.bin_dir().join(binaries::PROVIDER));
        symlink(
            provider,
            &platform.join(format!("{}_v{version}", binaries::PROVIDER)),
        );
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        loops::detach_all_under(self.path());
    }
}

/// The CLI configuration text for a dev_overrides directory and a filesystem mirror.
pub fn cli_config(bin_dir: &Path, mirror_dir: &Path) -> String {
    format!(
        r#"provider_installation {{
  dev_overrides {{
    "cozystack/blockstor" = "{bin}"
  }}
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["cozystack/blockstor"]
  }}
  direct {{
    exclude = ["cozystack/blockstor"]
  }}
}}
"#,
        bin = bin_dir.display(),
        mirror = mirror_dir.display()
    )
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("link {} -> {}: {e}", link.display(), target.display()));
}
