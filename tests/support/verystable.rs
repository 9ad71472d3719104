//! Test support: a Bitcoin Core test-framework peer driven from Rust.
//!
//! `tests/interop/btc/peer.py` runs Bitcoin Core's functional-test `P2PInterface` (PyPI
//! `verystable`, pinned in `tests/interop/btc/requirements.txt`) and speaks JSON lines: events
//! on stdout, commands on stdin. This module installs that package into a private virtualenv
//! under `target/` and wraps one script process as [`CorePeer`].
//!
//! Include it from an integration test with
//! `#[path = "support/verystable.rs"] mod verystable;`.
//! Hashes in events and commands are hex in Bitcoin Core's display order (wire bytes
//! reversed); events also carry the wire order under `*_wire` keys.

// Each test crate that includes this file uses a different subset of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Requirements file (relative to the workspace root) pinning the framework version.
const REQUIREMENTS: &str = "tests/interop/btc/requirements.txt";
/// The JSON-lines peer script (relative to the workspace root).
const PEER_SCRIPT: &str = "tests/interop/btc/peer.py";
/// Virtualenv location (relative to the workspace root); `target/` is already git-ignored.
const VENV_DIR: &str = "target/interop-venv";
/// Marker written inside the venv once `pip install` succeeded; holds the requirements text
/// so that a changed pin triggers a reinstall.
const MARKER: &str = ".braid-requirements";

/// How long to wait for another test process that is installing the venv.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// A lock file older than this is left over from a killed process.
const LOCK_STALE: Duration = Duration::from_secs(600);
/// `python -m venv` and `pip install` each get this long.
const INSTALL_STEP_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a `python3 --version` probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest stdout event line accepted: a 4 MB payload as hex plus JSON framing.
const MAX_EVENT_LINE: usize = 9 * 1024 * 1024;
/// Longest stderr line kept (the rest is dropped).
const MAX_STDERR_LINE: usize = 4096;
/// Unmatched events kept for later `expect_event` calls; the oldest are dropped beyond this.
const MAX_BACKLOG: usize = 4096;
/// Stderr lines kept for failure messages.
const STDERR_TAIL: usize = 60;
/// Events quoted in failure messages.
const EVENTS_IN_REPORT: usize = 30;
/// Writing one command to the script's stdin.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the `CI` environment variable asks for hard failures instead of skips.
fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false)
}

/// The workspace root (the facade package lives there).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the interpreter inside a virtualenv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Create (once) a virtualenv at `<workspace>/target/interop-venv` and `pip install -r
/// tests/interop/btc/requirements.txt` into it; does nothing when the marker says the same
/// requirements are installed.
///
/// Returns the venv's python interpreter, or `None` (after a note on stderr) when python3 or
/// the install is unavailable and `CI` is not set, so tests can skip. With `CI` set it panics
/// with the reason instead. Safe to call from many threads and test processes at once: the
/// result is cached per process, and installs are serialised by a lock file.
pub fn ensure_installed() -> Option<PathBuf> {
    static RESULT: OnceLock<Option<PathBuf>> = OnceLock::new();
    RESULT.get_or_init(install_or_skip).clone()
}

/// Skips (non-CI) or panics (CI) with `reason`.
fn skip_or_panic(reason: &str) -> Option<PathBuf> {
    if in_ci() {
        panic!("verystable interop peer unavailable and CI is set: {reason}");
    }
    eprintln!(
        "note: skipping Bitcoin Core framework interop ({reason}); set CI=1 to make this fatal"
    );
    None
}

fn install_or_skip() -> Option<PathBuf> {
    match install() {
        Ok(python) => Some(python),
        Err(reason) => skip_or_panic(&reason),
    }
}

fn install() -> Result<PathBuf, String> {
    let root = workspace_root();
    let requirements_path = root.join(REQUIREMENTS);
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let venv = root.join(VENV_DIR);
    let python = venv_python(&venv);
    if is_installed(&venv, &python, &requirements) {
        return Ok(python);
    }

    let base_python = std::env::var("BRAID_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let log = root.join("target").join("interop-venv.log");
    run_logged(
        Command::new(&base_python).arg("--version"),
        &log,
        PROBE_TIMEOUT,
    )
    .map_err(|e| format!("`{base_python}` is not usable: {e}"))?;

    let _lock = InstallLock::acquire(&root.join("target").join("interop-venv.lock"))?;
    // Another process may have finished the install while we waited for the lock.
    if is_installed(&venv, &python, &requirements) {
        return Ok(python);
    }
    if venv.exists() {
        // A half-made venv (killed install, changed pin): start clean.
        fs::remove_dir_all(&venv).map_err(|e| format!("cannot remove {}: {e}", venv.display()))?;
    }
    run_logged(
        Command::new(&base_python).arg("-m").arg("venv").arg(&venv),
        &log,
        INSTALL_STEP_TIMEOUT,
    )
    .map_err(|e| format!("`{base_python} -m venv` failed: {e}"))?;
    run_logged(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&requirements_path),
        &log,
        INSTALL_STEP_TIMEOUT,
    )
    .map_err(|e| format!("pip install -r {REQUIREMENTS} failed: {e}"))?;
    fs::write(venv.join(MARKER), &requirements)
        .map_err(|e| format!("cannot write install marker: {e}"))?;
    Ok(python)
}

