//! Which DRBD this node runs: `drbdadm --version` prints `DRBD_KERNEL_VERSION_CODE=0x090200`
//! (0 when the module is not loaded) and `DRBDADM_VERSION_CODE=0x091600`.

use super::render::Dialect;
use crate::error::Result;
use crate::layers::Cx;
use crate::runner::Command;

/// Kernel module and utils versions as numeric codes (`0x090200` = 9.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrbdVersions {
    pub kernel: u32,
    pub utils: u32,
}

impl DrbdVersions {
    /// The `.res` dialect: the kernel decides; without a module, the utils do.
    pub fn dialect(self) -> Dialect {
        let code = if self.kernel != 0 {
            self.kernel
        } else {
            self.utils
        };
        if code != 0 && code < 0x09_00_00 {
            Dialect::V84
        } else {
            Dialect::V9
        }
    }
}

/// Parses `drbdadm --version` output.
pub fn parse(text: &str) -> DrbdVersions {
    let code = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    DrbdVersions {
        kernel: code("DRBD_KERNEL_VERSION_CODE="),
        utils: code("DRBDADM_VERSION_CODE="),
    }
}

/// The loaded module's version as text (`8.4.11`), or `None` without a module.
/// `DRBD_KERNEL_VERSION=` when drbdadm prints it; DRBD 8.4's utils (which drbd-utils 9 runs
/// for an 8.4 kernel) print only `DRBD_KERNEL_VERSION_CODE=0x08040b`, so decode that.
pub fn kernel_version_text(text: &str) -> Option<String> {
    if let Some(v) = text
        .lines()
        .find_map(|l| l.strip_prefix("DRBD_KERNEL_VERSION="))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        return Some(v);
    }
    let code = parse(text).kernel;
    (code != 0).then(|| format!("{}.{}.{}", code >> 16, (code >> 8) & 0xff, code & 0xff))
}

/// Runs `drbdadm --version` (a read-only step, also when planning).
pub async fn detect(cx: &Cx<'_>) -> Result<DrbdVersions> {
    let out = cx.observe(&Command::new("drbdadm", ["--version"])).await?;
    Ok(parse(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_picks_the_dialect_and_utils_are_the_fallback() {
        let v = parse("DRBD_KERNEL_VERSION_CODE=0x08040b\nDRBDADM_VERSION_CODE=0x091600\n");
        assert_eq!((v.kernel, v.dialect()), (0x08040b, Dialect::V84));
        let v = parse("DRBD_KERNEL_VERSION_CODE=0x000000\nDRBDADM_VERSION_CODE=0x091600\n");
        assert_eq!(v.dialect(), Dialect::V9);
        assert_eq!(parse("").dialect(), Dialect::V9);
    }

    #[test]
    fn kernel_version_text_decodes_the_code_that_drbd84_utils_print_alone() {
        // What drbdadm prints on Debian 12's kernel (DRBD 8.4.11, drbd-utils 9.22).
        let v84 = "DRBDADM_BUILDTAG=GIT-hash:\\ build\\ by\\ debian\nDRBDADM_API_VERSION=1\n\
                   DRBD_KERNEL_VERSION_CODE=0x08040b\nDRBDADM_VERSION_CODE=0x091600\n\
                   DRBDADM_VERSION=9.22.0\n";
        assert_eq!(kernel_version_text(v84).as_deref(), Some("8.4.11"));
        let v9 = "DRBD_KERNEL_VERSION_CODE=0x090200\nDRBD_KERNEL_VERSION=9.2.0\n";
        assert_eq!(kernel_version_text(v9).as_deref(), Some("9.2.0"));
        assert_eq!(
            kernel_version_text("DRBD_KERNEL_VERSION_CODE=0x000000\n"),
            None
        );
    }
}
