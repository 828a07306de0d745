use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use blockstor_proto::LayerStack;
use tokio::time::Instant;

use super::*;
use crate::host::{FakeHost, Host};
use crate::runner::{Output, RecordingRunner};
use crate::step::StepCx;
use crate::store::{ResourceRecord, StoredSpec};

const RES: &str = "/state/drbd.d/db.res";

fn set(names: &[&str]) -> BTreeSet<NodeName> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn node(name: &str) -> NodeName {
    name.parse().unwrap()
}

fn record() -> ResourceRecord {
    ResourceRecord::new(StoredSpec {
        name: "db".parse().unwrap(),
        layer_stack: LayerStack::parse(&["DRBD", "STORAGE"]).unwrap(),
        volumes: vec![],
        pool: "files".parse().unwrap(),
        props: BTreeMap::new(),
        drbd: None,
    })
}

fn cx<'a>(
    runner: &'a RecordingRunner,
    host: &'a FakeHost,
    record: &'a mut ResourceRecord,
) -> Cx<'a> {
    Cx {
        step: StepCx {
            runner,
            host,
            store: None,
            record,
            rd: "db".parse().unwrap(),
            dry_run: false,
            read_only: false,
            steps: Vec::new(),
        },
        desired: None,
        luks: None,
        props: BTreeMap::new(),
        drbd: None,
    }
}

fn wait_ms(ms: u64) -> Wait {
    Wait {
        deadline: Instant::now() + Duration::from_millis(ms),
        poll: Duration::from_millis(1),
    }
}

fn volume0() -> Vec<LocalVolume> {
    vec![LocalVolume {
        number: 0,
        minor: 1000,
        disk: Some("/dev/loop3".into()),
    }]
}

/// `drbdsetup status --json db` as `me` sees it: its own disk, then `(peer, connection,
/// replication, peer disk, percent)` per connection.
fn v9_status(local: &str, peers: &[(&str, &str, &str, &str, f64)]) -> Output {
    let conns: Vec<String> = peers
        .iter()
        .map(|(name, conn, repl, disk, pct)| {
            format!(
                r#"{{"name":"{name}","connection-state":"{conn}","peer_devices":[{{"volume":0,
                   "replication-state":"{repl}","peer-disk-state":"{disk}","percent-in-sync":{pct}}}]}}"#
            )
        })
        .collect();
    Output::ok(format!(
        r#"[{{"name":"db","devices":[{{"volume":0,"disk-state":"{local}"}}],"connections":[{}]}}]"#,
        conns.join(",")
    ))
}

/// One node of a simulated cluster: its runner answers status as a healthy peer would.
struct FakeNode {
    runner: RecordingRunner,
    host: FakeHost,
    record: ResourceRecord,
}

impl FakeNode {
    /// A node whose peers are all UpToDate and connected; a fresh one (`added`) has no metadata
    /// and syncs once before it is UpToDate.
    fn new(others: &[&str], added: bool, dialect: Dialect) -> Self {
        let runner = RecordingRunner::new();
        let res = ["-c", RES];
        match dialect {
            Dialect::V9 => {
                let up: Vec<_> = others
                    .iter()
                    .map(|o| (*o, "Connected", "Established", "UpToDate", 100.0))
                    .collect();
                runner.on(&["drbdsetup", "status"], v9_status("UpToDate", &up));
                if added {
                    let syncing: Vec<_> = others
                        .iter()
                        .map(|o| (*o, "Connected", "SyncTarget", "UpToDate", 40.0))
                        .collect();
                    runner.once(
                        &["drbdsetup", "status"],
                        v9_status("Inconsistent", &syncing),
                    );
                }
            }
            Dialect::V84 => {
                let dstate = [&["drbdadm"][..], &res, &["dstate"]].concat();
                let cstate = [&["drbdadm"][..], &res, &["cstate"]].concat();
                runner.on(&dstate, Output::ok("UpToDate/UpToDate\n"));
                runner.on(&cstate, Output::ok("Connected\n"));
                if added {
                    runner.once(&dstate, Output::ok("Inconsistent/UpToDate\n"));
                    runner.once(&cstate, Output::ok("SyncTarget\n"));
                }
            }
        }
        if added {
            runner.on(&["drbdmeta"], Output::fail(255, "No valid meta data found"));
        }
        FakeNode {
            runner,
            host: FakeHost::new(),
            record: record(),
        }
    }
}

