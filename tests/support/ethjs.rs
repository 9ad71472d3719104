//! Drives the @ethereumjs/devp2p interop peer (`tests/interop/ethjs/peer.mjs`) from Rust tests,
//! and, through the same machinery, other Node.js harnesses under `tests/interop/` (the
//! @chainsafe/discv5 node in `tests/interop/discv5/`).
//!
//! The JS peer prints one JSON event per line on stdout and reads one JSON command per line on
//! stdin; see the header of `peer.mjs` for the protocol. This module installs its npm
//! dependencies once (safely across concurrently running test binaries), spawns it, and offers
//! timed waits for its events.

// Each integration-test binary compiles this file separately and uses only part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Oldest Node.js major version peer.mjs is written for (ESM, `socket.closed`).
const MIN_NODE_MAJOR: u32 = 20;
/// Upper bound for `npm ci`; it normally takes 2–3 s.
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for another process's install before giving up.
const LOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(360);
/// A lock older than this was left by a crashed install and may be broken.
const STALE_LOCK_AGE: Duration = Duration::from_secs(600);
/// Pause between polls of the install lock and of `npm ci`.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Written into node_modules after a successful `npm ci`; holds the lock file it installed.
const STAMP_FILE: &str = ".braid-install-stamp";
/// Guards `npm ci` against concurrent test binaries.
const LOCK_FILE: &str = ".braid-install.lock";
/// Unconsumed events kept per peer; older ones are dropped (with a note on stderr).
const MAX_PENDING_EVENTS: usize = 1024;
/// Upper bound for writing one command to the peer's stdin.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for the peer to exit after `quit`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Directory holding package.json, package-lock.json and peer.mjs.
pub fn harness_dir() -> PathBuf {
    harness_dir_for("ethjs")
}

/// Directory `tests/interop/<harness>` holding a Node.js harness (package.json,
/// package-lock.json and its scripts).
pub fn harness_dir_for(harness: &str) -> PathBuf {
    // Test binaries of the workspace's member crates (cli/) share this file: look in the
    // package's own directory first, then in the workspace root above it.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("tests/interop").join(harness);
    match here.parent() {
        Some(root) if !dir.exists() => root.join("tests/interop").join(harness),
        _ => dir,
    }
}

/// Ensure node + npm exist and `npm ci` has run in tests/interop/ethjs (once per process; skip if
/// node_modules is up to date w.r.t. package-lock.json). Returns `None` when node is missing and
/// env `CI` is NOT set (caller skips with a loud eprintln), panics with a clear message when `CI`
/// is set. Also panics when node exists but the install fails: that is a broken setup, not a skip.
pub fn ensure_installed() -> Option<PathBuf> {
    ensure_installed_for("ethjs")
}

/// [`ensure_installed`] for the harness in `tests/interop/<harness>`.
pub fn ensure_installed_for(harness: &str) -> Option<PathBuf> {
    static INSTALLED: Mutex<Vec<(String, Option<PathBuf>)>> = Mutex::new(Vec::new());
    // Held through the install: a second caller in this process waits and reuses the result.
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = installed.iter().find(|(name, _)| name == harness) {
        return dir.clone();
    }
    let dir = install_once(harness);
    installed.push((harness.to_string(), dir.clone()));
    dir
}

fn install_once(harness: &str) -> Option<PathBuf> {
    if let Err(why) = check_tools() {
        if std::env::var_os("CI").is_some() {
            panic!("{harness} interop peer unavailable and CI is set: {why}");
        }
        eprintln!(
            "!!! {harness} interop tests SKIPPED: {why} (install Node.js >= {MIN_NODE_MAJOR})"
        );
        return None;
    }
    let dir = harness_dir_for(harness);
    let started = Instant::now();
    if let Err(why) = install_locked(&dir) {
        panic!(
            "{harness} interop peer: npm ci in {} failed: {why}",
            dir.display()
        );
    }
    eprintln!(
        "{harness} interop peer ready in {} ({:.1?})",
        dir.display(),
        started.elapsed()
    );
    Some(dir)
}

