//! Issue #6, tier 4 (docs/design.md §8): the whole chain on Debian's real kernel, in three QEMU
//! VMs (TCG) reached over SSH by the real terraform binary and the built provider. This is where
//! dm-crypt, LVM-thin and DRBD 8.4 actually run: data is written, replicated, encrypted at
//! rest, grown in place, failed over, survives a power cut, and is gone after destroy.
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
        props = if luks {
            r#"{ "Luks/pbkdf" = "pbkdf2", "Luks/iter-time" = "1" }"#
        } else {
            "{}"
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
            cluster.ssh_ok(
                0,
                &format!("set -e; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"),
            );
            let got = cluster.ssh_ok(
                1,
                &format!(
                    "set -e; drbdadm -c {res} primary {rd}; mkdir -p /mnt/{rd}; \
                     mount {dev2} /mnt/{rd}; cat /mnt/{rd}/data /mnt/{rd}/random | sha256sum \
                     | cut -d' ' -f1; umount /mnt/{rd}; drbdadm -c {res} secondary {rd}"
                ),
            );
            assert_eq!(got.trim(), sum, "vm2 read different data\n{hint}");
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
    let started = std::time::Instant::now();
    loop {
        let state = cluster.ssh_ok(0, &format!("drbdadm -c {res} dstate {rd}"));
        if state.trim() == "UpToDate/UpToDate" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "replicas not in sync: {state}; /proc/drbd: {}\n{}",
            cluster.ssh(0, "cat /proc/drbd").stdout,
            cluster.console_hint()
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    eprintln!("{}", cluster.ssh_ok(0, "cat /proc/drbd"));
}
