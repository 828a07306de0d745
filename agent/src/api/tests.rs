//! The HTTP routes and stdio mode over a recording runner: auth, status codes, error bodies,
//! and refusal of hostile documents before any process runs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::config::Config;
use crate::engine::Engine;
use crate::host::FakeHost;
use crate::runner::RecordingRunner;
use crate::store::Store;

const TOKEN: &str = "s3cr3t-token";

pub(super) fn engine() -> (tempfile::TempDir, Engine, Arc<RecordingRunner>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pool = dir.path().join("pool");
    let config = Config::parse(&format!(
        "node_name = \"n1\"\nstate_dir = {state:?}\n[[pool]]\nname = \"files\"\nbackend = \"loopfile\"\ndirectory = {pool:?}\n"
    ))
    .unwrap();
    let runner = Arc::new(RecordingRunner::new());
    let mut host = FakeHost::with_loop_device("/dev/loop3");
    host.space_kib = (1 << 30, 1 << 31);
    let engine = Engine::new(
        config,
        runner.clone(),
        Arc::new(host),
        Store::open(&state).unwrap(),
    );
    (dir, engine, runner)
}

async fn call(
    engine: &Engine,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = super::http::router(
        engine.clone(),
        TOKEN.into(),
        crate::config::HttpLimits::default().max_body_bytes,
    )
    .oneshot(req)
    .await
    .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn doc(name: &str, stack: &str, luks: &str) -> String {
    format!(
        r#"{{"name":"{name}","layer_stack":{stack},"volumes":[{{"number":0,"size_kib":65536}}],"storage":{{"pool":"files"}}{luks}}}"#
    )
}

#[tokio::test]
async fn every_route_needs_the_bearer_token() {
    let (_d, e, runner) = engine();
    let routes = [
        (Method::GET, "/v1/node"),
        (Method::GET, "/v1/resources"),
        (Method::GET, "/v1/resources/db"),
        (Method::PUT, "/v1/resources/db"),
        (Method::POST, "/v1/resources/db/plan"),
        (Method::DELETE, "/v1/resources/db"),
    ];
    for (m, p) in routes {
        for token in [None, Some("wrong"), Some("")] {
            let (status, body) =
                call(&e, m.clone(), p, token, &doc("db", r#"["STORAGE"]"#, "")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {p} {token:?}");
            assert_eq!(body["code"], "unauthorized");
        }
    }
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn resources_round_trip_over_http() {
    let (_d, e, runner) = engine();
    let (s, b) = call(&e, Method::GET, "/v1/resources/db", Some(TOKEN), "").await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    let (s, b) = call(
        &e,
        Method::PUT,
        "/v1/resources/db",
        Some(TOKEN),
        &doc("db", r#"["storage"]"#, ""),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["volumes"][0]["device_path"], "/dev/loop3");
    assert_eq!(b["node"], "n1");

    let (s, b) = call(&e, Method::GET, "/v1/resources", Some(TOKEN), "").await;
    assert_eq!((s, b.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));

    let (s, b) = call(&e, Method::GET, "/v1/node", Some(TOKEN), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["pools"][0]["free_kib"], 1u64 << 30);
    assert_eq!(b["pools"][0]["backend"], "loopfile");

    let (s, b) = call(&e, Method::DELETE, "/v1/resources/db", Some(TOKEN), "").await;
    assert_eq!((s, b["deleted"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, b) = call(&e, Method::DELETE, "/v1/resources/db", Some(TOKEN), "").await;
    assert_eq!((s, b["deleted"].as_bool()), (StatusCode::OK, Some(false)));
    // Sizing the file, attaching, detaching and the pool's space are the agent's own
    // steps: no process for them.
    let cmds = runner.commands();
    assert!(
        cmds.iter().all(|c| !c.starts_with("truncate")
            && !c.starts_with("losetup -f")
            && !c.starts_with("losetup -d")
            && !c.starts_with("df")),
        "{cmds:?}"
    );
}

#[tokio::test]
async fn hostile_documents_are_rejected_before_any_process_runs() {
    let (_d, e, runner) = engine();
    let cases = [
        (
            "/v1/resources/db",
            doc("other", r#"["STORAGE"]"#, ""),
            "name_mismatch",
            Some("name"),
        ),
        (
            "/v1/resources/x%2F..",
            doc("db", r#"["STORAGE"]"#, ""),
            "invalid_name",
            Some("name"),
        ),
        (
            "/v1/resources/db",
            doc("../etc", r#"["STORAGE"]"#, ""),
            "invalid_request",
            Some("name"),
        ),
        (
            "/v1/resources/db",
            doc("db", r#"["LUKS","DRBD"]"#, ""),
            "invalid_request",
            Some("layer_stack"),
        ),
        (
            "/v1/resources/db",
            doc("db", r#"["LUKS","STORAGE"]"#, ""),
            "luks_passphrase_missing",
            Some("passphrase"),
        ),
        (
            "/v1/resources/db",
            doc("db", r#"["STORAGE"]"#, "").replace("65536", "1"),
            "invalid_request",
            Some("volumes[0].size_kib"),
        ),
        (
            "/v1/resources/db",
            doc("db", r#"["STORAGE"]"#, "").replace(r#""pool":"files""#, r#""pool":"-rf""#),
            "invalid_request",
            Some("storage.pool"),
        ),
        (
            "/v1/resources/db",
            r#"{"name":"db","extra":1}"#.to_owned(),
            "invalid_request",
            None,
        ),
        (
            "/v1/resources/db",
            "not json".to_owned(),
            "invalid_request",
            None,
        ),
    ];
    for (path, body, code, field) in cases {
        for method in [Method::PUT, Method::POST] {
            let p = if method == Method::POST {
                format!("{path}/plan")
            } else {
                path.to_owned()
            };
            let (s, b) = call(&e, method.clone(), &p, Some(TOKEN), &body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {p} {body}: {b}");
            assert_eq!(b["code"], code, "{body}: {b}");
            if let Some(f) = field {
                assert_eq!(b["field"], f, "{body}: {b}");
            }
        }
    }
    assert!(runner.calls().is_empty(), "{:?}", runner.commands());
}

#[tokio::test]
async fn stdio_answers_one_line_with_the_http_body_or_an_error() {
    let (_d, e, _runner) = engine();
    let req = format!(
        "{{\"op\":\"apply\",\"resource\":{}}}\n",
        doc("db", r#"["STORAGE"]"#, "")
    );
    let mut out = Vec::new();
    super::stdio::serve_one(&e, req.as_bytes(), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["volumes"][0]["backing_device"], "/dev/loop3");

    let mut out = Vec::new();
    super::stdio::serve_one(&e, &b"{\"op\":\"get\",\"name\":\"nope\"}\n"[..], &mut out)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["code"], "not_found");

    let mut out = Vec::new();
    super::stdio::serve_one(&e, &b"{\"op\":\"get\",\"name\":\"a;b\"}\n"[..], &mut out)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (Some("invalid_request"), Some("name"))
    );
}

/// A document for `db` with one JSON fragment replaced: `(from, to)` applied to [`doc`].
fn doc_with(from: &str, to: &str) -> String {
    let d = doc("db", r#"["STORAGE"]"#, "");
    assert!(d.contains(from), "{from} not in {d}");
    d.replacen(from, to, 1)
}

#[tokio::test]
async fn thirty_hostile_names_and_documents_get_400_a_code_and_the_field_before_any_process() {
    let (_d, e, runner) = engine();
    let storage = doc("db", r#"["STORAGE"]"#, "");
    let luks = |props: &str| {
        doc(
            "db",
            r#"["LUKS","STORAGE"]"#,
            &format!(r#","luks":{{"passphrase":"p"}},"props":{{{props}}}"#),
        )
    };
    let long = "a".repeat(300);
    // (url name, body, code, field)
    let cases: Vec<(String, String, &str, &str)> = vec![
        // Names in the URL: traversal, shell metacharacters, reserved, unicode, over-long.
        ("x%2F..".into(), storage.clone(), "invalid_name", "name"),
        ("%2E%2E".into(), storage.clone(), "invalid_name", "name"),
        (
            "%2Fetc%2Fpasswd".into(),
            storage.clone(),
            "invalid_name",
            "name",
        ),
        (
            "a%3Brm%20-rf%20%2F".into(),
            storage.clone(),
            "invalid_name",
            "name",
        ),
        (
            "%24%28reboot%29".into(),
            storage.clone(),
            "invalid_name",
            "name",
        ),
        ("a%60id%60".into(), storage.clone(), "invalid_name", "name"),
        ("a%7Cb".into(), storage.clone(), "invalid_name", "name"),
        ("a%0Ab".into(), storage.clone(), "invalid_name", "name"),
        ("a%00b".into(), storage.clone(), "invalid_name", "name"),
        ("-rf".into(), storage.clone(), "invalid_name", "name"),
        ("all".into(), storage.clone(), "invalid_name", "name"),
        ("ALL".into(), storage.clone(), "invalid_name", "name"),
        ("proxy".into(), storage.clone(), "invalid_name", "name"),
        (
            "%C3%A9t%C3%A9".into(),
            storage.clone(),
            "invalid_name",
            "name",
        ),
        (
            "db%E2%80%AE".into(),
            storage.clone(),
            "invalid_name",
            "name",
        ),
        (long.clone(), storage.clone(), "invalid_name", "name"),
        ("a*".into(), storage.clone(), "invalid_name", "name"),
        // Names in the document.
        (
            "db".into(),
            doc("other", r#"["STORAGE"]"#, ""),
            "name_mismatch",
            "name",
        ),
        (
            "db".into(),
            doc("../etc", r#"["STORAGE"]"#, ""),
            "invalid_request",
            "name",
        ),
        (
            "db".into(),
            doc("", r#"["STORAGE"]"#, ""),
            "invalid_request",
            "name",
        ),
        (
            "db".into(),
            doc("all", r#"["STORAGE"]"#, ""),
            "invalid_request",
            "name",
        ),
        (
            "db".into(),
            doc("d b", r#"["STORAGE"]"#, ""),
            "invalid_request",
            "name",
        ),
        (
            "db".into(),
            doc(&long, r#"["STORAGE"]"#, ""),
            "invalid_request",
            "name",
        ),
        // Sizes and volumes.
        (
            "db".into(),
            doc_with("65536", "-1"),
            "invalid_request",
            "volumes[0].size_kib",
        ),
        (
            "db".into(),
            doc_with("65536", "1"),
            "invalid_request",
            "volumes[0].size_kib",
        ),
        (
            "db".into(),
            doc_with("65536", "1e30"),
            "invalid_request",
            "volumes[0].size_kib",
        ),
        (
            "db".into(),
            doc_with("65536", "\"64M; rm\""),
            "invalid_request",
            "volumes[0].size_kib",
        ),
        (
            "db".into(),
            doc_with(r#""number":0"#, r#""number":-1"#),
            "invalid_request",
            "volumes[0].number",
        ),
        (
            "db".into(),
            doc_with(r#""number":0"#, r#""number":100"#),
            "invalid_volumes",
            "volumes[0].number",
        ),
        (
            "db".into(),
            doc_with(
                r#"{"number":0,"size_kib":65536}"#,
                r#"{"number":0,"size_kib":65536},{"number":0,"size_kib":65536}"#,
            ),
            "invalid_volumes",
            "volumes[1].number",
        ),
        (
            "db".into(),
            doc_with(r#"{"number":0,"size_kib":65536}"#, ""),
            "invalid_volumes",
            "volumes",
        ),
        // Pools.
        (
            "db".into(),
            doc_with(r#""pool":"files""#, r#""pool":"-rf""#),
            "invalid_request",
            "storage.pool",
        ),
        (
            "db".into(),
            doc_with(r#""pool":"files""#, r#""pool":"../x""#),
            "invalid_request",
            "storage.pool",
        ),
        (
            "db".into(),
            doc_with(r#""pool":"files""#, r#""pool":"a;b""#),
            "invalid_request",
            "storage.pool",
        ),
        (
            "db".into(),
            doc_with(r#""pool":"files""#, r#""pool":"""#),
            "invalid_request",
            "storage.pool",
        ),
        // Layer stacks.
        (
            "db".into(),
            doc("db", r#"["LUKS","DRBD"]"#, ""),
            "invalid_request",
            "layer_stack",
        ),
        (
            "db".into(),
            doc("db", r#"["STORAGE","STORAGE"]"#, ""),
            "invalid_request",
            "layer_stack",
        ),
        (
            "db".into(),
            doc("db", r#"["NVME","STORAGE"]"#, ""),
            "invalid_request",
            "layer_stack",
        ),
        (
            "db".into(),
            doc("db", r#"["DRBD","STORAGE"]"#, ""),
            "drbd_missing",
            "drbd",
        ),
        // LUKS.
        (
            "db".into(),
            doc("db", r#"["LUKS","STORAGE"]"#, ""),
            "luks_passphrase_missing",
            "passphrase",
        ),
        (
            "db".into(),
            doc(
                "db",
                r#"["LUKS","STORAGE"]"#,
                r#","luks":{"passphrase":""}"#,
            ),
            "luks_passphrase_missing",
            "passphrase",
        ),
        (
            "db".into(),
            luks(r#""Luks/pbkdf":"md5; reboot""#),
            "invalid_prop",
            "props[\"Luks/pbkdf\"]",
        ),
        (
            "db".into(),
            luks(r#""Luks/iter-time":"-1""#),
            "invalid_prop",
            "props[\"Luks/iter-time\"]",
        ),
        // Not a document at all.
        (
            "db".into(),
            r#"{"name":"db","extra":1}"#.into(),
            "invalid_request",
            "",
        ),
        ("db".into(), "not json".into(), "invalid_request", ""),
        ("db".into(), String::new(), "invalid_request", ""),
    ];
    assert!(cases.len() >= 30);
    for (name, body, code, field) in &cases {
        for method in [Method::PUT, Method::POST] {
            let p = if method == Method::POST {
                format!("/v1/resources/{name}/plan")
            } else {
                format!("/v1/resources/{name}")
            };
            let (s, b) = call(&e, method.clone(), &p, Some(TOKEN), body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {p} {body}: {b}");
            assert_eq!(b["code"], *code, "{p} {body}: {b}");
            if !field.is_empty() {
                assert_eq!(b["field"], *field, "{p} {body}: {b}");
            }
            assert!(
                b["message"].as_str().is_some_and(|m| m.len() > 10),
                "a message that says what is wrong: {b}"
            );
        }
    }
    assert!(runner.calls().is_empty(), "{:?}", runner.commands());
}

/// One stdio exchange: the answer line as JSON.
async fn stdio_line(e: &Engine, line: &[u8]) -> serde_json::Value {
    let mut out = Vec::new();
    super::stdio::serve_one(e, line, &mut out).await.unwrap();
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
    serde_json::from_slice(&out).unwrap_or_else(|err| panic!("not JSON ({err}): {out:?}"))
}

#[tokio::test]
async fn stdio_refuses_repeated_keys_unknown_keys_and_answers_bad_utf8_in_json() {
    let (_d, e, runner) = engine();
    let applied = stdio_line(
        &e,
        format!(
            "{{\"op\":\"apply\",\"resource\":{}}}\n",
            doc("xx", r#"["STORAGE"]"#, "")
        )
        .as_bytes(),
    )
    .await;
    assert!(applied.get("error").is_none(), "{applied}");
    let calls = runner.calls().len();
    // Over HTTP a repeated key is refused; so it is here: the last `op` does not win.
    let twice = stdio_line(&e, b"{\"op\":\"list\",\"op\":\"delete\",\"name\":\"xx\"}\n").await;
    assert_eq!(twice["error"]["code"], "invalid_request", "{twice}");
    assert!(
        twice["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field"),
        "{twice}"
    );
    let nested = stdio_line(
        &e,
        format!(
            "{{\"op\":\"apply\",\"resource\":{}}}\n",
            doc("xx", r#"["STORAGE"]"#, "").replacen("{", "{\"name\":\"yy\",", 1)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(nested["error"]["code"], "invalid_request", "{nested}");
    let unknown = stdio_line(&e, b"{\"op\":\"get\",\"name\":\"xx\",\"force\":true}\n").await;
    assert_eq!(unknown["error"]["code"], "invalid_request", "{unknown}");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("force"),
        "{unknown}"
    );
    let bad_utf8 = stdio_line(&e, b"{\"op\":\"get\",\"name\":\"\xff\xfe\"}\n").await;
    assert_eq!(bad_utf8["error"]["code"], "invalid_request", "{bad_utf8}");
    let trailing = stdio_line(&e, b"{\"op\":\"list\"} {\"op\":\"node\"}\n").await;
    assert_eq!(trailing["error"]["code"], "invalid_request", "{trailing}");
    assert_eq!(
        runner.calls().len(),
        calls,
        "nothing ran for a refused line"
    );
}

#[tokio::test]
async fn malformed_json_names_the_field_or_the_position_never_a_question_mark() {
    let (_d, e, _runner) = engine();
    let cut = r#"{"name":"db","layer_stack":["STORAGE"],"volumes":[{"number":0,"size_kib":"#;
    let (s, b) = call(&e, Method::PUT, "/v1/resources/db", Some(TOKEN), cut).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_ne!(b["field"], "?", "{b}");
    let located = b["field"] == "volumes[0].size_kib"
        || b["message"].as_str().unwrap().contains("line 1 column");
    assert!(located, "names the field or the position: {b}");
    for bad in [r#"{"name":"db",}"#, "{\"name\":\"db\" 1}"] {
        let (s, b) = call(&e, Method::PUT, "/v1/resources/db", Some(TOKEN), bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_ne!(b["field"], "?", "{bad}: {b}");
        assert!(
            b["message"].as_str().unwrap().contains("line 1 column"),
            "{bad}: {b}"
        );
    }
}

#[tokio::test]
async fn delete_takes_optional_options_over_http_and_stdio() {
    use blockstor_proto::wire::{DeleteOptions, StdioRequest};
    let wanted = DeleteOptions {
        force: true,
        remaining: vec!["n2".parse().unwrap()],
        wait_seconds: Some(30),
    };
    let body = r#"{"force":true,"remaining":["n2"],"wait_seconds":30}"#;
    assert_eq!(
        super::http::delete_options(body.as_bytes()).unwrap(),
        wanted
    );
    for blank in ["", " \n"] {
        let options = super::http::delete_options(blank.as_bytes()).unwrap();
        assert!(options.is_default(), "{blank:?}");
    }
    let line = r#"{"op":"delete","name":"db","force":true,"remaining":["n2"],"wait_seconds":30}"#;
    match super::stdio::parse(line.as_bytes()).unwrap() {
        StdioRequest::Delete { name, options } => {
            assert_eq!((name.as_str(), options), ("db", wanted.clone()))
        }
        other => panic!("{other:?}"),
    }
    match super::stdio::parse(br#"{"op":"delete","name":"db"}"#).unwrap() {
        StdioRequest::Delete { options, .. } => assert!(options.is_default()),
        other => panic!("{other:?}"),
    }

    let (_d, e, runner) = engine();
    let (s, b) = call(&e, Method::DELETE, "/v1/resources/db", Some(TOKEN), body).await;
    assert_eq!((s, b["deleted"].as_bool()), (StatusCode::OK, Some(false)));
    for (bad, field) in [
        (r#"{"forced":true}"#, Some("forced")),
        (r#"{"remaining":["a;b"]}"#, Some("remaining[0]")),
        (r#"{"wait_seconds":-1}"#, Some("wait_seconds")),
    ] {
        let (s, b) = call(&e, Method::DELETE, "/v1/resources/db", Some(TOKEN), bad).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}: {b}"
        );
        assert_eq!(b["field"].as_str(), field, "{bad}: {b}");
        let line = bad.replacen('{', r#"{"op":"delete","name":"db","#, 1);
        let err = super::stdio::parse(line.as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), field, "{line}");
    }
    let line = br#"{"op":"get","name":"db","force":true}"#;
    let err = super::stdio::parse(line).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("op"), "{err:?}");
    assert!(runner.calls().is_empty(), "{:?}", runner.commands());
}