fn is_installed(venv: &Path, python: &Path, requirements: &str) -> bool {
    python.exists()
        && fs::read_to_string(venv.join(MARKER)).is_ok_and(|installed| installed == requirements)
}

/// Runs `cmd` to completion within `timeout`, appending its output to `log`; on failure the
/// error carries the log's tail.
fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<(), String> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Output goes to a file, not a pipe, so a chatty child cannot block on a full pipe while
    // we poll it.
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let start_len = out.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = writeln!(out, "$ {cmd:?}");
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot clone log handle: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {timeout:?}{}",
                    log_tail(log, start_len)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("{status}{}", log_tail(log, start_len)))
    }
}

/// The last few KiB that this run appended to the log.
fn log_tail(log: &Path, from: u64) -> String {
    const TAIL: u64 = 4096;
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let end = f.seek(SeekFrom::End(0)).unwrap_or(from);
        let start = from.max(end.saturating_sub(TAIL));
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let _ = f.take(TAIL).read_to_string(&mut text);
        }
    }
    format!("\n--- {} (tail) ---\n{text}", log.display())
}

/// A cross-process lock: the file exists while one process installs.
struct InstallLock {
    path: PathBuf,
}

impl InstallLock {
    fn acquire(path: &Path) -> Result<InstallLock, String> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(InstallLock {
                        path: path.to_owned(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if lock_is_stale(path) {
                        // The holder died mid-install; whoever removes it first retries.
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "timed out after {LOCK_WAIT:?} waiting for {} (remove it if no install is running)",
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

fn lock_is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > LOCK_STALE)
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A predicate for [`CorePeer::expect_event`]: a `recv` event for `command`.
pub fn recv(command: &str) -> impl Fn(&Value) -> bool {
    let command = command.to_owned();
    move |e| e["event"] == "recv" && e["command"] == command.as_str()
}

/// A predicate for [`CorePeer::expect_event`]: an event of kind `kind` (`connected`, …).
pub fn event(kind: &str) -> impl Fn(&Value) -> bool {
    let kind = kind.to_owned();
    move |e| e["event"] == kind.as_str()
}

/// Reads `\n`-terminated lines with a length cap, and can be cancelled between awaits
/// without losing data (the partial line lives in `self`).
struct LineReader<R> {
    inner: R,
    partial: Vec<u8>,
    overflow: bool,
    max: usize,
}

/// One line from [`LineReader`].
struct Line {
    bytes: Vec<u8>,
    /// Bytes beyond the cap were dropped.
    truncated: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            partial: Vec::new(),
            overflow: false,
            max,
        }
    }

    /// The next line, or `None` at end of stream (a final unterminated line is returned).
    async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if self.partial.is_empty() && !self.overflow {
                    return Ok(None);
                }
                return Ok(Some(self.take_line()));
            }
            let (take, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(pos) => (pos, pos + 1, true),
                None => (chunk.len(), chunk.len(), false),
            };
            let room = self.max.saturating_sub(self.partial.len());
            let keep = take.min(room);
            self.partial
                .extend_from_slice(chunk.get(..keep).unwrap_or_default());
            self.overflow |= keep < take;
            self.inner.consume(used);
            if done {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        let truncated = std::mem::take(&mut self.overflow);
        Line {
            bytes: std::mem::take(&mut self.partial),
            truncated,
        }
    }
}

/// One running `peer.py`: a Bitcoin Core test-framework peer on loopback (regtest magic).
///
/// Events are read lazily by [`CorePeer::expect_event`]; events that did not match are kept
/// (bounded) for later calls, so the order of expectations need not follow arrival order.
/// The process is killed when the value is dropped.
pub struct CorePeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: LineReader<BufReader<ChildStdout>>,
    /// Unmatched events, oldest first.
    backlog: VecDeque<Value>,
    /// Every event seen, newest last, for failure messages.
    history: VecDeque<Value>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stdout_closed: bool,
}

impl CorePeer {
    /// Starts `python peer.py <args>` in the venv (installing it first if needed), e.g.
    /// `&["--listen", "0"]` or `&["--dial", "127.0.0.1:18444"]`.
    ///
    /// Fails with `NotFound` when [`ensure_installed`] skipped (no python, CI unset).
    pub async fn spawn(args: &[&str]) -> io::Result<CorePeer> {
        CorePeer::spawn_with(None, args).await
    }

    /// Like [`CorePeer::spawn`], inside network namespace `netns` (`ip netns exec`).
    pub async fn spawn_in(netns: &str, args: &[&str]) -> io::Result<CorePeer> {
        CorePeer::spawn_with(Some(netns), args).await
    }

