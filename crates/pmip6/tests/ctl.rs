//! `pmip6 ctl` through the binary: without a daemon it fails clearly, with a non-zero exit.

use std::process::Command;

#[test]
fn ctl_without_a_daemon_says_so_and_fails() {
    let socket = std::env::temp_dir().join(format!("pmip6-ctl-none-{}", std::process::id())).join("lma.sock");
    let output = Command::new(env!("CARGO_BIN_EXE_pmip6"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("bindings")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pmip6: {e}"));
    assert!(!output.status.success(), "exit status {:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to the control socket"), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn ctl_refuses_a_revoke_without_a_target() {
    let output = Command::new(env!("CARGO_BIN_EXE_pmip6"))
        .args(["ctl", "--socket", "/nonexistent/lma.sock", "revoke"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run pmip6: {e}"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mn"));
}
