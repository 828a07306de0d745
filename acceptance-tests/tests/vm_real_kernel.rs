//! Issue #6, tier 4 (docs/design.md §8): the whole chain on Debian's real kernel, in three QEMU
//! VMs (TCG) reached over SSH by the real terraform binary and the built provider. This is where
//! dm-crypt, LVM-thin and DRBD 8.4 actually run: data is written, replicated, encrypted at
//! rest, grown in place, failed over, survives a power cut, and is gone after destroy. A DRBD
//! replica set also moves in place (vm1+vm2 -> vm1+vm3, then one disk and a diskless client)
//! with its data in use ([`replicas_move_in_place`], issue 18).
//!
//! One test boots one cluster of VMs and runs every scenario on it in turn, because booting
//! under TCG is the expensive part. Each step prints `::: vm phase <name>: ok in <s>s`.
//! Any failure message names the VMs' console logs, which stay on disk.
//!
//! Needs root, qemu-img, debootstrap, mke2fs, ssh, terraform 1.0.3 and the release binaries;
//! outside CI a missing one skips the test with a message, in CI it fails.

use std::time::Duration;

use acceptance_tests::host::{in_ci, is_root, which};
use acceptance_tests::vm::{phase, Cluster, Kit, POOL};
use acceptance_tests::{require, Requirement, Terraform, Workspace};

const AGENT_COMMAND: &str = "blockstor-agent stdio --config /etc/blockstor/agent.toml";
/// A plaintext marker written into the filesystem; it must never appear on the backing LV.
const MARKER: &str = "BLOCKSTOR-PLAINTEXT-MARKER-4f1c9e";
const PASSPHRASE: &str = "vm-test-passphrase-not-secret";

fn prerequisites_met() -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("needs root (debootstrap, QEMU disks)".into());
    }
    for tool in ["qemu-img", "debootstrap", "mke2fs", "ssh", "ssh-keygen"] {
        if which(tool).is_none() {
            missing.push(format!("needs {tool}: run scripts/install-deps.sh"));
        }
    }
    if !missing.is_empty() {
        let reason = missing.join("; ");
        if in_ci() {
            panic!("CI must provide everything the VM tests need, but: {reason}");
        }
        eprintln!("skipped: {reason}");
        return false;
    }
    require(&[
        Requirement::Terraform,
        Requirement::ProviderBinary,
        Requirement::AgentBinary,
    ])
}

fn provider_hcl() -> &'static str {
    r#"terraform {
  required_providers {
    blockstor = { source = "cozystack/blockstor" }
  }
}

variable "ssh_private_key" {
  type      = string
  sensitive = true
}
variable "known_hosts" {
  type = string
}
variable "port_vm1" {
  type = number
}
variable "port_vm2" {
  type = number
}
variable "port_vm3" {
  type = number
}
variable "agent_command" {
  type = string
}
variable "passphrase" {
  type      = string
  sensitive = true
}