    async fn spawn_with(netns: Option<&str>, args: &[&str]) -> io::Result<CorePeer> {
        let python = match tokio::task::spawn_blocking(ensure_installed).await {
            Ok(python) => python,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(io::Error::other(e)),
        }
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the verystable interop peer is unavailable (see the note on stderr)",
            )
        })?;
        let root = workspace_root();
        let mut command = match netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns]).arg(python);
                c
            }
            None => tokio::process::Command::new(python),
        };
        let mut child = command
            .arg("-u")
            .arg(root.join(PEER_SCRIPT))
            .args(args)
            .current_dir(&root)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let missing = || io::Error::other("child stdio was not captured");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;

        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let tail = Arc::clone(&stderr_tail);
        // Drain stderr continuously so the child never blocks on a full pipe; keep the tail.
        tokio::spawn(async move {
            let mut lines = LineReader::new(BufReader::new(stderr), MAX_STDERR_LINE);
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = String::from_utf8_lossy(&line.bytes).into_owned();
                if line.truncated {
                    text.push_str(" [...]");
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            }
        });

        Ok(CorePeer {
            child,
            stdin: Some(stdin),
            stdout: LineReader::new(BufReader::new(stdout), MAX_EVENT_LINE),
            backlog: VecDeque::new(),
            history: VecDeque::new(),
            stderr_tail,
            stdout_closed: false,
        })
    }

    /// Waits up to `timeout` for an event matching `pred` (first among kept unmatched events,
    /// then new ones) and returns it. Panics with the recent events and stderr on timeout, on
    /// end of output, or on a line that is not JSON.
    pub async fn expect_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            if let Some(found) = self.backlog.remove(pos) {
                return found;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stdout_closed {
                self.fail("the peer's output ended before the expected event")
                    .await;
            }
            let line = match tokio::time::timeout_at(deadline, self.stdout.next_line()).await {
                Err(_) => {
                    self.fail(&format!("no matching event within {timeout:?}"))
                        .await
                }
                Ok(Err(e)) => self.fail(&format!("reading the peer's stdout: {e}")).await,
                Ok(Ok(None)) => {
                    self.stdout_closed = true;
                    continue;
                }
                Ok(Ok(Some(line))) => line,
            };
            if line.truncated {
                self.fail(&format!("an event line exceeded {MAX_EVENT_LINE} bytes"))
                    .await;
            }
            let ev: Value = match serde_json::from_slice(&line.bytes) {
                Ok(ev) => ev,
                Err(e) => {
                    let text = String::from_utf8_lossy(&line.bytes).into_owned();
                    self.fail(&format!("non-JSON line on stdout ({e}): {text}"))
                        .await
                }
            };
            if self.history.len() == EVENTS_IN_REPORT {
                self.history.pop_front();
            }
            self.history.push_back(ev.clone());
            if pred(&ev) {
                return ev;
            }
            if self.backlog.len() == MAX_BACKLOG {
                self.backlog.pop_front();
            }
            self.backlog.push_back(ev);
        }
    }

    /// Sends one command line, e.g. `json!({"cmd": "ping", "nonce": 7})`. Panics if the
    /// script's stdin is closed or the write does not finish within a few seconds.
    pub async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("send after close_stdin").await
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(&format!("writing command {cmd}: {e}")).await,
            Err(_) => {
                self.fail(&format!("writing command {cmd} took over {SEND_TIMEOUT:?}"))
                    .await
            }
        }
    }

    /// Waits for the `listening` event of a `--listen` peer and returns its port.
    pub async fn listening_port(&mut self, timeout: Duration) -> u16 {
        let ev = self.expect_event(event("listening"), timeout).await;
        match ev["port"].as_u64().map(u16::try_from) {
            Some(Ok(port)) if port != 0 => port,
            _ => self.fail(&format!("bad listening event: {ev}")).await,
        }
    }

    /// The events read so far and kept unmatched that satisfy `pred`, oldest first, left in
    /// place. Only events already read count: wait for a later one first (the `pong` to a
    /// `ping`, say) to be sure everything before it has been read.
    pub fn kept(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.backlog.iter().filter(|e| pred(e)).cloned().collect()
    }

    /// Closes the script's stdin, which makes it disconnect and exit.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits up to `timeout` for the process to exit; panics if it does not.
    pub async fn shutdown(mut self, timeout: Duration) -> ExitStatus {
        self.close_stdin();
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("waiting for exit: {e}")).await,
            Err(_) => {
                self.fail(&format!("did not exit within {timeout:?} of stdin closing"))
                    .await
            }
        }
    }

    /// Panics with `what`, the recent events and the stderr tail.
    async fn fail(&mut self, what: &str) -> ! {
        // Give the stderr drain a moment so a Python traceback makes it into the message.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "still running".to_owned(),
            Err(e) => format!("unknown ({e})"),
        };
        let events: Vec<String> = self.history.iter().map(Value::to_string).collect();
        let stderr: Vec<String> = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        panic!(
            "CorePeer: {what}\nprocess: {status}\nrecent events:\n  {}\nstderr tail:\n  {}",
            events.join("\n  "),
            stderr.join("\n  ")
        );
    }
}
