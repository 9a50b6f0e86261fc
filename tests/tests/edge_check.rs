//! `edge check` as an operator runs it: the real binary over the RFC 4475 files.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::Command;

use edge_e2e::{edge_binary, workspace_root};

fn fixture(name: &str) -> String {
    workspace_root()
        .join("edge/tests/fixtures/rfc4475")
        .join(format!("{name}.dat"))
        .display()
        .to_string()
}

#[test]
fn valid_messages_are_accepted() {
    let files: Vec<_> = ["wsinv", "intmeth", "esc01", "dblreq", "mpart01", "noreason"]
        .into_iter()
        .map(fixture)
        .collect();
    let out = Command::new(edge_binary())
        .arg("check")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": accepted ")).count(),
        files.len()
    );
    assert!(stdout.contains("dblreq.dat: accepted REGISTER, 8 headers, 0 body bytes"));
}

#[test]
fn invalid_messages_are_rejected_with_their_status() {
    let out = Command::new(edge_binary())
        .args(["check", &fixture("badvers"), &fixture("ncl")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("badvers.dat: rejected 505 Version Not Supported"));
    assert!(stdout.contains("ncl.dat: rejected 400 Bad Content-Length"));
}

#[test]
fn unreadable_file_is_reported() {
    let out = Command::new(edge_binary())
        .args(["check", "/nonexistent/message.sip"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
