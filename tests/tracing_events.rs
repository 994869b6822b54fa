//! Feature `tracing`: `tracing` events, with their fields, become lines of the filter's log,
//! the same shape as `w.log_attrs`. Under `jisr::testing` they land in `TestFilter::logs`.
#![cfg(feature = "tracing")]

use jisr::testing::TestFilter;
use jisr::{ConfigError, ConfigHandle, Level, Registry, Request, ResponseWriter};

fn load(cfg: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    tracing::info!(filter = cfg.filter_name(), "config loaded");
    Ok(())
}

async fn login(_: &(), req: Request<'_>, _w: ResponseWriter<'_>) {
    let user = req.header_str("x-user").unwrap_or("-").to_owned();
    tracing::debug!(%user, attempts = 3_u64, admin = false, "login checked");
    tracing::warn!(reason = "token \"expired\" soon", "login = weak");
    tracing::error!(code = -7_i64, ratio = 0.5, ?user);
}

fn register(r: &mut Registry) {
    r.filter("login").state(load).handle(login);
}

#[test]
fn events_and_their_fields_become_log_lines() {
    let f = TestFilter::new(register, "login", b"").unwrap();
    f.stream()
        .request_headers(&[(":path", "/"), ("x-user", "ana maria")], true);
    assert_eq!(
        f.logs(),
        [
            (Level::Info, "config loaded filter=login".to_string()),
            (
                Level::Debug,
                r#"login checked user="ana maria" attempts=3 admin=false"#.to_string()
            ),
            // A message that could forge a pair is quoted; values with quotes are escaped.
            (
                Level::Warn,
                r#""login = weak" reason="token \"expired\" soon""#.to_string()
            ),
            // No message: just the fields. `?user` is the Debug form (with its quotes).
            (
                Level::Error,
                r#"code=-7 ratio=0.5 user="\"ana maria\"""#.to_string()
            ),
        ]
    );
}

#[test]
fn envoys_level_decides_what_is_written() {
    let mut f = TestFilter::new(register, "login", b"").unwrap();
    f.set_log_level(Level::Warn);
    f.stream()
        .request_headers(&[(":path", "/"), ("x-user", "bo")], true);
    let levels: Vec<Level> = f.logs().iter().map(|(l, _)| *l).collect();
    // The config's info line was written while loading (at the default level, trace).
    assert_eq!(levels, [Level::Info, Level::Warn, Level::Error]);
}
