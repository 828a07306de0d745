//! One contract, every backend: observe finds nothing → create with the exact steps; observe
//! finds it → nothing to create; grow; remove; remove of a missing volume runs nothing. The
//! recording runner plays each tool's answers and the fake host stands in for the steps the
//! agent does itself, so no root, LVM or ZFS is needed.

use std::collections::BTreeMap;

use blockstor_proto::LayerStack;

use super::*;
use crate::config::{BackendConfig, PoolConfig};
use crate::host::FakeHost;
use crate::runner::{Output, RecordingRunner};
use crate::step::StepCx;
use crate::store::{ResourceRecord, StoredSpec};

/// A backend under test and how its tools answer "missing" and "present, 64 MiB".
struct Case {
    config: BackendConfig,
    missing: (&'static [&'static str], Output),
    present: (&'static [&'static str], Output),
    /// The planned steps of a create: commands, or `(agent) ...` steps done in-process.
    create: Vec<&'static str>,
    /// The same for a grow.
    grow: Vec<&'static str>,
    /// The same for a remove.
    remove: Vec<&'static str>,
    device: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            config: BackendConfig::Lvm {
                volume_group: "vg0".into(),
            },
            missing: (
                &["lvs"],
                Output::fail(5, "Failed to find logical volume \"vg0/db_00000\""),
            ),
            present: (&["lvs"], Output::ok("  65536.00\n")),
            create: vec!["lvcreate --yes --wipesignatures y -n db_00000 -L 65536k vg0"],
            grow: vec!["lvextend -L 131072k vg0/db_00000"],
            remove: vec!["lvremove --yes vg0/db_00000"],
            device: "/dev/vg0/db_00000",
        },
        Case {
            config: BackendConfig::LvmThin {
                volume_group: "vg0".into(),
                thin_pool: "tp".into(),
            },
            missing: (&["lvs"], Output::fail(5, "Failed to find logical volume")),
            present: (&["lvs"], Output::ok("  65536.00\n")),
            create: vec!["lvcreate --yes -n db_00000 -V 65536k --thinpool tp vg0"],
            grow: vec!["lvextend -L 131072k vg0/db_00000"],
            remove: vec!["lvremove --yes vg0/db_00000"],
            device: "/dev/vg0/db_00000",
        },
        Case {
            config: BackendConfig::Zfs {
                dataset: "tank/bs".into(),
            },
            missing: (
                &["zfs", "get"],
                Output::fail(1, "cannot open 'tank/bs/db_00000': dataset does not exist"),
            ),
            present: (&["zfs", "get"], Output::ok("67108864\n")),
            create: vec!["zfs create -V 67108864 tank/bs/db_00000"],
            grow: vec!["zfs set volsize=134217728 tank/bs/db_00000"],
            remove: vec!["zfs destroy tank/bs/db_00000"],
            device: "/dev/zvol/tank/bs/db_00000",
        },
        Case {
            config: BackendConfig::Loopfile {
                directory: "/pool".into(),
            },
            missing: (&["losetup", "-j"], Output::ok("")),
            present: (
                &["losetup", "-j"],
                Output::ok("/dev/loop3: []: (/pool/db_00000.img)\n"),
            ),
            create: vec![
                "(agent) set-size 67108864 /pool/db_00000.img",
                "(agent) attach-loop /pool/db_00000.img",
            ],
            grow: vec![
                "(agent) set-size 134217728 /pool/db_00000.img",
                "(agent) set-capacity /dev/loop3",
            ],
            remove: vec![
                "(agent) detach-loop /dev/loop3",
                "(agent) remove /pool/db_00000.img",
            ],
            device: "/dev/loop3",
        },
    ]
}

/// The steps `c` recorded since the last call, each as one line; forgets them.
fn take_steps(c: &mut StepCx<'_>) -> Vec<String> {
    c.steps.drain(..).map(|s| s.argv.join(" ")).collect()
}

/// A fake node whose loop device answer is `/dev/loop3`.
fn fake_host() -> FakeHost {
    FakeHost::with_loop_device("/dev/loop3")
}

fn record() -> ResourceRecord {
    ResourceRecord::new(StoredSpec {
        name: "db".parse().unwrap(),
        layer_stack: LayerStack::parse(&["STORAGE"]).unwrap(),
        volumes: vec![],
        pool: "p1".parse().unwrap(),
        props: BTreeMap::new(),
        drbd: None,
    })
}

