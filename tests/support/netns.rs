//! Separate kernel network stacks for tests: network namespaces joined by veth pairs,
//! created by the test itself (as root) and removed when its [`Lab`] drops, even on panic.
//!
//! Every namespace is named `braid-<pid>-<lab>-<role>`, so parallel tests and parallel
//! runs never collide, and every address used lives only inside those namespaces (the
//! root namespace gets no interface and no address). Interfaces are created inside their
//! namespaces, so their names are private to them too.
//!
//! Nodes run inside a namespace two ways: as processes (`ip netns exec`), or in this test
//! process on an [`NsRuntime`], a thread that entered the namespace and runs a tokio
//! runtime: sockets its tasks open belong to that namespace.
//!
//! Without root or the OS packages (`tests/netns/setup.sh` checks them, and installs them
//! when `CI` is set) [`Lab::new`] returns `None` after a loud message, or panics under CI.

// Each integration-test binary compiles this file separately and uses only part of it.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Bound on any one `ip`/`nft` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Whether this process may build namespaces: root, and the packages present (installed
/// under CI). Checked once per process; `Err` says why not.
fn ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let uid =
                run_capture(Command::new("id").arg("-u")).map_err(|e| format!("id -u: {e}"))?;
            if uid.trim() != "0" {
                return Err("not root (network namespaces need root)".into());
            }
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/netns/setup.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            remove_stale_namespaces();
            Ok(())
        })
        .clone()
}

/// Namespaces left by an earlier run of these tests that was killed (its pid is gone).
fn remove_stale_namespaces() {
    let Ok(list) = run_capture(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("braid-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_capture(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} took longer than {COMMAND_TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A set of namespaces and the daemons running in them, all removed on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    daemons: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    /// A new, empty lab named `tag`; `None` (after a loud message) when namespaces cannot
    /// be made here and `CI` is unset. Under `CI` that is a failure.
    pub fn new(tag: &str) -> Option<Lab> {
        if let Err(why) = ready() {
            if std::env::var_os("CI").is_some() {
                panic!("network-namespace tests cannot run under CI: {why}");
            }
            eprintln!(
                "!!! SKIPPING network-namespace test {tag}: {why} (set CI to make this fail)"
            );
            return None;
        }
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("braid-{}-{n}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab directory");
        Some(Lab {
            prefix,
            namespaces: Vec::new(),
            daemons: Vec::new(),
            dir,
        })
    }

    /// A scratch directory for this lab's files (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create namespace `role` (loopback up); returns its full name.
    pub fn netns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair between namespaces `a` and `b`, interface `a_if` with `a_cidr` in `a`
    /// and `b_if` with `b_cidr` in `b`, both up.
    pub fn link(&self, a: &str, a_if: &str, a_cidr: &str, b: &str, b_if: &str, b_cidr: &str) {
        ip(&[
            "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
            ip(&["-n", ns, "addr", "add", cidr, "dev", ifname]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
    }

    /// Run a command inside namespace `ns`; its stdout. Panics on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        run_capture(Command::new("ip").args(["netns", "exec", ns]).args(args))
            .unwrap_or_else(|e| panic!("in {ns}: {e}"))
    }

    /// Load an nftables ruleset into namespace `ns`.
    pub fn nft(&self, ns: &str, ruleset: &str) {
        let file = self.dir.join(format!("{ns}.nft"));
        std::fs::write(&file, ruleset).expect("write ruleset");
        self.exec(ns, &["nft", "-f", file.to_str().expect("utf-8 path")]);
    }

    /// Start a long-running program in namespace `ns`, its output to `<dir>/<log>`;
    /// killed when the lab drops.
    pub fn daemon(&mut self, ns: &str, args: &[&str], log: &str) {
        let out = std::fs::File::create(self.dir.join(log)).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {ns}: {e}"));
        self.daemons.push(child);
    }

    /// The contents of one of the lab's files ("" when missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            // Processes still inside (only ours can be: the namespace is this lab's).
            if let Ok(pids) = run_capture(Command::new("ip").args(["netns", "pids", ns])) {
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            if let Err(e) = run_capture(Command::new("ip").args(["netns", "del", ns])) {
                eprintln!("could not remove namespace {ns}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    run_capture(Command::new("ip").args(args)).unwrap_or_else(|e| panic!("{e}"));
}

/// A thread inside a network namespace running a tokio runtime: futures spawned on it
/// open their sockets in that namespace. Stops (dropping its tasks) when dropped.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Enter namespace `ns` on a new thread and start a runtime there.
    pub fn enter(ns: &str) -> NsRuntime {
        let path = format!("/var/run/netns/{ns}");
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("netns {ns}"))
            .spawn(move || {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns takes a valid descriptor (the namespace file, open for the
                // call) and changes only this thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                handle_tx.send(rt.handle().clone()).expect("send handle");
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn netns thread");
        let handle = handle_rx.recv().expect("netns runtime started");
        NsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Run `fut` inside the namespace and wait for its output.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle
            .spawn(fut)
            .await
            .expect("task in netns panicked")
    }

    /// Start `fut` inside the namespace without waiting.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(fut)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
