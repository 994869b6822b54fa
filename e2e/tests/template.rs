//! The filter template (`template/`, for `cargo generate`) works as a new user gets it:
//! instantiated with the placeholders filled in the way cargo-generate fills them, its jisr
//! dependency pointed at this repository, its own tests run, then its `run.sh` builds the
//! module and starts real Envoy with the template's `envoy.yaml` (ports rewritten), and
//! requests go through the filter, its callout cluster and its upstream cluster.
//!
//! cargo-generate itself is not needed: the test does its substitution (`{{project-name}}`,
//! `{{crate_name}}`) and fails if any placeholder is left.

use jisr_e2e::client;
use jisr_e2e::paths::{log_dir, target_dir, workspace_root};
use jisr_e2e::{Upstream, envoy_bin, free_port, module_stat, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A name with a hyphen, so the test also checks the `lib<crate_name>.so` rule.
const PROJECT: &str = "demo-filter";
const CRATE: &str = "demo_filter";

/// Copies `template/` into `dest` with the placeholders filled in; skips what
/// `cargo-generate.toml` ignores and the file itself (cargo-generate does not copy it).
fn instantiate(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if matches!(name.as_str(), "target" | ".envoy" | "cargo-generate.toml") {
            continue;
        }
        let (from, to) = (entry.path(), dest.join(&name));
        if entry.file_type().unwrap().is_dir() {
            instantiate(&from, &to);
            continue;
        }
        let text = std::fs::read_to_string(&from).unwrap();
        let text = text
            .replace("{{project-name}}", PROJECT)
            .replace("{{crate_name}}", CRATE);
        assert!(
            !text.contains("{{"),
            "{}: a placeholder is left after substitution",
            from.display()
        );
        let unchanged = std::fs::read_to_string(&to).is_ok_and(|old| old == text);
        if !unchanged {
            std::fs::write(&to, &text).unwrap();
        }
        let mode = std::fs::metadata(&from).unwrap().permissions();
        std::fs::set_permissions(&to, mode).unwrap();
    }
}

/// The instantiated crate, its jisr dependency pointed at this repository. It keeps its own
/// target dir (`target/template-build`) between runs.
fn instance() -> PathBuf {
    let root = workspace_root();
    let dest = target_dir().join("template-instance").join(PROJECT);
    instantiate(&root.join("template"), &dest);
    let manifest = dest.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let dep = "jisr = \"0.1\"";
    assert!(text.contains(dep), "template Cargo.toml names `{dep}`");
    // Its tests use `jisr::testing`, which the `testing` feature of a dev-dependency brings.
    let dev = "jisr = { version = \"0.1\", features = [\"testing\"] }";
    assert!(text.contains(dev), "template Cargo.toml names `{dev}`");
    // The copy sits under this repository's target dir: `[workspace]` makes it its own
    // workspace rather than an unlisted member of this one.
    let text = text
        .replace(dep, &format!("jisr = {{ path = {:?} }}", root.display()))
        .replace(
            dev,
            &format!(
                "jisr = {{ path = {:?}, features = [\"testing\"] }}",
                root.display()
            ),
        )
        + "\n[workspace]\n";
    std::fs::write(&manifest, text).unwrap();
    // The same dependency versions as this repository (no index update needed).
    if !dest.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dest.join("Cargo.lock")).unwrap();
    }
    dest
}

fn cargo(dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("template-build"))
        .stdin(Stdio::null());
    c
}

/// Envoy started by the template's `run.sh`; killed on drop.
struct RunSh {
    child: Child,
    log: PathBuf,
}

impl RunSh {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- run.sh / Envoy log ---\n{}", self.log());
        }
    }
}

