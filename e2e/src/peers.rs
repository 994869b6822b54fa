//! Real servers and clients that nobody here wrote, for the connection-level tests: Redis
//! (`redis-server`, the Debian package, installed with `apt-get` on first use), its Python
//! client (`redis` from PyPI, installed into `target/e2e-redis-py/`) and `openssl` (Debian,
//! on first use). A failed install is a test failure, never a skip.

use crate::install::{pip_install_once, python};
use crate::paths::{target_dir, workspace_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Python client, pinned.
const REDIS_PY: [&str; 1] = ["redis==5.2.1"];

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// Installs Debian `packages` (as root, or through `sudo`), once per process.
fn apt_install(packages: &[&str]) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let run = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    let first = run(&install);
    if matches!(&first, Ok(o) if o.status.success()) {
        return;
    }
    // A fresh machine's package lists may be missing or stale.
    let _ = run(&["update"]);
    let out = run(&install).unwrap_or_else(|e| panic!("cannot run apt-get for {packages:?}: {e}"));
    assert!(
        out.status.success(),
        "apt-get install {packages:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `openssl` command line tool, installed with `apt-get` if missing (a fresh machine may
/// lack it); a failed install fails the test.
pub fn openssl_bin() -> PathBuf {
    if let Some(p) = on_path("openssl") {
        return p;
    }
    apt_install(&["openssl"]);
    on_path("openssl").expect("openssl is still missing after apt-get install")
}

/// The `redis-server` binary, installed if missing.
pub fn redis_server_bin() -> PathBuf {
    if let Some(p) = on_path("redis-server") {
        return p;
    }
    apt_install(&["redis-server"]);
    on_path("redis-server").expect("redis-server is still missing after apt-get install")
}

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Redis {
        let port = crate::free_port();
        let child = Command::new(redis_server_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `e2e/py/<script>` with redis-py on its path and `args`; returns its stdout, or panics
/// with its stderr.
pub fn run_redis_py(script: &str, args: &[&str]) -> String {
    let deps = target_dir().join("e2e-redis-py");
    pip_install_once(&deps, &REDIS_PY, "redis-py", &|d| d.join("redis"));
    let out = Command::new(python())
        .arg(workspace_root().join("e2e").join("py").join(script))
        .args(args)
        .env("PYTHONPATH", &deps)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
