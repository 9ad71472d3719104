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
/// Bound on `tests/netns/setup.sh` (which may install packages under CI).
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Whether this process may build namespaces: root, and the packages present (installed
/// under CI). Checked once per process; `Err` says why not.
fn ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Err("not root (network namespaces need root)".into());
            }
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/netns/setup.sh");
            // Bounded: an apt-get install under CI may take minutes, never forever.
            run_capture_within(Command::new("bash").arg(&script), SETUP_TIMEOUT)?;
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
    run_capture_within(cmd, COMMAND_TIMEOUT)
}

fn run_capture_within(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id() as i32;
    // Output is read to the end on another thread, so a chatty command never blocks on
    // a full pipe while we wait.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(|e| e.to_string())?,
        Err(_) => {
            // SAFETY: kill has no memory preconditions; `pid` is our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("{cmd:?} took longer than {timeout:?}"));
        }
    };
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

    /// Set a sysctl of namespace `ns` (its own `/proc/sys/net`), e.g.
    /// `net/ipv4/ip_forward`.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.exec(ns, &["sh", "-c", &format!("echo {value} > {path}")]);
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
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: kill has no memory preconditions; the pid is inside this
                    // lab's own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
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

/// Packets a [`DelayLine`] holds per direction; beyond it they are dropped.
const LINE_QUEUE: usize = 4096;

/// What a [`DelayLine`] did.
#[derive(Debug, Default)]
pub struct LineStats {
    /// Packets delivered.
    pub forwarded: std::sync::atomic::AtomicU64,
    /// Packets dropped on purpose (the loss rate).
    pub dropped: std::sync::atomic::AtomicU64,
}

/// A point-to-point link with latency and loss between two namespaces, in place of
/// `tc netem`, which this kernel lacks (`CONFIG_NET_SCH_NETEM` is not set): a TUN device
/// in each namespace, and threads here that carry every packet from one to the other
/// after `delay`, dropping each with probability `loss`. Order is kept (the delay is
/// constant). Stops when dropped.
pub struct DelayLine {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Delivered and dropped packets, both directions.
    pub stats: std::sync::Arc<LineStats>,
}

impl Lab {
    /// A [`DelayLine`] between `a` (address `a_ip`) and `b` (address `b_ip`): each side
    /// gets a `tun0` with a /32 route to the other.
    pub fn delay_line(
        &self,
        a: &str,
        a_ip: &str,
        b: &str,
        b_ip: &str,
        delay: Duration,
        loss: f64,
    ) -> DelayLine {
        for (ns, local, peer) in [(a, a_ip, b_ip), (b, b_ip, a_ip)] {
            ip(&["-n", ns, "tuntap", "add", "dev", "tun0", "mode", "tun"]);
            ip(&["-n", ns, "addr", "add", local, "peer", peer, "dev", "tun0"]);
            ip(&["-n", ns, "link", "set", "tun0", "up"]);
        }
        let tun_a = std::sync::Arc::new(open_tun_in(a, "tun0"));
        let tun_b = std::sync::Arc::new(open_tun_in(b, "tun0"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stats = std::sync::Arc::new(LineStats::default());
        let mut threads = Vec::new();
        for (from, to) in [(tun_a.clone(), tun_b.clone()), (tun_b, tun_a)] {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<(std::time::Instant, Vec<u8>)>(LINE_QUEUE);
            let (stop_r, stats_r) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                use rand::Rng;
                use std::io::Read;
                let mut rng = rand::thread_rng();
                let mut buf = vec![0u8; 65536];
                while !stop_r.load(Ordering::Relaxed) {
                    if !readable(&from, 50) {
                        continue;
                    }
                    let Ok(n) = (&*from).read(&mut buf) else {
                        continue;
                    };
                    if rng.gen_bool(loss) {
                        stats_r.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let due = std::time::Instant::now() + delay;
                    if tx.try_send((due, buf[..n].to_vec())).is_err() {
                        stats_r.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
            let (stop_w, stats_w) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                use std::io::Write;
                while !stop_w.load(Ordering::Relaxed) {
                    let Ok((due, packet)) = rx.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                    if (&*to).write(&packet).is_ok() {
                        stats_w.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        DelayLine {
            stop,
            threads,
            stats,
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether `file` has a packet to read within `timeout_ms`.
fn readable(file: &std::fs::File, timeout_ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    n > 0 && fd.revents & libc::POLLIN != 0
}

/// Attach to TUN device `name` in namespace `ns` (the lookup by name happens in the
/// caller's namespace, hence the thread).
fn open_tun_in(ns: &str, name: &str) -> std::fs::File {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let (ns, name) = (ns.to_string(), name.to_string());
    std::thread::spawn(move || {
        let netns = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        // SAFETY: a valid namespace descriptor; affects only this short-lived thread.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `IfReq` lays out
        // (16-byte name, flags, padding to 40 bytes).
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        assert_eq!(
            rc,
            0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        tun
    })
    .join()
    .expect("open tun")
}