/// Runs every stage on its node, in order, and returns the mutating steps as `node: argv`.
async fn run_change(old: &[&str], new: &[&str], dialect: Dialect) -> Vec<String> {
    let (old, new) = (set(old), set(new));
    let all: BTreeSet<NodeName> = old.union(&new).cloned().collect();
    let mut nodes: BTreeMap<NodeName, FakeNode> = all
        .iter()
        .map(|n| {
            let others: Vec<&str> = all
                .iter()
                .filter(|o| *o != n)
                .map(NodeName::as_str)
                .collect();
            let fake = FakeNode::new(&others, !old.contains(n), dialect);
            (n.clone(), fake)
        })
        .collect();
    let mut log = Vec::new();
    for stage in stages(&old, &new, dialect).unwrap() {
        let fake = nodes.get_mut(&stage.node).unwrap();
        let replicas: Vec<&str> = stage.replicas.iter().map(NodeName::as_str).collect();
        let res_text = format!("# replicas {}\n", replicas.join(" "));
        let step = match stage.role {
            Role::Staying => NodeStep::Staying { res_text },
            Role::Added => NodeStep::Added {
                res_text,
                volumes: volume0(),
                peers: stage
                    .replicas
                    .iter()
                    .filter(|r| **r != stage.node)
                    .cloned()
                    .collect(),
                until_up_to_date: stage.until_up_to_date,
            },
            Role::Removed => NodeStep::Removed {
                remaining: stage.replicas.clone(),
            },
        };
        let mut c = cx(&fake.runner, &fake.host, &mut fake.record);
        let local = Local {
            node: &stage.node,
            res_file: Path::new(RES),
            dialect,
            minors: &[1000],
            client_volumes: None,
        };
        run(&mut c, &local, &step, wait_ms(2000)).await.unwrap();
        log.extend(
            c.steps
                .iter()
                .map(|s| format!("{}: {}", stage.node, s.argv.join(" "))),
        );
    }
    for fake in nodes.values() {
        for command in fake.runner.commands() {
            assert!(
                !command.contains("primary") && !command.contains("overwrite-data"),
                "no replica is ever forced or made primary by a peer change: {command}"
            );
        }
    }
    log
}

fn expect<S: AsRef<str>>(lines: &[S]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.as_ref()
                .replace("WRITE", &format!("(agent) write {RES}"))
                .replace("ADM", &format!("drbdadm -c {RES}"))
        })
        .collect()
}

#[test]
fn roles_follow_membership_of_the_old_and_new_sets() {
    let (old, new) = (set(&["n1", "n2"]), set(&["n1", "n3"]));
    assert_eq!(Role::of(&node("n1"), &old, &new), Some(Role::Staying));
    assert_eq!(Role::of(&node("n2"), &old, &new), Some(Role::Removed));
    assert_eq!(Role::of(&node("n3"), &old, &new), Some(Role::Added));
    assert_eq!(Role::of(&node("n4"), &old, &new), None);
}

