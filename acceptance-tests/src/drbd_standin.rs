//! A stand-in for the DRBD kernel module, for acceptance tests on a host whose kernel has none
//! (this one: no `/proc/drbd`, no modules to load). Without it every apply of a `["DRBD",…]`
//! definition stops at `drbdadm adjust`, so nothing after a create can be shown on loopback.
//!
//! The agent runs in a private mount namespace (`unshare --mount`) where a tmpfs over
//! `/sys/module` holds `drbd/version` (so the agent sees a loaded DRBD 9 module), with
//! `drbdadm`, `drbdsetup` and `drbdmeta` stand-ins first on its `PATH`. They keep a resource's
//! "up" state in files, answer every status query with "all UpToDate and Connected", and log
//! every call to `calls.log`, which tests read. What stays real: the `.res` the agent writes
//! must pass the real `drbdadm -c FILE dump` on every `up`/`adjust` (and tests run it again),
//! and everything below DRBD (loop files, loop devices, dm-crypt) is the real thing. What
//! DRBD itself does with the data is shown by the VM tier (tests/vm_real_kernel.rs) instead.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The DRBD version the stand-in module reports.
pub const KERNEL_VERSION: &str = "9.2.4";

/// `drbdadm`: `-c FILE` and the sub-command are what it looks at.
const DRBDADM: &str = r#"#!/bin/sh
# blockstor acceptance tests: a stand-in for drbdadm on a kernel without the drbd module.
state=${BLOCKSTOR_STANDIN_STATE:?}
mkdir -p "$state/up" "$state/primary"
echo "drbdadm $*" >>"$state/calls.log"
real=$(PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin command -v drbdadm)
conf=/etc/drbd.conf cmd= rd=
while [ $# -gt 0 ]; do
    case $1 in
    -c) conf=$2; shift 2 ;;
    --version) cmd=version; shift ;;
    -*) shift ;;
    *) if [ -z "$cmd" ]; then cmd=$1; elif [ -z "$rd" ]; then rd=${1%%/*}; fi; shift ;;
    esac
done
case $cmd in
version)
    printf '%s\n' DRBDADM_BUILDTAG=stand-in DRBDADM_API_VERSION=2 \
        DRBD_KERNEL_VERSION_CODE=0x090204 DRBD_KERNEL_VERSION=9.2.4 \
        DRBDADM_VERSION_CODE=0x091c00 DRBDADM_VERSION=9.28.0 ;;
dump | sh-*) exec "$real" -c "$conf" "$cmd" ${rd:+"$rd"} ;;
up | adjust)
    # The same check the tests make (every host of the stand-in shares this machine's IPs, so
    # not as the node itself: drbdadm would look for the node's address on this host).
    env -u __DRBD_NODE__ "$real" -c "$conf" dump >/dev/null || exit 10
    touch "$state/up/$rd" ;;
down) rm -f "$state/up/$rd" "$state/primary/$rd" ;;
role)
    [ -e "$state/up/$rd" ] || { echo "$rd: No such resource" >&2; exit 10; }
    if [ -e "$state/primary/$rd" ]; then echo Primary; else echo Secondary; fi ;;
primary) [ -e "$state/up/$rd" ] && touch "$state/primary/$rd" ;;
secondary) rm -f "$state/primary/$rd" ;;
create-md | resize | connect | disconnect | attach | detach | new-current-uuid) ;;
dstate) [ -e "$state/up/$rd" ] && echo UpToDate/UpToDate ;;
cstate) [ -e "$state/up/$rd" ] && echo Connected ;;
*) echo "drbd stand-in: drbdadm $cmd is not stood in for" >&2; exit 20 ;;
esac
"#;

/// `drbdsetup status --json RD`: the peers are the `on "…"` sections of the agent's `.res`.
const DRBDSETUP: &str = r#"#!/bin/sh
# blockstor acceptance tests: a stand-in for drbdsetup on a kernel without the drbd module.
state=${BLOCKSTOR_STANDIN_STATE:?}
echo "drbdsetup $*" >>"$state/calls.log"
[ "$1" = status ] || { echo "drbd stand-in: drbdsetup $1 is not stood in for" >&2; exit 20; }
for rd; do :; done
[ -e "$state/up/$rd" ] || { echo "$rd: No such resource" >&2; exit 10; }
role=Secondary
[ -e "$state/primary/$rd" ] && role=Primary
awk -v me="$BLOCKSTOR_STANDIN_NODE" -v rd="$rd" -v role="$role" '
    /^    on "/ { split($0, q, "\""); name = q[2]; order[++n] = name; next }
    /^    }/ { name = ""; next }
    name != "" && /node-id/ { id[name] = $2 + 0 }
    name != "" && /volume [0-9]+/ { if (name == me) vols[++nv] = $2 + 0 }
    name != "" && /device minor/ { if (name == me) minor[nv] = $3 + 0 }
    name != "" && /disk none;/ { diskless[name] = 1 }
    END {
        disk = diskless[me] ? "Diskless" : "UpToDate"
        printf "[{\"name\":\"%s\",\"node-id\":%d,\"role\":\"%s\",\"suspended\":false,\"devices\":[", rd, id[me], role
        for (v = 1; v <= nv; v++)
            printf "%s{\"volume\":%d,\"minor\":%d,\"disk-state\":\"%s\",\"client\":%s}", (v > 1 ? "," : ""), vols[v], minor[v], disk, (diskless[me] ? "true" : "false")
        printf "],\"connections\":["
        sep = ""
        for (i = 1; i <= n; i++) {
            p = order[i]
            if (p == me) continue
            pdisk = diskless[p] ? "Diskless" : "UpToDate"
            printf "%s{\"peer-node-id\":%d,\"name\":\"%s\",\"connection-state\":\"Connected\",\"peer-role\":\"Secondary\",\"peer_devices\":[", sep, id[p], p
            for (v = 1; v <= nv; v++)
                printf "%s{\"volume\":%d,\"replication-state\":\"Established\",\"peer-disk-state\":\"%s\",\"peer-client\":%s,\"percent-in-sync\":100.00}", (v > 1 ? "," : ""), vols[v], pdisk, (diskless[p] ? "true" : "false")
            printf "]}"
            sep = ","
        }
        print "]}]"
    }' "${BLOCKSTOR_STANDIN_RES_DIR:?}/$rd.res"
"#;

/// `drbdmeta … dump-md`: never any metadata, so the agent runs `create-md` when it brings a
/// replica up (the stand-in `drbdadm create-md` does nothing).
const DRBDMETA: &str = r#"#!/bin/sh
# blockstor acceptance tests: a stand-in for drbdmeta on a kernel without the drbd module.
echo "drbdmeta $*" >>"${BLOCKSTOR_STANDIN_STATE:?}/calls.log"
echo "No valid meta data found" >&2
exit 255
"#;

/// Mounts the stand-in module in the (private) mount namespace, then runs the agent.
const LAUNCH: &str = r#"#!/bin/sh
# blockstor acceptance tests: runs "$@" with a stand-in DRBD module (private mount namespace).
set -e
mount -t tmpfs -o mode=0755 blockstor-drbd-standin /sys/module
mkdir /sys/module/drbd
echo "$BLOCKSTOR_STANDIN_VERSION" >/sys/module/drbd/version
PATH="$BLOCKSTOR_STANDIN_BIN:$PATH"
export PATH
exec "$@"
"#;

/// One node's stand-in: its scripts, its state and its call log, under one directory.
#[derive(Debug, Clone)]
pub struct DrbdStandIn {
    dir: PathBuf,
}

impl DrbdStandIn {
    /// Writes the stand-in's scripts under `dir` (created if needed).
    pub fn install(dir: &Path) -> DrbdStandIn {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("create stand-in bin dir");
        std::fs::create_dir_all(dir.join("state")).expect("create stand-in state dir");
        for (name, text) in [
            ("drbdadm", DRBDADM),
            ("drbdsetup", DRBDSETUP),
            ("drbdmeta", DRBDMETA),
            ("launch", LAUNCH),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, text).expect("write stand-in script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod stand-in script");
        }
        DrbdStandIn {
            dir: dir.to_path_buf(),
        }
    }

    /// The command that runs `program` (the agent) for node `node`, whose `.res` files go to
    /// `res_dir`, with this stand-in in place of the kernel module.
    pub fn command(&self, program: &Path, node: &str, res_dir: &Path) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--"])
            .arg(self.dir.join("bin/launch"))
            .arg(program)
            .env("BLOCKSTOR_STANDIN_BIN", self.dir.join("bin"))
            .env("BLOCKSTOR_STANDIN_STATE", self.dir.join("state"))
            .env("BLOCKSTOR_STANDIN_VERSION", KERNEL_VERSION)
            .env("BLOCKSTOR_STANDIN_NODE", node)
            .env("BLOCKSTOR_STANDIN_RES_DIR", res_dir);
        cmd
    }

    /// Every stand-in call so far, one `drbdadm …`/`drbdsetup …`/`drbdmeta …` line each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("state/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Forgets the calls so far (to look at one apply's calls only).
    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.dir.join("state/calls.log"));
    }

    /// Whether resource `rd` is up on this node, as far as the stand-in knows.
    pub fn is_up(&self, rd: &str) -> bool {
        self.dir.join("state/up").join(rd).exists()
    }
}
