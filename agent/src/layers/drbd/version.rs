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
}
