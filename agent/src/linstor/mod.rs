//! Recognising chains that LINSTOR built on this node, so they can be imported and adopted.
//!
//! LINSTOR's rules (read in LINBIT/linstor-server, satellite side):
//! * backing volumes are `<rd><suffix>_<vol:05>` in every provider (LVM, LVM-thin, ZFS); the
//!   FILE providers add `.img` in the pool's directory. The suffix is empty for the data
//!   volume of a plain resource, so these are blockstor's own names and the pools already
//!   find them;
//! * the LUKS layer opens `cryptsetup open DEV Linstor-Crypt-<rd><suffix>_<vol:05>`
//!   ([`crypt_name`]), giving cryptsetup a random per-volume key that the controller keeps
//!   encrypted under the master passphrase, so the master passphrase does not open the header;
//! * the DRBD layer writes `<config dir>/<rd>.res` (default `/var/lib/linstor.d`), with an
//!   `on <uname>` section per node (node-id, `volume N { disk; meta-disk internal; device minor
//!   M; }`), the peers' disks as a placeholder, and the addresses in `connection { host …
//!   address ipv4 A:PORT; }`; `net` holds `shared-secret`, `cram-hmac-alg` and the protocol.

pub mod res;

use std::path::{Path, PathBuf};

use blockstor_proto::ResourceName;

use crate::host::Host;

/// LINSTOR's dm-crypt name prefix.
pub const CRYPT_PREFIX: &str = "Linstor-Crypt-";

/// Where LINSTOR's satellite writes `.res` files unless configured otherwise.
pub const DEFAULT_RES_DIR: &str = "/var/lib/linstor.d";

/// The dm-crypt mapping LINSTOR opens for volume `vol` of `rd`:
/// `Linstor-Crypt-<rd>_<vol:05>`.
pub fn crypt_name(rd: &ResourceName, vol: u32) -> String {
    format!("{CRYPT_PREFIX}{}", blockstor_proto::volume_name(rd, vol))
}

/// `/dev/mapper/<crypt_name>`.
pub fn crypt_path(rd: &ResourceName, vol: u32) -> PathBuf {
    Path::new("/dev/mapper").join(crypt_name(rd, vol))
}

/// LINSTOR's `.res` file for `rd` in `dir`. `rd` is a validated [`ResourceName`], so it
/// cannot leave `dir`.
pub fn res_path(dir: &Path, rd: &ResourceName) -> PathBuf {
    dir.join(format!("{rd}.res"))
}

/// Reads and parses LINSTOR's `.res` for `rd`, if it exists. A file that exists but does not
/// parse is an error: it says LINSTOR manages the resource, and guessing would be unsafe.
pub fn read_res(
    host: &dyn Host,
    dir: &Path,
    rd: &ResourceName,
) -> Result<Option<(PathBuf, res::ResFile)>, String> {
    let path = res_path(dir, rd);
    let text = match host.read_to_string(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let parsed = res::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if parsed.resource != rd.as_str() {
        return Err(format!(
            "{} defines resource {:?}, not {rd}",
            path.display(),
            parsed.resource
        ));
    }
    Ok(Some((path, parsed)))
}

/// Whether LINSTOR left a mark of `rd` on this host: its `.res` file, or an open dm-crypt
/// mapping under its name for one of `vols`. Reads only file metadata.
pub fn has_marks(host: &dyn Host, dir: &Path, rd: &ResourceName, vols: &[u32]) -> bool {
    host.exists(&res_path(dir, rd)) || vols.iter().any(|v| host.exists(&crypt_path(rd, *v)))
}

/// This machine's host name (`uname -n`), which LINSTOR writes in `on` sections.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypt_names_follow_linstor_identifier_rule() {
        let rd: ResourceName = "pvc-1".parse().unwrap();
        assert_eq!(crypt_name(&rd, 0), "Linstor-Crypt-pvc-1_00000");
        assert_eq!(crypt_name(&rd, 12), "Linstor-Crypt-pvc-1_00012");
        assert_eq!(
            crypt_path(&rd, 1),
            Path::new("/dev/mapper/Linstor-Crypt-pvc-1_00001")
        );
    }

    #[test]
    fn res_path_stays_in_the_configured_directory() {
        let rd: ResourceName = "db".parse().unwrap();
        assert_eq!(
            res_path(Path::new("/var/lib/linstor.d"), &rd),
            Path::new("/var/lib/linstor.d/db.res")
        );
        // A hostile name never becomes a ResourceName, so it never becomes a path.
        assert!("../etc/passwd".parse::<ResourceName>().is_err());
        assert!("a/b".parse::<ResourceName>().is_err());
    }
}