fn cx<'a>(
    runner: &'a RecordingRunner,
    host: &'a FakeHost,
    record: &'a mut ResourceRecord,
) -> StepCx<'a> {
    StepCx {
        runner,
        host,
        store: None,
        record,
        rd: "db".parse().unwrap(),
        dry_run: false,
        read_only: false,
        steps: Vec::new(),
    }
}

#[tokio::test]
async fn every_backend_creates_observes_grows_and_removes_idempotently() {
    for case in cases() {
        let kind = case.config.kind();
        let backend = for_pool(&PoolConfig {
            name: "p1".parse().unwrap(),
            backend: case.config.clone(),
        });
        assert_eq!(backend.kind(), kind);
        let host = fake_host();
        let mut rec = record();

        // Missing: observe says so, create runs exactly the documented argv.
        let runner = RecordingRunner::new();
        runner.on(case.missing.0, case.missing.1.clone());
        runner.on(&["losetup", "-f"], Output::ok("/dev/loop3\n"));
        let mut c = cx(&runner, &host, &mut rec);
        assert_eq!(backend.observe(&mut c, 0).await.unwrap(), None, "{kind}");
        runner.clear();
        take_steps(&mut c);
        let made = backend.create(&mut c, 0, 65536).await.unwrap();
        assert_eq!(take_steps(&mut c), case.create, "{kind}");
        let commands: Vec<&str> = case
            .create
            .iter()
            .copied()
            .filter(|s| !s.starts_with("(agent) "))
            .collect();
        assert_eq!(runner.commands(), commands, "{kind}");
        assert_eq!(
            (made.device.as_deref(), made.size_kib),
            (Some(case.device), 65536),
            "{kind}"
        );
        // Removing what is not there runs nothing.
        runner.clear();
        backend.remove(&mut c, 0, None).await.unwrap();
        assert!(
            runner
                .commands()
                .iter()
                .all(|c| c.starts_with("losetup -j")),
            "{kind}: {:?}",
            runner.commands()
        );

        // Present: observe reports size and device; grow and remove run the documented argv.
        host.put("/pool/db_00000.img", 64 << 20, true);
        let runner = RecordingRunner::new();
        runner.on(case.present.0, case.present.1.clone());
        let mut c = cx(&runner, &host, &mut rec);
        let seen = backend.observe(&mut c, 0).await.unwrap().expect("present");
        assert_eq!(
            (seen.device.as_deref(), seen.size_kib),
            (Some(case.device), 65536),
            "{kind}"
        );
        // Re-apply at the same size is a no-op: observing ran only the read-only query, and
        // activating an attached volume runs nothing at all.
        let query = case.present.0.join(" ");
        assert!(
            runner
                .commands()
                .iter()
                .all(|c| c.starts_with(&query) || c.starts_with("losetup -j")),
            "{kind}: observe ran {:?}",
            runner.commands()
        );
        runner.clear();
        let same = backend.activate(&mut c, 0, seen.clone()).await.unwrap();
        assert!(
            runner.commands().is_empty(),
            "{kind}: re-apply ran {:?}",
            runner.commands()
        );
        assert_eq!(
            (same.device, same.size_kib),
            (seen.device.clone(), seen.size_kib),
            "{kind}"
        );
        runner.clear();
        take_steps(&mut c);
        let grown = backend.grow(&mut c, 0, seen.clone(), 131072).await.unwrap();
        assert_eq!(take_steps(&mut c), case.grow, "{kind}");
        assert_eq!(grown.size_kib, 131072);
        runner.clear();
        backend.remove(&mut c, 0, Some(seen)).await.unwrap();
        assert_eq!(take_steps(&mut c), case.remove, "{kind}");
    }
}

#[tokio::test]
async fn pool_space_is_parsed_from_each_tool() {
    // Loop-file pools ask the file system (`statvfs`) in-process, through the host.
    let mut host = FakeHost::new();
    host.space_kib = (500, 900);
    let mut rec = record();
    let runner = RecordingRunner::new();
    runner.on(&["vgs"], Output::ok("  1000.00 4000.00\n"));
    runner.on(&["lvs"], Output::ok("  2000.00 25.00\n"));
    runner.on(&["zfs"], Output::ok("3145728\n1048576\n"));
    let c = cx(&runner, &host, &mut rec);
    let space = |config: BackendConfig| {
        for_pool(&PoolConfig {
            name: "p1".parse().unwrap(),
            backend: config,
        })
    };
    assert_eq!(
        space(BackendConfig::Lvm {
            volume_group: "vg0".into()
        })
        .space(&c)
        .await
        .unwrap(),
        (1000, 4000)
    );
    assert_eq!(
        space(BackendConfig::LvmThin {
            volume_group: "vg0".into(),
            thin_pool: "tp".into()
        })
        .space(&c)
        .await
        .unwrap(),
        (1500, 2000)
    );
    assert_eq!(
        space(BackendConfig::Zfs {
            dataset: "tank".into()
        })
        .space(&c)
        .await
        .unwrap(),
        (3072, 4096)
    );
    assert_eq!(
        space(BackendConfig::Loopfile {
            directory: "/pool".into()
        })
        .space(&c)
        .await
        .unwrap(),
        (500, 900)
    );
    assert!(runner.commands().iter().all(|c| !c.starts_with("df")));
}