provider "blockstor" {
  node "vm1" {
    address = "10.99.0.11"
    ssh {
      host          = "127.0.0.1"
      port          = var.port_vm1
      user          = "root"
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
  node "vm2" {
    address = "10.99.0.12"
    ssh {
      host          = "127.0.0.1"
      port          = var.port_vm2
      user          = "root"
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
  node "vm3" {
    address = "10.99.0.13"
    ssh {
      host          = "127.0.0.1"
      port          = var.port_vm3
      user          = "root"
      private_key   = var.ssh_private_key
      known_hosts   = var.known_hosts
      agent_command = var.agent_command
    }
  }
}
"#
}

/// One RD on vm1 and vm2, with a cheap KDF (argon2 takes ~20 s under TCG).
fn rd_hcl(rd: &str, stack: &[&str], size: &str) -> String {
    rd_hcl_on(rd, stack, size, r#"nodes = ["vm1", "vm2"]"#)
}

/// One RD placed by `placement` (HCL lines: `nodes`, `diskless_nodes`).
fn rd_hcl_on(rd: &str, stack: &[&str], size: &str, placement: &str) -> String {
    rd_hcl_with(rd, stack, size, placement, None)
}

/// [`rd_hcl_on`] with `props` (an HCL map) instead of the cheap-KDF ones LUKS gets.
fn rd_hcl_with(
    rd: &str,
    stack: &[&str],
    size: &str,
    placement: &str,
    props: Option<&str>,
) -> String {
    let stack = stack
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let luks = stack.contains("LUKS");
    format!(
        r#"
resource "blockstor_resource_definition" "rd" {{
  name           = "{rd}"
  resource_group = {{ name = "vm", place_count = 2, storage_pool = "{POOL}", layer_stack = [{stack}] }}
  {placement}
  {passphrase}
  props          = {props}
  volume {{
    number = 0
    size   = "{size}"
  }}
}}
"#,
        passphrase = if luks {
            "passphrase = var.passphrase"
        } else {
            ""
        },
        props = match props {
            Some(props) => props,
            None if luks => r#"{ "Luks/pbkdf" = "pbkdf2", "Luks/iter-time" = "1" }"#,
            None => "{}",
        },
    )
}

/// Terraform in a fresh workspace, wired to every VM over SSH.
fn terraform_for(cluster: &Cluster, ws: &Workspace) -> Terraform {
    let mut tf = ws.terraform();
    tf.timeout(Duration::from_secs(900))
        .var("ssh_private_key", cluster.client_private_key())
        .var("known_hosts", cluster.known_hosts())
        .var("port_vm1", cluster.vms[0].spec.ssh_port.to_string())
        .var("port_vm2", cluster.vms[1].spec.ssh_port.to_string())
        .var("port_vm3", cluster.vms[2].spec.ssh_port.to_string())
        .var("agent_command", AGENT_COMMAND)
        .var("passphrase", PASSPHRASE);
    tf
}

/// The agent's view of a node (stdio `node` request), as JSON.
fn node_info(cluster: &Cluster, i: usize) -> serde_json::Value {
    let out = cluster.ssh_ok(i, &format!("echo '{{\"op\":\"node\"}}' | {AGENT_COMMAND}"));
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("node info is not JSON ({e}): {out}"))
}

#[test]
fn three_vms_run_the_whole_chain_on_the_real_kernel() {
    if !prerequisites_met() {
        return;
    }
    let total = std::time::Instant::now();
    let kit = phase("image build (cached after the first run)", || {
        Kit::build().unwrap_or_else(|e| panic!("{e}"))
    });
    eprintln!("::: vm guest kernel {}", kit.kernel_version());
    let mut cluster = Cluster::create(&kit, "vm-chain", 3);
    eprintln!(
        "::: vm files (console logs) under {}",
        cluster.dir().display()
    );
    phase("boot three VMs", || cluster.boot());

    phase("agent over ssh on every VM", || {
        for i in 0..cluster.vms.len() {
            let name = &cluster.vms[i].spec.name;
            let info = node_info(&cluster, i);
            eprintln!("::: vm {name} node info: {info}");
            let versions = &info["versions"];
            let kernel = versions["drbd_kernel"].as_str().unwrap_or_default();
            assert!(
                kernel.starts_with("8.4"),
                "{name}: Debian's kernel carries DRBD 8.4, agent saw {versions}\n{}",
                cluster.console_hint()
            );
            let proc_drbd = cluster.ssh_ok(i, "head -n1 /proc/drbd");
            eprintln!("::: vm {name} /proc/drbd: {}", proc_drbd.trim());
            let pools = info["pools"].to_string();
            assert!(
                pools.contains(POOL) && pools.contains("lvm-thin"),
                "{name}: pool {POOL} (lvm-thin) missing: {pools}\n{}",
                cluster.console_hint()
            );
        }
    });

    chain(
        &cluster,
        "drbd+luks+storage",
        "vmdrbd",
        &["DRBD", "LUKS", "STORAGE"],
    );
    chain(&cluster, "luks+storage", "vmluks", &["LUKS", "STORAGE"]);
    chain(&cluster, "storage", "vmplain", &["STORAGE"]);
    replicas_move_in_place(&cluster);
    if std::env::var("BLOCKSTOR_VM_POWER_CUT").is_ok_and(|v| v == "0") {
        eprintln!("::: vm power cut scenario: left out (BLOCKSTOR_VM_POWER_CUT=0)");
    } else {
        power_cut_mid_apply(&mut cluster);
    }

    let rss: Vec<String> = cluster
        .vms
        .iter()
        .map(|vm| format!("{} {:?} MiB", vm.spec.name, vm.peak_rss_mib()))
        .collect();
    eprintln!(
        "::: vm tier done in {:.1}s; QEMU peak RSS: {}",
        total.elapsed().as_secs_f64(),
        rss.join(", ")
    );
}

/// One stack's scenario on both VMs: apply, write on vm1, (DRBD: both UpToDate), check the
/// backing LVs hold no plaintext (or, without LUKS, that they do: the check can see it), grow
/// in place and grow the filesystem, (DRBD: fail over to vm2 and read the same checksum),
/// destroy and check nothing remains.
fn chain(cluster: &Cluster, label: &str, rd: &str, stack: &[&str]) {
    let drbd = stack.contains(&"DRBD");
    let luks = stack.contains(&"LUKS");
    let res = format!("/var/lib/blockstor/drbd.d/{rd}.res");
    let ws = Workspace::new();
    let tf = terraform_for(cluster, &ws);
    let write = |size: &str| {
        ws.write(
            "main.tf",
            &format!("{}{}", provider_hcl(), rd_hcl(rd, stack, size)),
        );
    };
    write("64MiB");
    let hint = cluster.console_hint();
    phase(&format!("{label}: terraform init"), || {
        tf.init().assert_success();
    });
    let apply = phase(&format!("{label}: apply on vm1+vm2"), || tf.apply());
    assert!(apply.status.success(), "{apply}\n{hint}");

    let replicas = tf
        .state_resource("blockstor_resource_definition.rd")
        .expect("rd in state")["replicas"]
        .clone();
    eprintln!("::: vm {label} replicas: {replicas}");
    let device_of = |node: &str| {
        replicas
            .as_array()
            .and_then(|a| a.iter().find(|r| r["node"] == node))
            .and_then(|r| r["device_path"].as_str())
            .unwrap_or_else(|| panic!("no device_path for {node} in {replicas}"))
            .to_owned()
    };
    let (dev1, dev2) = (device_of("vm1"), device_of("vm2"));
    if drbd {
        for i in 0..2 {
            let head = cluster.ssh_ok(i, &format!("grep -m4 . {res}"));
            eprintln!(
                "::: vm {} rendered {res}: {}",
                cluster.vms[i].spec.name,
                head.replace('\n', " | ")
            );
        }
    }

    let primary = if drbd {
        format!("drbdadm -c {res} primary {rd}; ")
    } else {
        String::new()
    };
    let sum = phase(&format!("{label}: mkfs + write marker on vm1"), || {
        cluster
            .ssh_ok(
                0,
                &format!(
                    "set -e; {primary}mkfs.ext4 -q {dev1}; mkdir -p /mnt/{rd}; \
                 mount {dev1} /mnt/{rd}; \
                 for i in $(seq 1 2000); do echo {MARKER}; done > /mnt/{rd}/data; \
                 dd if=/dev/urandom of=/mnt/{rd}/random bs=1M count=8 status=none; sync; \
                 cat /mnt/{rd}/data /mnt/{rd}/random | sha256sum | cut -d' ' -f1"
                ),
            )
            .trim()
            .to_owned()
    });

    if drbd {
        phase(&format!("{label}: both replicas UpToDate"), || {
            wait_uptodate(cluster, &res, rd)
        });
    }

    let lvs: Vec<usize> = if drbd { vec![0, 1] } else { vec![0] };
    phase(
        &format!(
            "{label}: backing LV {}",
            if luks {
                "holds no plaintext (encrypted at rest)"
            } else {
                "holds the plaintext (no LUKS)"
            }
        ),
        || {
            for &i in &lvs {
                let out = cluster.ssh(i, &format!("grep -a -c {MARKER} /dev/vg0/{rd}_00000"));
                let count: u64 = out.stdout.trim().parse().unwrap_or(0);
                let name = &cluster.vms[i].spec.name;
                if luks {
                    assert_eq!(count, 0, "{name}: plaintext on the backing LV:\n{out}");
                    cluster.ssh_ok(i, &format!("cryptsetup isLuks /dev/vg0/{rd}_00000"));
                } else {
                    assert!(count > 0, "{name}: marker not found on the LV:\n{out}");
                }
            }
        },
    );

    phase(&format!("{label}: grow 64MiB -> 128MiB in place"), || {
        write("128MiB");
        let apply = tf.apply();
        assert!(apply.status.success(), "{apply}\n{hint}");
        let df = cluster.ssh_ok(
            0,
            &format!(
                "set -e; resize2fs {dev1} >/dev/null 2>&1; \
                 df --output=size -k /mnt/{rd} | tail -n1; \
                 cat /mnt/{rd}/data /mnt/{rd}/random | sha256sum | cut -d' ' -f1"
            ),
        );
        let mut lines = df.lines();
        let kib: u64 = lines.next().unwrap_or("").trim().parse().unwrap_or(0);
        // 64 MiB minus the LUKS header was under 64 MiB; 128 MiB gives well over 80.
        assert!(
            kib > 80 * 1024,
            "filesystem did not grow: {kib} KiB\n{hint}"
        );
        assert_eq!(
            lines.next().unwrap_or("").trim(),
            sum,
            "data changed by grow"
        );
        eprintln!("::: vm {label}: filesystem now {kib} KiB");
    });

    if drbd {
        phase(&format!("{label}: fail over to vm2, same checksum"), || {
            let got = checksum_after_failover(cluster, 0, 1, rd, &res, &dev2);
            assert_eq!(got, sum, "vm2 read different data\n{hint}");
        });
    } else {
        cluster.ssh_ok(0, &format!("umount /mnt/{rd}"));
        let _ = dev2;
    }

    phase(&format!("{label}: destroy leaves nothing"), || {
        let destroy = tf.destroy();
        assert!(destroy.status.success(), "{destroy}\n{hint}");
        for i in 0..2 {
            let left = cluster.ssh_ok(
                i,
                &format!(
                    "lvs --noheadings -o lv_name vg0 | grep -c {rd} || true; \
                     ls /dev/mapper | grep -c {rd} || true; \
                     grep -c '^ *[0-9]*: cs:' /proc/drbd || true; ls {res} 2>/dev/null | wc -l"
                ),
            );
            let counts: Vec<&str> = left.split_whitespace().collect();
            assert_eq!(
                counts,
                ["0", "0", "0", "0"],
                "{}: leftovers (LVs, mappers, DRBD minors, .res): {left}\n{hint}",
                cluster.vms[i].spec.name
            );
        }
    });
}

/// Holds vm1's `drbdadm resize` while `/run/blockstor-hold-resize` exists, after touching
/// `/run/blockstor-resize-reached`; every other call goes straight to the real drbdadm.
/// Installed in /usr/local/sbin, which comes before /usr/sbin on root's PATH over SSH, where
/// the agent runs. It only delays: the real `drbdadm resize` runs once the hold is released.
const RESIZE_HOLD: &str = r#"#!/bin/sh
case " $* " in
*" resize "*)
    if [ -e /run/blockstor-hold-resize ]; then
        touch /run/blockstor-resize-reached
        while [ -e /run/blockstor-hold-resize ]; do sleep 0.2; done
    fi ;;
esac
exec /usr/sbin/drbdadm "$@"
"#;

/// A power cut of vm2 in the middle of a grow, at a point the test controls: on both VMs the
/// LV and LUKS mapping have grown and `drbdadm resize` is about to run (held by
/// [`RESIZE_HOLD`]) when vm2's plug is pulled; once vm1's DRBD has noticed, vm1's resize
/// runs against a peer that is gone, and vm2's never ran: on the re-apply neither storage
/// grows any more, so only the agent's pending resize (or DRBD itself) can finish the grow.
/// On DRBD 8.4 the kernel also grows both replicas when they reconnect, so this scenario
/// passed once with the pending resize disabled too: it checks the cut converges with data
/// intact; the retry itself is pinned by the agent tests (engine/tests/drbd_resize.rs, process_crash.rs).
/// vm1 stays Primary, as a replica in use does: DRBD 8.4 resizes a connected resource only
/// while one replica is Primary.
/// Then vm2 boots, one re-apply must converge: both replicas UpToDate at the new size, and
/// the data written before the cut reads back on vm2 after failing over.
fn power_cut_mid_apply(cluster: &mut Cluster) {
    let (label, rd) = ("power cut", "vmcrash");
    let stack = ["DRBD", "LUKS", "STORAGE"];
    let res = format!("/var/lib/blockstor/drbd.d/{rd}.res");
    let ws = Workspace::new();
    let tf = terraform_for(cluster, &ws);
    let write = |size: &str| {
        ws.write(
            "main.tf",
            &format!("{}{}", provider_hcl(), rd_hcl(rd, &stack, size)),
        );
    };
    write("64MiB");
    let hint = cluster.console_hint();
    tf.init().assert_success();
    let apply = phase(&format!("{label}: apply on vm1+vm2"), || tf.apply());
    assert!(apply.status.success(), "{apply}\n{hint}");
    let replicas = tf
        .state_resource("blockstor_resource_definition.rd")
        .expect("rd in state")["replicas"]
        .clone();
    let dev = replicas[0]["device_path"]
        .as_str()
        .expect("device_path")
        .to_owned();
    let sysfs_size = format!("/sys/block/{}/size", dev.trim_start_matches("/dev/"));
    let sum = phase(
        &format!("{label}: write on vm1 (stays Primary), sync"),
        || {
            let sum = cluster.ssh_ok(
                0,
                &format!(
                "set -e; drbdadm -c {res} primary {rd}; mkfs.ext4 -q {dev}; mkdir -p /mnt/{rd}; \
                 mount {dev} /mnt/{rd}; dd if=/dev/urandom of=/mnt/{rd}/random bs=1M count=16 \
                 status=none; sync; sha256sum < /mnt/{rd}/random | cut -d' ' -f1; \
                 umount /mnt/{rd}"
            ),
            );
            wait_uptodate(cluster, &res, rd);
            sum.trim().to_owned()
        },
    );

    let interrupted = phase(
        &format!("{label}: grow, pull vm2's plug before either drbdadm resize"),
        || {
            for i in 0..2 {
                cluster.ssh_ok(
                    i,
                    &format!(
                        "set -e; cat > /usr/local/sbin/drbdadm <<'EOF'\n{RESIZE_HOLD}EOF\n\
                         chmod 0755 /usr/local/sbin/drbdadm; rm -f /run/blockstor-resize-reached; \
                         touch /run/blockstor-hold-resize"
                    ),
                );
            }
            write("128MiB");
            let runner = tf.clone();
            let apply = std::thread::spawn(move || runner.apply());
            let started = std::time::Instant::now();
            for i in 0..2 {
                while !cluster
                    .ssh(i, "test -e /run/blockstor-resize-reached")
                    .status
                    .success()
                {
                    assert!(
                        !apply.is_finished() && started.elapsed() < Duration::from_secs(300),
                        "{} never reached `drbdadm resize` (is /usr/local/sbin first on the \
                         agent's PATH?)\n{hint}",
                        cluster.vms[i].spec.name
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            let lvs: Vec<f64> =
                (0..2)
                    .map(|i| {
                        cluster.ssh_ok(
                        i,
                        &format!("lvs --noheadings --units k --nosuffix -o lv_size vg0/{rd}_00000"),
                    )
                    .trim()
                    .parse()
                    .unwrap_or(0.0)
                    })
                    .collect();
            eprintln!(
                "::: vm {label}: both VMs hold their drbdadm resize {:.1}s into the apply, LVs \
                 {lvs:?} KiB; pulling vm2's plug",
                started.elapsed().as_secs_f64(),
            );
            assert!(
                lvs.iter().all(|&kib| kib > 65536.0),
                "an LV has not grown before its resize: {lvs:?}"
            );
            cluster.vms[1].power_off();
            // vm1's resize then runs against a peer DRBD knows is gone (ping timeout).
            let cut = std::time::Instant::now();
            loop {
                let cstate = cluster.ssh_ok(0, &format!("drbdadm -c {res} cstate {rd}"));
                if cstate.trim() != "Connected" {
                    eprintln!(
                        "::: vm {label}: vm1 sees {} {:.1}s after the cut; releasing its resize",
                        cstate.trim(),
                        cut.elapsed().as_secs_f64()
                    );
                    break;
                }
                assert!(
                    cut.elapsed() < Duration::from_secs(120),
                    "vm1 still Connected 120 s after vm2's plug was pulled\n{hint}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            cluster.ssh_ok(0, "rm -f /run/blockstor-hold-resize");
            let out = apply.join().expect("apply thread");
            cluster.ssh_ok(
                0,
                "rm -f /usr/local/sbin/drbdadm /run/blockstor-resize-reached",
            );
            out
        },
    );
    eprintln!(
        "::: vm {label}: the cut apply exited {} ({}); vm1 {}",
        interrupted.code(),
        interrupted
            .combined()
            .lines()
            .find(|l| l.contains("Error"))
            .unwrap_or("no error line"),
        cluster
            .ssh(0, "cat /proc/drbd | tail -n2 | tr -s ' \\n' ' '")
            .stdout
    );
    phase(&format!("{label}: boot vm2 again"), || {
        cluster.crash_and_reboot(1)
    });
    let hint = cluster.console_hint();
    cluster.ssh_ok(1, "rm -f /usr/local/sbin/drbdadm");
    phase(&format!("{label}: one re-apply converges"), || {
        let apply = tf.apply();
        assert!(apply.status.success(), "{apply}\n{hint}");
        wait_uptodate(cluster, &res, rd);
        // Both replicas at the new size (sectors; 64 MiB is 131072) and nothing left to sync.
        let started = std::time::Instant::now();
        loop {
            let sizes: Vec<u64> = (0..2)
                .map(|i| {
                    cluster
                        .ssh(i, &format!("cat {sysfs_size}"))
                        .stdout
                        .trim()
                        .parse()
                        .unwrap_or(0)
                })
                .collect();
            let proc_drbd = cluster.ssh_ok(0, "cat /proc/drbd");
            let synced = proc_drbd.contains("ds:UpToDate/UpToDate") && proc_drbd.contains("oos:0");
            if synced && sizes.iter().all(|&s| s > 131072) {
                eprintln!("::: vm {label}: both replicas {sizes:?} sectors, in sync");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "replicas not grown/in sync after the re-apply: sizes {sizes:?} sectors\n\
                 {proc_drbd}\nvm1 dmesg:\n{}\nvm2 dmesg:\n{}\n{hint}",
                cluster.ssh(0, "dmesg | grep -i drbd | tail -n 25").stdout,
                cluster.ssh(1, "dmesg | grep -i drbd | tail -n 25").stdout,
            );
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    phase(
        &format!("{label}: data intact on vm2 after fail-over"),
        || {
            cluster.ssh_ok(0, &format!("drbdadm -c {res} secondary {rd}"));
            let got = cluster.ssh_ok(
                1,
                &format!(
                    "set -e; drbdadm -c {res} primary {rd}; mkdir -p /mnt/{rd}; \
                 mount {dev} /mnt/{rd}; sha256sum < /mnt/{rd}/random | cut -d' ' -f1; \
                 blockdev --getsize64 {dev}; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"
                ),
            );
            let mut lines = got.lines();
            assert_eq!(
                lines.next().unwrap_or("").trim(),
                sum,
                "data changed across the power cut\n{hint}"
            );
            let bytes: u64 = lines.next().unwrap_or("").trim().parse().unwrap_or(0);
            eprintln!("::: vm {label}: vm2 {dev} is {bytes} bytes after re-apply");
            assert!(
                bytes > 64 << 20,
                "vm2 did not grow after re-apply: {got}\n{hint}"
            );
        },
    );
    phase(&format!("{label}: destroy"), || {
        let destroy = tf.destroy();
        assert!(destroy.status.success(), "{destroy}\n{hint}");
    });
}

/// Waits until vm1 sees both disks UpToDate (DRBD 8.4 `dstate` prints `UpToDate/UpToDate`).
fn wait_uptodate(cluster: &Cluster, res: &str, rd: &str) {
    wait_dstate(
        cluster,
        0,
        res,
        rd,
        "UpToDate/UpToDate",
        Duration::from_secs(600),
    );
}

/// Waits until VM `i` (0 is vm1) sees `want` as the DRBD 8.4 `dstate` (local/peer) of `rd`,
/// for at most `limit`; prints its /proc/drbd once there.
fn wait_dstate(cluster: &Cluster, i: usize, res: &str, rd: &str, want: &str, limit: Duration) {
    let started = std::time::Instant::now();
    loop {
        let state = cluster.ssh_ok(i, &format!("drbdadm -c {res} dstate {rd}"));
        if state.trim() == want {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "{}: dstate {} after {limit:?}, want {want}; /proc/drbd: {}\n{}",
            cluster.vms[i].spec.name,
            state.trim(),
            cluster.ssh(i, "cat /proc/drbd").stdout,
            cluster.console_hint()
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    eprintln!("{}", cluster.ssh_ok(i, "cat /proc/drbd"));
}

/// A fixed resync rate for the move's definition: DRBD 8.4's dynamic controller (its default)
/// synced 64 MiB under TCG in 15 s in most runs and at c-min-rate (250 KiB/s, 4+ minutes) in
/// others.
const RESYNC_PROPS: &str =
    r#"{ "DrbdOptions/Disk/c-plan-ahead" = "0", "DrbdOptions/Disk/resync-rate" = "40M" }"#;

/// Issue 18 on the real kernel: a DRBD+STORAGE replica set changes in place while its data is
/// in use, driven by `terraform apply` alone.
///
/// 1. On vm1+vm2 (a fixed resync rate, [`RESYNC_PROPS`]); once both are UpToDate, vm1 Primary
///    with an ext4 holding a marker file and 8 MiB of random data (checksum kept). vm1 stays
///    Primary and mounted through the move.
/// 2. `nodes` vm1+vm2 -> vm1+vm3: the plan is one update in place (nothing replaced), one
///    apply. DRBD 8.4 holds two replicas, so the provider removes vm2 first (once vm1 is
///    UpToDate), then vm1 re-renders to vm3 and vm3 joins as sync target: redundancy is one
///    copy until vm3 is UpToDate (bounded wait). vm2 then holds nothing: no `.res`, no LV, no
///    DRBD minor or resource in the kernel.
/// 3. Fail over vm1 -> vm3: the checksum reads back on vm3.
/// 4. Grow 64 -> 128 MiB after the move, vm3 Primary (8.4 resizes only with a Primary): the
///    filesystem grows on vm3, data intact, vm1's DRBD device grew too.
/// 5. Diskless (when the provider has `diskless_nodes`): `nodes = ["vm3"]`,
///    `diskless_nodes = ["vm2"]`. DRBD 8.4 allows two nodes per resource, a diskless client
///    included, so a third node cannot join diskless beside two disks: the only 8.4 shape is
///    one disk and one client, i.e. vm1 leaves while vm2 joins diskless.
///    vm2 then holds no LV, sees `Diskless/UpToDate`, and after vm3 steps down reads the
///    checksum as Primary through the network.
/// 6. Destroy leaves nothing on any VM.
fn replicas_move_in_place(cluster: &Cluster) {
    let (label, rd) = ("move", "vmmove");
    let stack = ["DRBD", "STORAGE"];
    let res = format!("/var/lib/blockstor/drbd.d/{rd}.res");
    let ws = Workspace::new();
    let tf = terraform_for(cluster, &ws);
    let write = |size: &str, placement: &str| {
        ws.write(
            "main.tf",
            &format!(
                "{}{}",
                provider_hcl(),
                rd_hcl_with(rd, &stack, size, placement, Some(RESYNC_PROPS))
            ),
        );
    };
    write("64MiB", r#"nodes = ["vm1", "vm2"]"#);
    let hint = cluster.console_hint();
    tf.init().assert_success();
    let apply = phase(&format!("{label}: apply on vm1+vm2"), || tf.apply());
    assert!(apply.status.success(), "{apply}\n{hint}");
    let dev1 = device(&replicas(&tf), "vm1");
    let files = format!("/mnt/{rd}/data /mnt/{rd}/random");
    // The initial sync first: writes during it would throttle it to c-min-rate.
    phase(&format!("{label}: initial sync, both UpToDate"), || {
        wait_uptodate(cluster, &res, rd)
    });
    let sum = phase(
        &format!("{label}: write on vm1 (stays Primary and mounted)"),
        || {
            let sum = cluster.ssh_ok(
                0,
                &format!(
                    "set -e; drbdadm -c {res} primary {rd}; mkfs.ext4 -q {dev1}; \
                     mkdir -p /mnt/{rd}; mount {dev1} /mnt/{rd}; \
                     for i in $(seq 1 2000); do echo {MARKER}; done > /mnt/{rd}/data; \
                     dd if=/dev/urandom of=/mnt/{rd}/random bs=1M count=8 status=none; sync; \
                     cat {files} | sha256sum | cut -d' ' -f1"
                ),
            );
            // Protocol C: the write is on vm2 once it returned, nothing left to sync.
            wait_uptodate(cluster, &res, rd);
            sum.trim().to_owned()
        },
    );
    // The probes that must find nothing on vm2 after the move find its replica now.
    let before = holdings(cluster, 1, rd, &res);
    assert!(
        before.len() == 5 && before.iter().all(|c| c != "0"),
        "vm2 before the move: every probe should see its replica (LVs, mappers, .res, DRBD \
         minors, kernel resources): {before:?}\n{hint}"
    );

    write("64MiB", r#"nodes = ["vm1", "vm3"]"#);
    phase(
        &format!("{label}: plan vm1+vm2 -> vm1+vm3 is an update in place, warns of one copy"),
        || {
            let plan = tf.plan();
            assert_in_place(&plan, &hint);
            // DRBD 8.4 removes vm2 before vm3 joins: the plan says the data has one copy.
            let warned = plan.warnings().iter().any(|w| {
                w.contains("Redundancy drops to one copy") && w.contains("vm2") && w.contains("vm3")
            });
            assert!(
                warned,
                "the plan of an 8.4 move should warn that redundancy drops to one copy, \
                 naming vm2 and vm3:\n{plan}"
            );
        },
    );
    let apply = phase(
        &format!("{label}: apply vm1+vm2 -> vm1+vm3 (8.4: vm2 leaves, then vm3 joins)"),
        || tf.apply(),
    );
    assert!(apply.status.success(), "{apply}\n{hint}");
    eprintln!(
        "::: vm {label}: the move's apply warned: {:?}",
        apply.warnings()
    );
    let devs = replicas(&tf);
    assert_eq!(
        devs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["vm1", "vm3"],
        "replicas in state after the move: {devs:?}"
    );
    let dev3 = device(&devs, "vm3");
    phase(&format!("{label}: vm3 UpToDate, vm2 holds nothing"), || {
        for i in [0, 2] {
            assert_eq!(
                res_hosts(cluster, i, &res),
                ["vm1", "vm3"],
                "{}: {res} hosts after the move\n{hint}",
                cluster.vms[i].spec.name
            );
        }
        wait_dstate(
            cluster,
            2,
            &res,
            rd,
            "UpToDate/UpToDate",
            Duration::from_secs(300),
        );
        assert_nothing_left(cluster, 1, rd, &res);
        // vm1 served the data all along: still Primary with the filesystem mounted.
        let role = cluster.ssh_ok(
            0,
            &format!("drbdadm -c {res} role {rd}; mountpoint -q /mnt/{rd} && echo mounted"),
        );
        assert_eq!(
            role.split_whitespace().collect::<Vec<_>>(),
            ["Primary/Secondary", "mounted"],
            "vm1 after the move\n{hint}"
        );
    });

    phase(
        &format!("{label}: fail over vm1 -> vm3, same checksum"),
        || {
            cluster.ssh_ok(
                0,
                &format!("set -e; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"),
            );
            let got = cluster.ssh_ok(
                2,
                &format!(
                    "set -e; drbdadm -c {res} primary {rd}; mkdir -p /mnt/{rd}; \
                 mount {dev3} /mnt/{rd}; cat {files} | sha256sum | cut -d' ' -f1"
                ),
            );
            assert_eq!(got.trim(), sum, "vm3 read different data\n{hint}");
        },
    );

    phase(
        &format!("{label}: grow 64MiB -> 128MiB after the move (vm3 Primary)"),
        || {
            write("128MiB", r#"nodes = ["vm1", "vm3"]"#);
            let apply = tf.apply();
            assert!(apply.status.success(), "{apply}\n{hint}");
            let out = cluster.ssh_ok(
                2,
                &format!(
                    "set -e; resize2fs {dev3} >/dev/null 2>&1; \
                     df --output=size -k /mnt/{rd} | tail -n1; \
                     cat {files} | sha256sum | cut -d' ' -f1"
                ),
            );
            let mut lines = out.lines();
            let kib: u64 = lines.next().unwrap_or("").trim().parse().unwrap_or(0);
            assert!(
                kib > 80 * 1024,
                "filesystem on vm3 did not grow: {kib} KiB\n{hint}"
            );
            assert_eq!(
                lines.next().unwrap_or("").trim(),
                sum,
                "data changed by grow"
            );
            // 64 MiB is 131072 sectors; vm1's replica grew with vm3's.
            let sysfs = format!("/sys/block/{}/size", dev1.trim_start_matches("/dev/"));
            let sectors: u64 = cluster
                .ssh_ok(0, &format!("cat {sysfs}"))
                .trim()
                .parse()
                .unwrap_or(0);
            assert!(
                sectors > 131072,
                "vm1's {dev1} did not grow: {sectors} sectors\n{hint}"
            );
            eprintln!("::: vm {label}: vm3 filesystem now {kib} KiB, vm1 {sectors} sectors");
        },
    );

    // drbdadm-84 knows no diskless volume (`disk none;` made `adjust` attach "none"), so the
    // agent brings an 8.4 client up as new-resource, new-minor, connect; this step shows it.
    if provider_has_attribute(&tf, "diskless_nodes") {
        diskless_client_reads(cluster, &tf, &write, rd, &res, &sum);
    } else {
        eprintln!("::: vm {label}: diskless step left out: this provider has no diskless_nodes");
        cluster.ssh_ok(
            2,
            &format!("set -e; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"),
        );
    }

    phase(
        &format!("{label}: destroy leaves nothing on any VM"),
        || {
            let destroy = tf.destroy();
            assert!(destroy.status.success(), "{destroy}\n{hint}");
            for i in 0..cluster.vms.len() {
                assert_nothing_left(cluster, i, rd, &res);
            }
        },
    );
}

/// Step 5 of [`replicas_move_in_place`]: from vm1+vm3 (vm3 Primary, mounted) to one disk on
/// vm3 and a diskless client on vm2, which then reads the data as Primary over the network.
fn diskless_client_reads(
    cluster: &Cluster,
    tf: &Terraform,
    write: &dyn Fn(&str, &str),
    rd: &str,
    res: &str,
    sum: &str,
) {
    let label = "move";
    let hint = cluster.console_hint();
    write("128MiB", "nodes = [\"vm3\"]\n  diskless_nodes = [\"vm2\"]");
    phase(
        &format!("{label}: plan vm1+vm3 -> vm3 + diskless vm2 is an update in place"),
        || assert_in_place(&tf.plan(), &hint),
    );
    let apply = phase(
        &format!("{label}: apply vm3 + diskless vm2 (vm1 leaves, vm2 joins diskless)"),
        || tf.apply(),
    );
    assert!(apply.status.success(), "{apply}\n{hint}");
    eprintln!(
        "::: vm {label}: the diskless change's apply warned: {:?}",
        apply.warnings()
    );
    let devs = replicas(tf);
    assert_eq!(
        devs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["vm2", "vm3"],
        "replicas in state after the diskless change: {devs:?}"
    );
    assert!(
        devs["vm2"]["diskless"] == true && devs["vm3"]["diskless"] == false,
        "state: vm2 should be the diskless one: {devs:?}"
    );
    let dev2 = device(&devs, "vm2");
    phase(
        &format!("{label}: vm2 diskless and connected, vm1 holds nothing"),
        || {
            wait_dstate(
                cluster,
                1,
                res,
                rd,
                "Diskless/UpToDate",
                Duration::from_secs(120),
            );
            let lvs = cluster.ssh_ok(
                1,
                &format!("lvs --noheadings -o lv_name vg0 | grep -c {rd} || true"),
            );
            assert_eq!(lvs.trim(), "0", "vm2 is diskless but holds an LV\n{hint}");
            assert_nothing_left(cluster, 0, rd, res);
        },
    );
    phase(
        &format!("{label}: vm3 steps down, diskless vm2 Primary reads the checksum"),
        || {
            let got = checksum_after_failover(cluster, 2, 1, rd, res, &dev2);
            assert_eq!(got, sum, "diskless vm2 read different data\n{hint}");
        },
    );
}

/// Fails over from VM `from` (unmount, Secondary) to VM `to` (Primary, mount `dev`), returns
/// the checksum of `data` and `random` read there, and leaves `to` Secondary again.
fn checksum_after_failover(
    cluster: &Cluster,
    from: usize,
    to: usize,
    rd: &str,
    res: &str,
    dev: &str,
) -> String {
    cluster.ssh_ok(
        from,
        &format!("set -e; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"),
    );
    cluster
        .ssh_ok(
            to,
            &format!(
                "set -e; drbdadm -c {res} primary {rd}; mkdir -p /mnt/{rd}; \
                 mount {dev} /mnt/{rd}; cat /mnt/{rd}/data /mnt/{rd}/random | sha256sum \
                 | cut -d' ' -f1; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"
            ),
        )
        .trim()
        .to_owned()
}

/// The state's replicas of `blockstor_resource_definition.rd`, by node.
fn replicas(tf: &Terraform) -> std::collections::BTreeMap<String, serde_json::Value> {
    let replicas = tf
        .state_resource("blockstor_resource_definition.rd")
        .expect("rd in state")["replicas"]
        .clone();
    eprintln!("::: vm replicas: {replicas}");
    replicas
        .as_array()
        .unwrap_or_else(|| panic!("replicas is not a list: {replicas}"))
        .iter()
        .map(|r| {
            (
                r["node"].as_str().expect("replica node").to_owned(),
                r.clone(),
            )
        })
        .collect()
}

/// The `device_path` of `node`'s replica in `replicas`.
fn device(replicas: &std::collections::BTreeMap<String, serde_json::Value>, node: &str) -> String {
    replicas
        .get(node)
        .and_then(|r| r["device_path"].as_str())
        .unwrap_or_else(|| panic!("no device_path for {node} in {replicas:?}"))
        .to_owned()
}

/// A plan (`-detailed-exitcode`) that changes the definition in place: one update, nothing
/// added, destroyed or replaced.
fn assert_in_place(plan: &acceptance_tests::Outcome, hint: &str) {
    let text = plan.combined();
    assert!(
        plan.code() == 2
            && text.contains("will be updated in-place")
            && text.contains("0 to add, 1 to change, 0 to destroy")
            && !text.contains("must be replaced"),
        "expected one update in place, nothing replaced:\n{plan}\n{hint}"
    );
}

/// The hosts (`on "NAME" {`) of the `.res` at `res` on VM `i`, sorted.
fn res_hosts(cluster: &Cluster, i: usize, res: &str) -> Vec<String> {
    let out = cluster.ssh_ok(
        i,
        &format!("awk '$1 == \"on\" {{ gsub(/\"/, \"\", $2); print $2 }}' {res}"),
    );
    let mut hosts: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
    hosts.sort();
    hosts
}

/// What VM `i` holds of `rd`, as counts: LVs, device-mapper entries, `.res` files, DRBD minors
/// in /proc/drbd (no other resource exists while the move runs) and resources in the kernel
/// (`drbdsetup show`).
fn holdings(cluster: &Cluster, i: usize, rd: &str, res: &str) -> Vec<String> {
    let out = cluster.ssh_ok(
        i,
        &format!(
            "lvs --noheadings -o lv_name vg0 | grep -c {rd} || true; \
             ls /dev/mapper | grep -c {rd} || true; \
             ls {res} 2>/dev/null | wc -l; \
             grep -c '^ *[0-9]*: cs:' /proc/drbd || true; \
             drbdsetup show 2>/dev/null | grep -c '^resource {rd} ' || true"
        ),
    );
    out.split_whitespace().map(str::to_owned).collect()
}

/// VM `i` holds nothing of `rd` (see [`holdings`]).
fn assert_nothing_left(cluster: &Cluster, i: usize, rd: &str, res: &str) {
    let left = holdings(cluster, i, rd, res);
    assert_eq!(
        left,
        ["0", "0", "0", "0", "0"],
        "{}: leftovers of {rd} (LVs, mappers, .res, DRBD minors, kernel resources)\n\
         /proc/drbd: {}\n{}",
        cluster.vms[i].spec.name,
        cluster.ssh(i, "cat /proc/drbd").stdout,
        cluster.console_hint()
    );
}

/// Whether the built provider's `blockstor_resource_definition` has attribute `name`
/// (`terraform providers schema -json`).
fn provider_has_attribute(tf: &Terraform, name: &str) -> bool {
    let out = tf.run(&["providers", "schema", "-json"]);
    out.assert_success();
    let schema: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("providers schema is not JSON ({e}):\n{out}"));
    schema["provider_schemas"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .any(|p| {
            !p["resource_schemas"]["blockstor_resource_definition"]["block"]["attributes"][name]
                .is_null()
        })
}