#[test]
fn a_move_on_drbd9_adds_first_and_removes_after_the_new_replica_is_up_to_date() {
    let st = stages(&set(&["n1", "n2"]), &set(&["n1", "n3"]), Dialect::V9).unwrap();
    let summary: Vec<(String, Role, usize, bool)> = st
        .iter()
        .map(|s| {
            (
                s.node.to_string(),
                s.role,
                s.replicas.len(),
                s.until_up_to_date,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("n1".into(), Role::Staying, 3, false),
            ("n2".into(), Role::Staying, 3, false),
            ("n3".into(), Role::Added, 3, true),
            ("n2".into(), Role::Removed, 2, false),
            ("n1".into(), Role::Staying, 2, false),
            ("n3".into(), Role::Staying, 2, false),
        ]
    );
    assert_eq!(
        st[3].replicas,
        set(&["n1", "n3"]),
        "n2 waits for a replica that stays"
    );
}

#[test]
fn a_move_on_drbd84_removes_first_and_refuses_what_two_peers_cannot_hold() {
    let st = stages(&set(&["n1", "n2"]), &set(&["n1", "n3"]), Dialect::V84).unwrap();
    let summary: Vec<(String, Role)> = st.iter().map(|s| (s.node.to_string(), s.role)).collect();
    assert_eq!(
        summary,
        [
            ("n2".into(), Role::Removed),
            ("n1".into(), Role::Staying),
            ("n3".into(), Role::Added),
        ]
    );
    assert!(st
        .iter()
        .all(|s| s.replicas == set(&["n1", "n3"]) && !s.until_up_to_date));
    let three = stages(&set(&["n1", "n2"]), &set(&["n1", "n2", "n3"]), Dialect::V84);
    assert_eq!(three.unwrap_err().code, "drbd_version_unsupported");
    let both = stages(&set(&["n1", "n2"]), &set(&["n3", "n4"]), Dialect::V84).unwrap_err();
    assert_eq!(both.code, "drbd_version_unsupported");
    assert!(both.message.contains("n1, n2"), "{}", both.message);
    let none = stages(&set(&["n1", "n2"]), &set(&[]), Dialect::V9).unwrap_err();
    assert_eq!(none.code, "invalid_drbd");
    assert!(stages(&set(&["n1"]), &set(&["n1"]), Dialect::V84)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn adding_a_replica_runs_adjust_on_staying_nodes_then_create_md_and_up_on_the_new_one() {
    let v9 = run_change(&["n1", "n2"], &["n1", "n2", "n3"], Dialect::V9).await;
    assert_eq!(
        v9,
        expect(&[
            "n1: WRITE",
            "n1: ADM adjust db",
            "n2: WRITE",
            "n2: ADM adjust db",
            "n3: WRITE",
            "n3: ADM --max-peers=7 -- --force create-md db/0",
            "n3: ADM adjust db",
        ])
    );
    let v84 = run_change(&["n1"], &["n1", "n2"], Dialect::V84).await;
    assert_eq!(
        v84,
        expect(&[
            "n1: WRITE",
            "n1: ADM adjust db",
            "n2: WRITE",
            "n2: ADM -- --force create-md db/0",
            "n2: ADM adjust db",
        ])
    );
}

#[tokio::test]
async fn removing_a_replica_takes_it_down_then_adjusts_the_others() {
    for dialect in [Dialect::V9, Dialect::V84] {
        let (old, new): (&[&str], &[&str]) = match dialect {
            Dialect::V9 => (&["n1", "n2", "n3"], &["n1", "n3"]),
            Dialect::V84 => (&["n1", "n2"], &["n1"]),
        };
        let mut want = vec!["n2: ADM down db".to_owned()];
        for n in new {
            want.push(format!("{n}: WRITE"));
            want.push(format!("{n}: ADM adjust db"));
        }
        assert_eq!(
            run_change(old, new, dialect).await,
            expect(&want),
            "{dialect:?}"
        );
    }
}

#[tokio::test]
async fn a_move_runs_in_the_order_each_drbd_version_allows() {
    assert_eq!(
        run_change(&["n1", "n2"], &["n1", "n3"], Dialect::V9).await,
        expect(&[
            "n1: WRITE",
            "n1: ADM adjust db",
            "n2: WRITE",
            "n2: ADM adjust db",
            "n3: WRITE",
            "n3: ADM --max-peers=7 -- --force create-md db/0",
            "n3: ADM adjust db",
            "n2: ADM down db",
            "n1: WRITE",
            "n1: ADM adjust db",
            "n3: WRITE",
            "n3: ADM adjust db",
        ])
    );
    assert_eq!(
        run_change(&["n1", "n2"], &["n1", "n3"], Dialect::V84).await,
        expect(&[
            "n2: ADM down db",
            "n1: WRITE",
            "n1: ADM adjust db",
            "n3: WRITE",
            "n3: ADM -- --force create-md db/0",
            "n3: ADM adjust db",
        ])
    );
}

#[tokio::test]
async fn the_added_replica_of_a_drbd9_move_waits_until_up_to_date() {
    let fake = FakeNode::new(&["n1", "n2"], true, Dialect::V9);
    // Two more readings while syncing (after the one FakeNode scripts), then UpToDate.
    let syncing = v9_status(
        "Inconsistent",
        &[("n1", "Connected", "SyncTarget", "UpToDate", 80.0)],
    );
    fake.runner.once(&["drbdsetup", "status"], syncing.clone());
    fake.runner.once(&["drbdsetup", "status"], syncing);
    let mut record = record();
    let mut c = cx(&fake.runner, &fake.host, &mut record);
    let step = NodeStep::Added {
        res_text: "x".into(),
        volumes: volume0(),
        peers: set(&["n1", "n2"]),
        until_up_to_date: true,
    };
    let local = Local {
        node: &node("n3"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    run(&mut c, &local, &step, wait_ms(2000)).await.unwrap();
    let reads = fake
        .runner
        .commands()
        .iter()
        .filter(|c| c.starts_with("drbdsetup status --json db"))
        .count();
    assert_eq!(reads, 4, "{:?}", fake.runner.commands());
}

/// n2 is removed from [n1, n2, n3] (DRBD 9). `n3` UpToDate would not do if n3 were leaving too.
#[tokio::test]
async fn removal_waits_for_a_replica_that_stays_to_be_up_to_date() {
    let runner = RecordingRunner::new();
    runner.on(
        &["drbdsetup", "status"],
        v9_status(
            "UpToDate",
            &[
                ("n1", "Connected", "Established", "UpToDate", 100.0),
                ("n3", "Connected", "Established", "UpToDate", 100.0),
            ],
        ),
    );
    for _ in 0..2 {
        runner.once(
            &["drbdsetup", "status"],
            v9_status(
                "UpToDate",
                &[
                    ("n1", "Connected", "SyncSource", "Inconsistent", 60.0),
                    ("n3", "Connected", "Established", "UpToDate", 100.0),
                ],
            ),
        );
    }
    let host = FakeHost::new();
    let mut record = record();
    let mut c = cx(&runner, &host, &mut record);
    let local = Local {
        node: &node("n2"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    // Only n1 stays (n3 leaves next): n2 must wait for n1, although n3 is UpToDate.
    let step = NodeStep::Removed {
        remaining: set(&["n1"]),
    };
    run(&mut c, &local, &step, wait_ms(2000)).await.unwrap();
    assert_eq!(
        runner.commands(),
        [
            "drbdsetup status --json db",
            "drbdsetup status --json db",
            "drbdsetup status --json db",
            &format!("drbdadm -c {RES} down db"),
        ]
    );
}

#[tokio::test]
async fn removal_fails_at_the_deadline_naming_the_node_and_the_states_it_saw() {
    for dialect in [Dialect::V9, Dialect::V84] {
        let runner = RecordingRunner::new();
        match dialect {
            Dialect::V9 => {
                runner.on(
                    &["drbdsetup", "status"],
                    v9_status(
                        "UpToDate",
                        &[("n1", "Connected", "SyncSource", "Inconsistent", 45.0)],
                    ),
                );
            }
            Dialect::V84 => {
                runner.on(
                    &["drbdadm", "-c", RES, "dstate"],
                    Output::ok("UpToDate/Inconsistent\n"),
                );
                runner.on(
                    &["drbdadm", "-c", RES, "cstate"],
                    Output::ok("SyncSource\n"),
                );
            }
        }
        let host = FakeHost::new();
        host.write_private(
            Path::new("/proc/drbd"),
            "1000: cs:SyncSource ro:Secondary/Secondary ds:UpToDate/Inconsistent C r-----\n\
             \t[=====>..............] sync'ed: 45.0% (1/2)K\n",
        )
        .unwrap();
        let mut record = record();
        let mut c = cx(&runner, &host, &mut record);
        let local = Local {
            node: &node("n2"),
            res_file: Path::new(RES),
            dialect,
            minors: &[1000],
            client_volumes: None,
        };
        let step = NodeStep::Removed {
            remaining: set(&["n1"]),
        };
        let err = run(&mut c, &local, &step, wait_ms(30)).await.unwrap_err();
        assert_eq!(err.code, "drbd_sync_timeout", "{dialect:?}");
        let want_state = match dialect {
            Dialect::V9 => "n1 Connected disk Inconsistent (45.0% in sync)",
            Dialect::V84 => "n1 SyncSource disk Inconsistent (45.0% in sync)",
        };
        for needle in ["node n2", "another replica of db UpToDate", want_state] {
            assert!(
                err.message.contains(needle),
                "{needle} missing: {}",
                err.message
            );
        }
        assert!(
            !runner.commands().iter().any(|c| c.ends_with("down db")),
            "nothing goes down before a replica that stays is UpToDate"
        );
        assert!(c.steps.is_empty());
    }
}

#[tokio::test]
async fn a_new_replica_that_became_sync_source_stops_at_once() {
    let fake = FakeNode::new(&["n1"], true, Dialect::V9);
    fake.runner.once(
        &["drbdsetup", "status"],
        v9_status(
            "Inconsistent",
            &[("n1", "Connected", "SyncSource", "Inconsistent", 0.0)],
        ),
    );
    let mut record = record();
    let mut c = cx(&fake.runner, &fake.host, &mut record);
    let step = NodeStep::Added {
        res_text: "x".into(),
        volumes: volume0(),
        peers: set(&["n1"]),
        until_up_to_date: false,
    };
    let local = Local {
        node: &node("n3"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    let err = run(&mut c, &local, &step, wait_ms(2000)).await.unwrap_err();
    assert_eq!(err.code, "invalid_drbd");
    assert!(err.message.contains("node n3") && err.message.contains("towards n1"));
}

#[tokio::test]
async fn a_diskless_replica_gets_no_metadata_and_does_not_wait_for_a_sync() {
    let runner = RecordingRunner::new();
    let host = FakeHost::new();
    let mut record = record();
    let mut c = cx(&runner, &host, &mut record);
    let step = NodeStep::Added {
        res_text: "x".into(),
        volumes: vec![LocalVolume {
            number: 0,
            minor: 1000,
            disk: None,
        }],
        peers: set(&["n1"]),
        until_up_to_date: true,
    };
    let local = Local {
        node: &node("n3"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    run(&mut c, &local, &step, wait_ms(10)).await.unwrap();
    assert_eq!(runner.commands(), [format!("drbdadm -c {RES} adjust db")]);
}

#[tokio::test]
async fn a_staying_node_whose_res_is_already_current_only_adjusts() {
    let runner = RecordingRunner::new();
    let host = FakeHost::new();
    host.write_private(Path::new(RES), "same\n").unwrap();
    let mut record = record();
    let mut c = cx(&runner, &host, &mut record);
    let local = Local {
        node: &node("n1"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    let step = NodeStep::Staying {
        res_text: "same\n".into(),
    };
    run(&mut c, &local, &step, wait_ms(10)).await.unwrap();
    assert_eq!(runner.commands(), [format!("drbdadm -c {RES} adjust db")]);
    let step = NodeStep::Staying {
        res_text: "new\n".into(),
    };
    run(&mut c, &local, &step, wait_ms(10)).await.unwrap();
    assert_eq!(
        host.read_to_string(Path::new(RES)).unwrap().as_deref(),
        Some("new\n")
    );
}

#[tokio::test]
async fn a_removed_replica_already_down_is_left_to_the_teardown_and_planning_never_waits() {
    let runner = RecordingRunner::new();
    runner.on(
        &["drbdsetup", "status"],
        Output::fail(10, "db: No such resource"),
    );
    let host = FakeHost::new();
    let mut record = record();
    let local = Local {
        node: &node("n2"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    let step = NodeStep::Removed {
        remaining: set(&["n1"]),
    };
    let mut c = cx(&runner, &host, &mut record);
    run(&mut c, &local, &step, wait_ms(2000)).await.unwrap();
    assert_eq!(runner.commands(), ["drbdsetup status --json db"]);
    assert!(c.steps.is_empty(), "nothing to take down");

    // A plan lists the step without reading or waiting for anything.
    runner.clear();
    let mut c = cx(&runner, &host, &mut record);
    c.dry_run = true;
    run(&mut c, &local, &step, wait_ms(0)).await.unwrap();
    assert!(runner.commands().is_empty());
    let planned: Vec<String> = c.steps.iter().map(|s| s.argv.join(" ")).collect();
    assert_eq!(planned, [format!("drbdadm -c {RES} down db")]);
}

/// Collects formatted log lines for one test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_removal_logs_the_sync_progress_at_info() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runner = RecordingRunner::new();
    runner.on(
        &["drbdsetup", "status"],
        v9_status(
            "UpToDate",
            &[("n1", "Connected", "Established", "UpToDate", 100.0)],
        ),
    );
    runner.once(
        &["drbdsetup", "status"],
        v9_status(
            "UpToDate",
            &[("n1", "Connected", "SyncSource", "Inconsistent", 62.5)],
        ),
    );
    let host = FakeHost::new();
    let mut record = record();
    let mut c = cx(&runner, &host, &mut record);
    let local = Local {
        node: &node("n2"),
        res_file: Path::new(RES),
        dialect: Dialect::V9,
        minors: &[1000],
        client_volumes: None,
    };
    let step = NodeStep::Removed {
        remaining: set(&["n1"]),
    };
    run(&mut c, &local, &step, wait_ms(2000)).await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("waiting for DRBD"))
        .unwrap_or_else(|| panic!("no progress line in {text:?}"));
    for needle in [" INFO ", "percent_in_sync=62.5", "node=n2", "rd=db"] {
        assert!(line.contains(needle), "{needle} missing in {line}");
    }
}