/// The first two words of a command line, as a runner prefix (`lvcreate --yes`).
fn prefix_of(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().take(2).collect()
}

#[tokio::test]
async fn every_backend_stops_at_a_failing_step_with_tool_failed_naming_the_command() {
    const STDERR: &str = "Insufficient free space: 1 extents needed";
    for case in cases() {
        let kind = case.config.kind();
        let backend = for_pool(&PoolConfig {
            name: "p1".parse().unwrap(),
            backend: case.config.clone(),
        });
        // Each create command failing in turn: the error names it, nothing after it runs.
        // (Steps the agent does itself fail with host_io_failed; the real host's tests cover them.)
        let commands: Vec<&str> = case
            .create
            .iter()
            .copied()
            .filter(|s| !s.starts_with("(agent) "))
            .collect();
        for (i, failing) in commands.iter().enumerate() {
            let host = fake_host();
            let mut rec = record();
            let runner = RecordingRunner::new();
            runner.on(case.missing.0, case.missing.1.clone());
            runner.on(&prefix_of(failing), Output::fail(5, STDERR));
            runner.on(&["losetup", "-f"], Output::ok("/dev/loop3\n"));
            let mut c = cx(&runner, &host, &mut rec);
            let err = backend.create(&mut c, 0, 65536).await.unwrap_err();
            assert_eq!(err.code, "tool_failed", "{kind}: {err:?}");
            assert!(
                err.message.contains(failing) && err.message.contains(STDERR),
                "{kind}: {}",
                err.message
            );
            assert_eq!(runner.commands(), commands[..=i], "{kind}");
            // The journal keeps the failed step as not done.
            assert!(
                rec.journal
                    .last()
                    .is_some_and(|j| j.state == crate::store::StepState::Intent),
                "{kind}"
            );
        }
        // Grow and remove failing: same contract.
        for (steps, grow) in [(&case.grow, true), (&case.remove, false)] {
            let Some(&failing) = steps.iter().find(|s| !s.starts_with("(agent) ")) else {
                continue;
            };
            let host = FakeHost::new();
            host.put("/pool/db_00000.img", 64 << 20, true);
            let mut rec = record();
            let runner = RecordingRunner::new();
            runner.on(case.present.0, case.present.1.clone());
            runner.on(&prefix_of(failing), Output::fail(5, STDERR));
            let mut c = cx(&runner, &host, &mut rec);
            let seen = backend.observe(&mut c, 0).await.unwrap().expect("present");
            runner.clear();
            let err = if grow {
                backend.grow(&mut c, 0, seen, 131072).await.unwrap_err()
            } else {
                backend.remove(&mut c, 0, Some(seen)).await.unwrap_err()
            };
            assert_eq!(err.code, "tool_failed", "{kind}: {err:?}");
            assert!(err.message.contains(failing), "{kind}: {}", err.message);
            let ran: Vec<String> = runner
                .commands()
                .into_iter()
                .filter(|c| !c.starts_with("losetup -j"))
                .collect();
            assert_eq!(ran, [failing], "{kind}: stops at the failing step");
        }
        // A tool that is not installed is `tool_missing`, before anything is created.
        let Some(first_command) = commands.first() else {
            continue; // the loop-file pool creates without any tool
        };
        let host = FakeHost::new();
        let mut rec = record();
        let runner = RecordingRunner::new();
        runner.on(case.missing.0, case.missing.1.clone());
        let first = prefix_of(first_command);
        runner.on_error(
            &first,
            crate::runner::RunError::NotInstalled {
                program: first[0].to_owned(),
                command: (*first_command).to_owned(),
            },
        );
        let mut c = cx(&runner, &host, &mut rec);
        let err = backend.create(&mut c, 0, 65536).await.unwrap_err();
        assert_eq!(err.code, "tool_missing", "{kind}: {err:?}");
    }
}
