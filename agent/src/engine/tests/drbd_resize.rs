//! Growing under DRBD: the resize is marked pending before the storage grows, retried until it
//! succeeds, and never run again once done.

use super::*;

/// A DRBD-over-STORAGE resource applied once at 64 MiB and up: the file attached to LOOP,
/// metadata present, `drbdadm role` answering. Calls recorded so far are forgotten.
async fn drbd_up_at_64mib() -> Rig {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::ok("Secondary"),
    );
    r.runner.on(&["drbdmeta"], Output::ok(""));
    r.engine.apply(drbd_desired(0, 1)).await.unwrap();
    r.host.put(r.file(), MIB64, true);
    r.host.put(LOOP, MIB64, false);
    r.runner.on(
        &["losetup", "-j"],
        Output::ok(format!("{LOOP}: []: ({})\n", r.file())),
    );
    r.runner.clear();
    r
}

fn resize_cmd(r: &Rig) -> String {
    format!("drbdadm -c {} resize db/0", res_path(r))
}

fn pending_resize(r: &Rig) -> bool {
    let rec = r.engine.store.get(&"db".parse().unwrap()).unwrap().unwrap();
    rec.volumes[&0].pending_drbd_resize
}

#[tokio::test]
async fn a_failed_drbd_resize_is_retried_on_the_next_apply_and_then_never_again() {
    let r = drbd_up_at_64mib().await;
    // Apply 1: the storage grows, then `drbdadm resize` fails (the peer just lost power).
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (102) Local address(port) already in use."),
    );
    let err = r
        .engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "tool_failed", "{err:?}");
    let cmds = r.runner.commands();
    // The file grew and the loop device learnt it (the agent's own steps), then resize.
    assert!(
        r.host.after_commands("set-capacity").unwrap() <= position(&cmds, &resize_cmd(&r)),
        "{cmds:#?}"
    );
    assert!(pending_resize(&r), "the failed resize stays pending");

    // Apply 2, same desired size: the storage is already grown, only the resize is left.
    r.host.put(r.file(), 2 * MIB64, true);
    r.host.put(LOOP, 2 * MIB64, false);
    r.runner.clear();
    r.host.steps.lock().unwrap().clear();
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert_eq!(cmds.last(), Some(&resize_cmd(&r)), "{cmds:#?}");
    assert!(
        r.host.steps.lock().unwrap().is_empty(),
        "the file is not sized again"
    );
    assert!(
        cmds.iter().all(|c| !c.starts_with("truncate")
            && !c.contains("create-md")
            && !c.contains("primary")),
        "nothing but the resize is redone: {cmds:#?}"
    );
    assert!(!pending_resize(&r));

    // Apply 3: converged, no resize.
    r.runner.clear();
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap();
    let cmds = r.runner.commands();
    assert!(cmds.iter().all(|c| !c.contains(" resize ")), "{cmds:#?}");
}

#[tokio::test]
async fn a_grow_cut_short_before_the_drbd_resize_leaves_the_resize_pending_in_the_store() {
    // The agent dies right after the grow (here: telling the loop device its new size
    // fails); the mark was written before the grow started, so a restarted agent still knows
    // DRBD must be resized.
    let r = drbd_up_at_64mib().await;
    *r.host.fail_step.lock().unwrap() = Some("set-capacity".into());
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert!(pending_resize(&r));
    assert!(
        r.runner.commands().iter().all(|c| !c.contains(" resize ")),
        "the resize never ran"
    );
}

#[tokio::test]
async fn drbd_84_refusing_to_resize_without_a_primary_is_a_clear_error_and_stays_pending() {
    let r = drbd_up_at_64mib().await;
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (131) Need one Primary node to resize."),
    );
    let err = r
        .engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.status(), err.field.as_deref()),
        (
            "drbd_resize_needs_primary",
            422,
            Some("volumes[0].size_kib")
        )
    );
    assert!(
        err.message.contains("drbdadm primary db"),
        "{}",
        err.message
    );
    assert!(pending_resize(&r));
}

#[tokio::test]
async fn a_resync_refusal_is_waited_out_and_a_pending_resize_shows_in_the_plan() {
    let r = drbd_up_at_64mib().await;
    // `once` rules are consumed newest first: the resync refusal answers first.
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "cut short"),
    );
    r.runner.once(
        &["drbdadm", "-c", &res_path(&r), "resize"],
        Output::fail(10, "Failure: (130) Resize not allowed during resync."),
    );
    r.engine
        .apply(drbd_desired_kib(0, 1, 131072))
        .await
        .unwrap_err();
    let cmds = r.runner.commands();
    assert_eq!(
        cmds.iter().filter(|c| **c == resize_cmd(&r)).count(),
        2,
        "a resync refusal is waited out and tried again: {cmds:#?}"
    );
    r.host.put(r.file(), 2 * MIB64, true);
    r.host.put(LOOP, 2 * MIB64, false);
    r.runner.clear();
    let planned = r.engine.plan(drbd_desired_kib(0, 1, 131072)).await.unwrap();
    let steps: Vec<String> = planned.steps.iter().map(|s| s.argv.join(" ")).collect();
    assert!(steps.contains(&resize_cmd(&r)), "{steps:#?}");
    assert!(
        r.runner.commands().iter().all(|c| !c.contains(" resize ")),
        "planning runs nothing"
    );
}