/// Checks that `node` (recent enough) and `npm` run.
fn check_tools() -> Result<(), String> {
    let version = tool_output("node", &["--version"])?;
    let major = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot parse `node --version` output {version:?}"))?;
    if major < MIN_NODE_MAJOR {
        return Err(format!(
            "node {} is older than v{MIN_NODE_MAJOR}",
            version.trim()
        ));
    }
    tool_output("npm", &["--version"])?;
    Ok(())
}

fn tool_output(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = StdCommand::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("`{tool}` not runnable: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{tool} {}` exited with {}",
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when node_modules was installed from exactly the current package-lock.json.
fn up_to_date(dir: &Path) -> io::Result<bool> {
    let lock = fs::read(dir.join("package-lock.json"))?;
    match fs::read(dir.join("node_modules").join(STAMP_FILE)) {
        Ok(stamp) => Ok(stamp == lock),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the install lock when dropped, so a panic cannot leave it behind.
struct LockGuard(PathBuf);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Takes the cross-process install lock (create_new is atomic), then installs if still needed.
fn install_locked(dir: &Path) -> Result<(), String> {
    if up_to_date(dir).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let lock_path = dir.join(LOCK_FILE);
    let deadline = Instant::now() + LOCK_WAIT_TIMEOUT;
    let _guard = loop {
        match File::create_new(&lock_path) {
            Ok(_) => break LockGuard(lock_path.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if lock_is_stale(&lock_path) {
                    eprintln!("removing stale {}", lock_path.display());
                    let _ = fs::remove_file(&lock_path);
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "timed out after {LOCK_WAIT_TIMEOUT:?} waiting for {}",
                        lock_path.display()
                    ));
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            Err(e) => return Err(format!("creating {}: {e}", lock_path.display())),
        }
    };
    // Another process may have finished the install while we waited for the lock.
    if up_to_date(dir).map_err(|e| e.to_string())? {
        return Ok(());
    }
    run_npm_ci(dir)?;
    let lock = fs::read(dir.join("package-lock.json")).map_err(|e| e.to_string())?;
    fs::write(dir.join("node_modules").join(STAMP_FILE), lock).map_err(|e| e.to_string())
}

fn lock_is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_LOCK_AGE)
}

fn run_npm_ci(dir: &Path) -> Result<(), String> {
    eprintln!("running `npm ci` in {}", dir.display());
    let mut child = StdCommand::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        // npm's progress goes to the terminal, not into the test's JSON pipes.
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning npm: {e}"))?;
    let deadline = Instant::now() + NPM_CI_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("npm ci exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("npm ci took longer than {NPM_CI_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(e) => return Err(format!("waiting for npm: {e}")),
        }
    }
}

/// A running `peer.mjs` process. Killed when dropped.
pub struct EthjsPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Events read but not yet consumed by an `expect_event`, oldest first.
    pending: VecDeque<Value>,
    /// Set once stdout reached EOF (the peer exited).
    eof: bool,
}

impl EthjsPeer {
    /// Spawns `node peer.mjs <args>` (installing dependencies first if needed). Fails with
    /// `ErrorKind::NotFound` when node is unavailable (see [`ensure_installed`]).
    pub async fn spawn(args: &[&str]) -> io::Result<EthjsPeer> {
        // The install blocks (it may run npm); keep it off the async worker threads.
        let dir = tokio::task::spawn_blocking(ensure_installed)
            .await
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "node/npm not available"))?;
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child stdout not captured"))?;
        Ok(EthjsPeer {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            pending: VecDeque::new(),
            eof: false,
        })
    }

    /// Spawns `node <script> <args>` from the harness directory (e.g. `dpt.mjs`, the
    /// discovery node), with the same JSON-lines protocol and lifetime as [`Self::spawn`].
    pub async fn spawn_script(script: &str, args: &[&str]) -> io::Result<EthjsPeer> {
        Self::spawn_script_in("ethjs", script, args).await
    }

    /// Spawns `node <script> <args>` from `tests/interop/<harness>`, installing that
    /// harness first if needed; the same protocol and lifetime as [`Self::spawn`].
    pub async fn spawn_script_in(
        harness: &str,
        script: &str,
        args: &[&str],
    ) -> io::Result<EthjsPeer> {
        let name = harness.to_string();
        let dir = tokio::task::spawn_blocking(move || ensure_installed_for(&name))
            .await
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "node/npm not available"))?;
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child stdout not captured"))?;
        Ok(EthjsPeer {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            pending: VecDeque::new(),
            eof: false,
        })
    }

    /// Next JSON event whose "event" equals `name`, with a timeout. Events of other kinds stay
    /// queued (bounded) for later calls, so the order of expectations need not match arrival.
    /// Panics on timeout or when the peer exits first, listing the unconsumed events.
    pub async fn expect_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(ev) = self.take_pending(name) {
            return ev;
        }
        loop {
            match tokio::time::timeout_at(deadline, self.read_event()).await {
                Ok(Some(ev)) if event_name(&ev) == Some(name) => return ev,
                Ok(Some(ev)) => self.push_pending(ev),
                Ok(None) => panic!(
                    "ethjs peer exited before event {name:?}; unconsumed events: {:#?}",
                    self.pending
                ),
                Err(_) => panic!(
                    "no {name:?} event from ethjs peer within {timeout:?}; unconsumed events: {:#?}",
                    self.pending
                ),
            }
        }
    }

    /// The next event of any kind (queued ones first), or `None` on timeout or exit. Useful to
    /// assert that nothing arrives.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        tokio::time::timeout(timeout, self.read_event())
            .await
            .ok()
            .flatten()
    }

    /// Events read but not yet consumed, oldest first.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    /// Writes one command line (e.g. `json!({"cmd":"send","cap":"chat","code":1,"payload":"c0"})`).
    /// Panics if the peer's stdin is gone or does not accept the line in time.
    pub async fn send(&mut self, cmd: Value) {
        if let Err(e) = self.try_send(&cmd).await {
            panic!("writing {cmd} to ethjs peer: {e}");
        }
    }

    async fn try_send(&mut self, cmd: &Value) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(ErrorKind::BrokenPipe, "stdin already closed"))?;
        let mut line = cmd.to_string();
        line.push('\n');
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        tokio::time::timeout(SEND_TIMEOUT, write)
            .await
            .map_err(|_| io::Error::new(ErrorKind::TimedOut, format!("after {SEND_TIMEOUT:?}")))?
    }

    /// Asks the peer to quit (it sends DISCONNECT 0x08 to its peers), closes stdin and waits for
    /// the exit; kills it if it takes longer than a few seconds. Returns whether it exited cleanly.
    pub async fn quit(mut self) -> bool {
        // The peer may already be gone (e.g. after a fatal error); that is not worth a panic.
        let _ = self.try_send(&serde_json::json!({"cmd": "quit"})).await;
        // Closing stdin is the peer's second exit signal.
        self.stdin = None;
        match tokio::time::timeout(QUIT_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            Ok(Err(_)) | Err(_) => {
                let _ = self.child.kill().await;
                false
            }
        }
    }

    fn take_pending(&mut self, name: &str) -> Option<Value> {
        let idx = self
            .pending
            .iter()
            .position(|ev| event_name(ev) == Some(name))?;
        self.pending.remove(idx)
    }

    fn push_pending(&mut self, ev: Value) {
        if self.pending.len() >= MAX_PENDING_EVENTS {
            if let Some(old) = self.pending.pop_front() {
                eprintln!("ethjs peer: dropping unconsumed event {old}");
            }
        }
        self.pending.push_back(ev);
    }

    /// Reads stdout up to the next JSON event; `None` at EOF. Non-JSON lines (there should be
    /// none: peer.mjs logs to stderr) are echoed to stderr and skipped.
    async fn read_event(&mut self) -> Option<Value> {
        while !self.eof {
            match self.stdout.next_line().await {
                Ok(Some(line)) => match serde_json::from_str::<Value>(&line) {
                    Ok(ev) if event_name(&ev).is_some() => return Some(ev),
                    _ => eprintln!("ethjs peer: ignoring stdout line {line:?}"),
                },
                Ok(None) => self.eof = true,
                Err(e) => {
                    eprintln!("ethjs peer: reading stdout: {e}");
                    self.eof = true;
                }
            }
        }
        None
    }
}

fn event_name(ev: &Value) -> Option<&str> {
    ev.get("event").and_then(Value::as_str)
}
