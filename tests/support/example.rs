//! Runs the programs in `examples/` as child processes and reads their output line by line.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples/`);
//! a test run filtered to one test target (`cargo test --test example_chat`) does not, so
//! the first use builds them with `cargo build --examples` (bounded in time). Every wait
//! here has a timeout and every child is killed when its handle drops.

// Each integration-test binary compiles this file separately and uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Upper bound for building the examples when a filtered test run did not.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of stdout buffered ahead of the test; the child blocks past this.
const LINE_QUEUE: usize = 4096;
/// Most stderr kept for assertions.
const MAX_STDERR: u64 = 64 * 1024;

/// Path of a built example, building the examples first if it is missing or older than
/// its source.
pub fn example_path(name: &str) -> PathBuf {
    // The test executable is target/<profile>/deps/<test>-<hash>; examples sit in
    // target/<profile>/examples/.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if is_stale(&path, name) {
        build_examples();
    }
    assert!(
        path.exists(),
        "example binary {} missing after building",
        path.display()
    );
    path
}

fn is_stale(binary: &std::path::Path, name: &str) -> bool {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else {
        return true;
    };
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    [src.join(format!("{name}.rs")), src.join("common/mod.rs")]
        .iter()
        .any(|s| modified(s).is_some_and(|m| m > built))
}

/// `cargo build --examples` once per test process (the same profile as this test).
fn build_examples() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let mut child = cmd.spawn().expect("spawn cargo build --examples");
        let deadline = std::time::Instant::now() + BUILD_TIMEOUT;
        loop {
            match child.try_wait().expect("wait for cargo") {
                Some(status) => {
                    assert!(status.success(), "cargo build --examples failed");
                    return;
                }
                None if std::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("cargo build --examples took longer than {BUILD_TIMEOUT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
}

/// A running example. Killed when dropped.
pub struct Example {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far, in order (for assertions and failure messages).
    pub seen: Vec<String>,
}

impl Example {
    /// Start `examples/<name>` with `args`; stdin, stdout and stderr are piped.
    pub fn spawn(name: &str, args: &[&str]) -> Example {
        let mut cmd = Command::new(example_path(name));
        cmd.args(args);
        Example::spawn_command(name, cmd)
    }

    /// Start `examples/<name>` inside network namespace `netns` (`ip netns exec`, which
    /// execs the example itself: killing the child kills the example).
    pub fn spawn_in(netns: &str, name: &str, args: &[&str]) -> Example {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(example_path(name))
            .args(args);
        Example::spawn_command(name, cmd)
    }

    fn spawn_command(name: &str, mut cmd: Command) -> Example {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel(LINE_QUEUE);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
        });
        Example {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stdout line, or `None` on timeout or end of output.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Read lines until one contains `needle`; panics (showing the output) if none does
    /// within `timeout`.
    pub async fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!(
                    "no line containing {needle:?} within {timeout:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The node's enode URL from its `enode: ...` line.
    pub async fn enode(&mut self) -> String {
        let line = self.expect_line("enode: ", Duration::from_secs(10)).await;
        line.trim_start_matches("enode: ").trim().to_string()
    }

    /// Type one line on the example's stdin.
    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        let write = async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        };
        tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("stdin write timed out")
            .expect("stdin write failed");
    }

    /// Wait for exit (killing the child after `timeout`); returns its status, the rest of
    /// its stdout and all of its stderr.
    pub async fn wait(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        self.stdin = None;
        let mut stderr = self.child.stderr.take().expect("stderr piped");
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for example"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "example did not exit within {timeout:?}; output:\n{}",
                    self.seen.join("\n")
                );
            }
        };
        while self.next_line(Duration::from_secs(2)).await.is_some() {}
        let mut err = String::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            (&mut stderr).take(MAX_STDERR).read_to_string(&mut err),
        )
        .await;
        (status, self.seen, err)
    }
}
