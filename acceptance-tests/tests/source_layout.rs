//! The source keeps the shape docs/design.md §2 describes: no import circle between files in
//! any crate (issue 15). The check is scripts/check-import-circles.py; this test runs it on the
//! workspace and, so that it can be seen to fail, on a two-file crate with a circle.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("acceptance-tests sits in the workspace")
        .to_owned()
}

fn check(dirs: &[PathBuf]) -> Output {
    Command::new("python3")
        .arg(workspace().join("scripts/check-import-circles.py"))
        .args(dirs)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs it)")
}

#[test]
fn no_crate_of_the_workspace_has_an_import_circle_between_files() {
    let root = workspace();
    let crates: Vec<PathBuf> = ["proto", "provider", "agent", "acceptance-tests", "bench"]
        .iter()
        .map(|c| root.join(c).join("src"))
        .collect();
    let out = check(&crates);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 import circle(s) in 5 crate(s)"), "{text}");
}

#[test]
fn a_child_importing_from_the_parent_that_imports_it_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("pool")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod pool;\n").unwrap();
    std::fs::write(
        src.join("pool/mod.rs"),
        "mod file;\npub struct Scan;\npub fn open() { file::attach(); }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("pool/file.rs"),
        "use super::Scan;\npub fn attach() { let _ = Scan; }\n",
    )
    .unwrap();
    let out = check(&[src]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("pool/mod.rs") && text.contains("pool/file.rs"),
        "{text}"
    );
}