#[test]
fn template_instantiates_tests_builds_and_runs_in_envoy() {
    let dir = instance();
    let run_sh = std::fs::read_to_string(dir.join("run.sh")).unwrap();
    let pinned = format!(
        "ENVOY_VERSION=\"${{ENVOY_VERSION:-{}}}\"",
        jisr_e2e::ENVOY_VERSION
    );
    assert!(
        run_sh.contains(&pinned),
        "run.sh installs the Envoy the tests pin: {pinned}"
    );

    // 1. It is formatted as `cargo fmt` would leave it, and its own tests pass (simulated
    //    stream), from a `tests/` file importing the crate.
    let fmt = cargo(&dir).args(["fmt", "--check"]).output().unwrap();
    assert!(
        fmt.status.success(),
        "the template is not formatted:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    let out = cargo(&dir).args(["test", "--quiet"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo test in the template failed:\n{text}"
    );
    assert!(
        text.contains("5 passed"),
        "the template's tests did not run:\n{text}"
    );

    // 2. Its envoy.yaml with free ports, and its two services: an authorization service that
    //    accepts `Bearer good` only, and an echo backend.
    let authz = Upstream::start_with("template-authz", |req, w| {
        let ok = req.header("authorization") == Some("Bearer good");
        w.status(if ok { 200 } else { 403 }).send(b"");
    });
    let backend = Upstream::start("template-backend");
    let (admin, listener) = (free_port(), free_port());
    let yaml = std::fs::read_to_string(dir.join("envoy.yaml")).unwrap();
    let mut rendered = yaml.clone();
    for (from, to) in [
        (9901, admin),
        (10000, listener),
        (8080, backend.port()),
        (9000, authz.port()),
    ] {
        let (from, to) = (format!("port_value: {from} "), format!("port_value: {to} "));
        assert_eq!(yaml.matches(&from).count(), 1, "{from} in envoy.yaml");
        rendered = rendered.replace(&from, &to);
    }
    let config = dir.join("envoy-test.yaml");
    std::fs::write(&config, rendered).unwrap();

    // 3. run.sh: builds lib<crate_name>.so and starts Envoy with it.
    let log = log_dir().join(format!("template-run-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).unwrap();
    let base_id = (std::process::id() % 1_000_000) * 100 + 99;
    let child = Command::new("bash")
        .arg(dir.join("run.sh"))
        .args(["--base-id", &base_id.to_string(), "--disable-hot-restart"])
        .args(["--concurrency", "1", "-l", "info"])
        .env("CARGO_TARGET_DIR", target_dir().join("template-build"))
        .env("PROFILE", "dev")
        .env("ENVOY_BIN", envoy_bin())
        .env("CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut envoy = RunSh { child, log };
    let ready = wait_until(Duration::from_secs(300), || {
        if envoy.child.try_wait().unwrap().is_some() {
            return true;
        }
        client::try_request(admin, "GET", "/ready", &[], b"")
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE")
    });
    assert!(
        ready && envoy.child.try_wait().unwrap().is_none(),
        "Envoy from run.sh is not ready:\n{}",
        envoy.log()
    );
    let so = target_dir()
        .join("template-build/debug")
        .join(format!("lib{CRATE}.so"));
    assert!(so.exists(), "{} was not built", so.display());
    assert!(
        envoy.log().contains("Dynamic module ABI version"),
        "{}",
        envoy.log()
    );

    // 4. Requests through the filter.
    let ok = client::request(
        listener,
        "GET",
        "/orders",
        &[("authorization", "Bearer good")],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["headers"]["x-greeting"].as_str(), Some("hello"));
    let asked = authz.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path_only(), "/check");

    let denied = client::request(
        listener,
        "GET",
        "/orders",
        &[("authorization", "Bearer bad")],
        b"",
    );
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.text(), "forbidden\n");

    let public = client::request(listener, "GET", "/public/logo.png", &[], b"");
    assert_eq!(public.status, 200, "{}", public.text());
    assert_eq!(authz.requests().len(), 2, "public paths are not checked");

    // The authorization service goes away: Envoy answers the callout with its own 503, and the
    // filter answers 503, not 403.
    drop(authz);
    let down = client::request(
        listener,
        "GET",
        "/orders",
        &[("authorization", "Bearer good")],
        b"",
    );
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.text(), "authorization unavailable\n");
    assert_eq!(backend.requests().len(), 2);

    // 5. The counter, by the name Envoy shows in /stats.
    let stats = client::request(admin, "GET", "/stats", &[], b"").text();
    for (result, n) in [("allowed", 1), ("denied", 1), ("public", 1), ("error", 1)] {
        let name = module_stat(&format!("{CRATE}_requests_total"), &[("result", result)]);
        assert!(
            stats.lines().any(|l| l == format!("{name}: {n}")),
            "{name}: {n} not in /stats:\n{stats}"
        );
    }
}
