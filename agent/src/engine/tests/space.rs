//! Free space: a volume the pool cannot hold is refused before anything is made, naming the
//! volume's size field and the free space; never a 500, never an empty file left behind.

use super::*;

fn rig_with_free_kib(free_kib: u64) -> Rig {
    let mut host = FakeHost::new();
    host.space_kib = (free_kib, free_kib * 2);
    rig_with(host)
}

fn two_volumes(kib0: u64, kib1: u64) -> DesiredResource {
    serde_json::from_str(&format!(
        r#"{{"name":"db","layer_stack":["STORAGE"],"storage":{{"pool":"files"}},
            "volumes":[{{"number":0,"size_kib":{kib0}}},{{"number":1,"size_kib":{kib1}}}]}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_volume_bigger_than_the_free_space_is_a_422_naming_its_size_and_the_free_space() {
    for plan in [true, false] {
        let r = rig_with_free_kib(100_000);
        // Each fits alone; together they do not: the second is named.
        let d = two_volumes(60_000, 60_000);
        let err = if plan {
            r.engine.plan(d).await.unwrap_err()
        } else {
            r.engine.apply(d).await.unwrap_err()
        };
        assert_eq!(
            (err.status(), err.code.as_str(), err.field.as_deref()),
            (422, "insufficient_space", Some("volumes[1].size_kib")),
            "{err}"
        );
        assert!(err.message.contains("100000 KiB free"), "{}", err.message);
        assert!(r.host.steps.lock().unwrap().is_empty(), "nothing was made");
        assert!(r.runner.calls().is_empty(), "{:?}", r.runner.commands());
    }
}

#[tokio::test]
async fn a_petabyte_volume_leaves_no_file_and_no_record() {
    let r = rig_with_free_kib(79 << 20);
    let d = two_volumes(1 << 40, 4096);
    let err = r.engine.apply(d).await.unwrap_err();
    assert_eq!(err.field.as_deref(), Some("volumes[0].size_kib"), "{err}");
    assert!(err.status() < 500, "{err}");
    assert!(r.host.steps.lock().unwrap().is_empty());
    assert!(!r.host.exists(Path::new(&r.file())));
    let d = r.engine.delete(&"db".parse().unwrap()).await.unwrap();
    assert!(r.host.steps.lock().unwrap().is_empty(), "{d:?}");
}

#[tokio::test]
async fn a_grow_past_the_free_space_is_refused_before_the_file_grows() {
    let r = rig_with_free_kib(1 << 20);
    r.engine.apply(two_volumes(65536, 65536)).await.unwrap();
    r.host.steps.lock().unwrap().clear();
    let err = r
        .engine
        .apply(two_volumes(65536, 65536 + (2 << 20)))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.field.as_deref()),
        (422, Some("volumes[1].size_kib")),
        "{err}"
    );
    assert!(
        r.host
            .steps
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.starts_with("set-size")),
        "{:?}",
        r.host.steps.lock().unwrap()
    );
}

#[tokio::test]
async fn volumes_that_fit_are_made() {
    let r = rig_with_free_kib(200_000);
    r.engine.apply(two_volumes(60_000, 60_000)).await.unwrap();
}
