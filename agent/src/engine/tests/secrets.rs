//! Secrets never reach an answer, a log or the store: tools that echo a secret in their stderr
//! are redacted at the one redaction point; options and props that would carry or fight a
//! secret are refused; a new passphrase with a line break is refused before anything runs.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// PUTs `d` over the HTTP router; the status, the body and everything logged meanwhile.
async fn put_logged(engine: &Engine, d: &DesiredResource) -> (u16, String, String) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/v1/resources/{}", d.name))
        .header("authorization", "Bearer t")
        .body(Body::from(serde_json::to_vec(d).unwrap()))
        .unwrap();
    let resp = crate::api::http::router(
        engine.clone(),
        "t".into(),
        crate::config::HttpLimits::default().max_body_bytes,
    )
    .oneshot(req)
    .await
    .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let mut logged = Vec::new();
    logged.write_all(&logs.0.lock().unwrap()).unwrap();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        String::from_utf8(logged).unwrap(),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn drbdadm_quoting_the_shared_secret_never_reaches_the_500_body_or_the_log() {
    let r = drbd_rig(true);
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "role"],
        Output::fail(10, "'db' not defined"),
    );
    r.runner
        .on(&["drbdmeta"], Output::fail(1, "No valid meta data found"));
    r.runner.on(
        &["drbdadm", "-c", &res_path(&r), "adjust"],
        Output::fail(
            10,
            format!(
                "db: Failure: (151) net: shared-secret \"{SHARED}\" conflicts with \
                 shared-secret \"old-one\"\nadditional info from kernel: cram-hmac-alg sha256"
            ),
        ),
    );
    let (status, body, logs) = put_logged(&r.engine, &drbd_desired(0, 1)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("[REDACTED]"), "the tool's words stay: {body}");
    assert!(!body.contains(SHARED), "secret in the body: {body}");
    assert!(
        logs.contains("request failed"),
        "the failure is logged: {logs}"
    );
    assert!(!logs.contains(SHARED), "secret in the log: {logs}");
}

#[tokio::test(flavor = "current_thread")]
async fn cryptsetup_echoing_the_passphrase_never_reaches_the_500_body_or_the_log() {
    let r = rig();
    r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
    r.runner.on(
        &["cryptsetup", "luksFormat"],
        Output::fail(1, format!("Cannot format device: key '{PASS}' rejected")),
    );
    let (status, body, logs) =
        put_logged(&r.engine, &desired(luks_stack(), "65536", Some(PASS))).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("[REDACTED]"), "{body}");
    assert!(!body.contains(PASS), "secret in the body: {body}");
    assert!(!logs.contains(PASS), "secret in the log: {logs}");
    r.assert_no_secret_anywhere();
}

#[tokio::test]
async fn a_rotation_echoing_either_passphrase_is_redacted_over_stdio() {
    let r = rig();
    r.system_has_luks_volume(MIB64, "0c7a1f26-8bd8-4a5e-9cb6-4b1e8a0f1d2e", true);
    let mut d = desired(luks_stack(), "65536", Some(PASS));
    d.luks.as_mut().unwrap().previous_passphrase = Some(blockstor_proto::wire::Passphrase::new(
        "old passphrase 0987",
    ));
    // Neither opens: the message is the agent's own; then make the tool quote both.
    r.runner.on(
        &["cryptsetup", "open", "--test-passphrase"],
        Output::fail(1, format!("tried {PASS} and old passphrase 0987")),
    );
    let line = serde_json::to_string(&serde_json::json!({"op":"apply","resource":d})).unwrap();
    let mut out = Vec::new();
    crate::api::stdio::serve_one(&r.engine, format!("{line}\n").as_bytes(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\"error\""), "{out}");
    assert!(
        !out.contains(PASS) && !out.contains("old passphrase 0987"),
        "secret in the stdio answer: {out}"
    );
    assert!(out.contains("[REDACTED]"), "{out}");
}

#[tokio::test]
async fn drbd_options_the_agent_manages_are_refused_naming_the_field() {
    for key in [
        "Net/shared-secret",
        "Net/cram-hmac-alg",
        "net/verify-alg",
        "DrbdOptions/Net/protocol",
    ] {
        let r = drbd_rig(true);
        let mut d = drbd_desired(0, 1);
        d.drbd
            .as_mut()
            .unwrap()
            .options
            .insert(key.into(), "sha1".into());
        let err = r.engine.apply(d).await.unwrap_err();
        assert_eq!(
            (err.status(), err.field.as_deref()),
            (400, Some(format!("drbd.options[\"{key}\"]").as_str())),
            "{err}"
        );
        assert!(err.message.contains("manages"), "{}", err.message);
        assert!(r.runner.calls().is_empty(), "{:?}", r.runner.commands());
    }
}

#[tokio::test]
async fn secret_props_are_refused_and_never_stored() {
    for key in [
        "DrbdOptions/Encryption/passphrase",
        "DrbdOptions/Net/shared-secret",
        "Aux/db-password",
    ] {
        let r = rig();
        let mut d = desired(r#"["STORAGE"]"#, "65536", None);
        d.props.insert(key.into(), "hunter2-in-a-prop".into());
        let err = r.engine.apply(d).await.unwrap_err();
        assert_eq!(
            (err.status(), err.field.as_deref()),
            (400, Some(format!("props[\"{key}\"]").as_str())),
            "{err}"
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(r.runner.calls().is_empty());
        assert!(r.engine.store.list().unwrap().is_empty());
    }
}

#[test]
fn the_stored_spec_never_holds_a_secret_looking_prop() {
    let mut d = desired(r#"["STORAGE"]"#, "65536", None);
    d.props
        .insert("DrbdOptions/Encryption/passphrase".into(), "x".into());
    d.props.insert("Aux/owner".into(), "team-a".into());
    let spec = StoredSpec::from_desired(&d);
    assert_eq!(
        spec.props.keys().collect::<Vec<_>>(),
        ["Aux/owner", "Luks/pbkdf"]
    );
}

#[tokio::test]
async fn a_first_format_with_a_line_break_or_nul_in_the_passphrase_is_refused_before_any_step() {
    for pass in ["two\nlines", "cr\r\nlf", "nul\0byte"] {
        let r = rig();
        r.runner.on(&["cryptsetup", "isLuks"], Output::fail(1, ""));
        for dry_run in [true, false] {
            let d = desired(luks_stack(), "65536", None);
            let mut d = d;
            d.luks = Some(blockstor_proto::wire::LuksSpec {
                passphrase: blockstor_proto::wire::Passphrase::new(pass),
                previous_passphrase: None,
            });
            let err = if dry_run {
                r.engine.plan(d).await.unwrap_err()
            } else {
                r.engine.apply(d).await.unwrap_err()
            };
            assert_eq!(
                (err.status(), err.field.as_deref()),
                (400, Some("passphrase")),
                "{err}"
            );
            assert!(!err.message.contains(pass), "{}", err.message);
        }
        assert!(r.runner.calls().is_empty(), "{:?}", r.runner.commands());
        assert!(r.host.steps.lock().unwrap().is_empty(), "no file was made");
    }
}
