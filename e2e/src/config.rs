//! A small builder for `envoy.yaml`: listeners with HTTP filters and routes, clusters, admin,
//! access log. Ports are filled in by [`crate::Envoy::start`].

use crate::json::quote;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The prefix of every access-log line Envoy writes to stdout.
pub const ACCESS_MARKER: &str = "ACCESS ";

const DM_FILTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const DM_PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute";

/// A whole Envoy configuration plus how to run Envoy with it.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    pub(crate) listeners: Vec<Listener>,
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) concurrency: usize,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) raw_top_level: Vec<String>,
    pub(crate) modules_dir: Option<PathBuf>,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvoyConfig {
    /// An empty config (admin only), `--concurrency 2`.
    pub fn new() -> Self {
        EnvoyConfig {
            listeners: Vec::new(),
            clusters: Vec::new(),
            concurrency: 2,
            args: Vec::new(),
            env: Vec::new(),
            raw_top_level: Vec::new(),
            modules_dir: None,
        }
    }

    /// Adds a listener.
    pub fn listener(mut self, l: Listener) -> Self {
        self.listeners.push(l);
        self
    }

    /// Adds a cluster.
    pub fn cluster(mut self, c: Cluster) -> Self {
        self.clusters.push(c);
        self
    }

    /// Adds the cluster named `upstream` (the default route target) pointing at `port`.
    pub fn upstream(self, port: u16) -> Self {
        self.cluster(Cluster::new("upstream", port))
    }

    /// Envoy worker threads (`--concurrency`).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// An extra command-line argument for Envoy.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// An extra environment variable for Envoy.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Raw YAML appended at the top level (e.g. `layered_runtime: ...`).
    pub fn raw_top_level(mut self, yaml: impl Into<String>) -> Self {
        self.raw_top_level.push(yaml.into());
        self
    }

    /// Loads the modules from `dir` (`ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) instead of the
    /// modules of [`crate::modules_dir`], which are then not built.
    pub fn modules_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.modules_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// True if any listener uses a dynamic-module filter (the harness then builds the modules,
    /// unless [`modules_dir`](Self::modules_dir) names another directory).
    pub fn uses_modules(&self) -> bool {
        self.listeners.iter().any(|l| {
            l.tcp.is_some()
                || l.udp.is_some()
                || l.filters.iter().any(|f| f.is_module)
                || l.raw
                    .as_deref()
                    .is_some_and(|y| y.contains("dynamic_module_config"))
        })
    }

    /// Renders the YAML with the given admin port and listener ports (by listener name).
    pub fn render(&self, admin_port: u16, ports: &HashMap<String, u16>) -> String {
        let mut y = String::new();
        y.push_str("stats_flush_interval: 1s\n");
        let _ = writeln!(
            y,
            "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}"
        );
        y.push_str("static_resources:\n  listeners:");
        if self.listeners.is_empty() {
            y.push_str(" []");
        }
        y.push('\n');
        for l in &self.listeners {
            let port = ports.get(&l.name).copied().unwrap_or(0);
            l.render(&mut y, port);
        }
        y.push_str("  clusters:");
        if self.clusters.is_empty() {
            y.push_str(" []");
        }
        y.push('\n');
        for c in &self.clusters {
            c.render(&mut y);
        }
        for raw in &self.raw_top_level {
            y.push_str(&indent(raw, 0));
        }
        y
    }
}

/// One listener with an HTTP connection manager.
#[derive(Debug, Clone)]
pub struct Listener {
    pub(crate) name: String,
    pub(crate) filters: Vec<HttpFilter>,
    routes: Vec<Route>,
    log_format: Option<String>,
    log_fields: Vec<String>,
    hcm_extra: Vec<String>,
    tcp: Option<TcpChain>,
    raw: Option<String>,
    udp: Option<UdpChain>,
}

/// A UDP listener's chain: a module's UDP listener filter, then `udp_proxy` to a cluster.
#[derive(Debug, Clone)]
struct UdpChain {
    module: String,
    filter_name: String,
    config: String,
    cluster: String,
}

/// A TCP listener's chain: a module's network filter, then `tcp_proxy` to a cluster.
#[derive(Debug, Clone)]
struct TcpChain {
    module: String,
    filter_name: String,
    config: String,
    cluster: String,
    transport_socket: Option<String>,
    listener_filters: Vec<String>,
}

impl Listener {
    /// A listener named `name`; without routes it routes everything to cluster `upstream`.
    pub fn new(name: impl Into<String>) -> Self {
        Listener {
            name: name.into(),
            filters: Vec::new(),
            routes: Vec::new(),
            log_format: None,
            log_fields: Vec::new(),
            hcm_extra: Vec::new(),
            tcp: None,
            raw: None,
            udp: None,
        }
    }

    /// A UDP listener (on the port [`crate::Envoy::listener_port`] gives, over UDP): UDP
    /// listener filter `filter_name` of `module` (with `config` as its `StringValue` config),
    /// then `udp_proxy` to `cluster`.
    pub fn udp(
        name: impl Into<String>,
        module: &str,
        filter_name: &str,
        config: &str,
        cluster: &str,
    ) -> Self {
        let mut l = Listener::new(name);
        l.udp = Some(UdpChain {
            module: module.to_string(),
            filter_name: filter_name.to_string(),
            config: config.to_string(),
            cluster: cluster.to_string(),
        });
        l
    }

    /// A TCP listener: network filter `filter_name` of `module` (with `config` as its
    /// `StringValue` config), then `tcp_proxy` to `cluster`. The access log line shows the
    /// bytes each way and the connection's termination details.
    pub fn tcp(
        name: impl Into<String>,
        module: &str,
        filter_name: &str,
        config: &str,
        cluster: &str,
    ) -> Self {
        let mut l = Listener::new(name);
        l.tcp = Some(TcpChain {
            module: module.to_string(),
            filter_name: filter_name.to_string(),
            config: config.to_string(),
            cluster: cluster.to_string(),
            transport_socket: None,
            listener_filters: Vec::new(),
        });
        l
    }

    /// For a [`tcp`](Listener::tcp) listener: the filter chain's `transport_socket`, `yaml`
    /// being its body (`name: ...` then `typed_config: ...`), e.g. TLS termination.
    pub fn transport_socket(mut self, yaml: &str) -> Self {
        let t = self
            .tcp
            .as_mut()
            .expect("transport_socket is for a Listener::tcp listener");
        t.transport_socket = Some(yaml.to_string());
        self
    }

    /// For a [`tcp`](Listener::tcp) listener: appends a listener filter, `yaml` being its
    /// list entry (`- name: ...` then `typed_config: ...`, unindented), e.g. `tls_inspector`.
    pub fn listener_filter(mut self, yaml: &str) -> Self {
        let t = self
            .tcp
            .as_mut()
            .expect("listener_filter is for a Listener::tcp listener");
        t.listener_filters.push(yaml.to_string());
        self
    }

    /// A listener written out in full: `yaml` is its entry in `static_resources.listeners`
    /// (starting `  - name: ...`, indented as the list item), with `{port}` where its port
    /// goes. It uses modules when it names a `dynamic_module_config`.
    pub fn raw(name: impl Into<String>, yaml: &str) -> Self {
        let mut l = Listener::new(name);
        l.raw = Some(yaml.to_string());
        l
    }

    /// Appends an HTTP filter (the router is always added last).
    pub fn filter(mut self, f: HttpFilter) -> Self {
        self.filters.push(f);
        self
    }

    /// Appends a route (first match wins).
    pub fn route(mut self, r: Route) -> Self {
        self.routes.push(r);
        self
    }

    /// Replaces the access-log format after the marker. The default is
    /// `listener=<name> method=%REQ(:METHOD)% path=%REQ(:PATH)% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS%`.
    pub fn access_log_format(mut self, fmt: impl Into<String>) -> Self {
        self.log_format = Some(fmt.into());
        self
    }

    /// Appends ` <key>=<operator>` to the access-log format, e.g. `("user", "%REQ(x-user-id)%")`.
    pub fn log_field(mut self, key: &str, operator: &str) -> Self {
        self.log_fields.push(format!("{key}={operator}"));
        self
    }

    /// Appends ` <ns>:<key>=%DYNAMIC_METADATA(<ns>:<key>)%` to the access-log format.
    pub fn log_metadata(self, ns: &str, key: &str) -> Self {
        let op = format!("%DYNAMIC_METADATA({ns}:{key})%");
        self.log_field(&format!("{ns}:{key}"), &op)
    }

    /// Raw YAML added to the HttpConnectionManager's typed_config (e.g. `stream_idle_timeout: 2s`).
    pub fn hcm_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.hcm_extra.push(yaml.into());
        self
    }

    fn render(&self, y: &mut String, port: u16) {
        if let Some(raw) = &self.raw {
            y.push_str(&raw.replace("{port}", &port.to_string()));
            if !raw.ends_with('\n') {
                y.push('\n');
            }
            return;
        }
        if let Some(u) = &self.udp {
            let _ = write!(
                y,
                "  - name: {name}
    address:
      socket_address: {{ protocol: UDP, address: 127.0.0.1, port_value: {port} }}
    listener_filters:
    - name: {fname}
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.udp.dynamic_modules.v3.DynamicModuleUdpListenerFilter
        dynamic_module_config:
          name: {module}
        filter_name: {filter}
        filter_config:
          \"@type\": type.googleapis.com/google.protobuf.StringValue
          value: {config}
    - name: envoy.filters.udp_listener.udp_proxy
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
        stat_prefix: {name}
        matcher:
          on_no_match:
            action:
              name: route
              typed_config:
                \"@type\": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route
                cluster: {cluster}
",
                name = quote(&self.name),
                fname = quote(&format!("{}.{}", u.module, u.filter_name)),
                module = quote(&u.module),
                filter = quote(&u.filter_name),
                config = quote(&u.config),
                cluster = quote(&u.cluster),
            );
            return;
        }
        if let Some(t) = &self.tcp {
            let fmt = format!(
                "{ACCESS_MARKER}listener={} rx=%BYTES_RECEIVED% tx=%BYTES_SENT% details=%CONNECTION_TERMINATION_DETAILS%\n",
                self.name
            );
            let _ = write!(
                y,
                "  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
{listener_filters}    filter_chains:
    - {transport}filters:
      - name: {fname}
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter
          dynamic_module_config:
            name: {module}
          filter_name: {filter}
          filter_config:
            \"@type\": type.googleapis.com/google.protobuf.StringValue
            value: {config}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: {fmt}
",
                name = quote(&self.name),
                fname = quote(&format!("{}.{}", t.module, t.filter_name)),
                module = quote(&t.module),
                filter = quote(&t.filter_name),
                config = quote(&t.config),
                cluster = quote(&t.cluster),
                fmt = quote(&fmt),
                listener_filters = if t.listener_filters.is_empty() {
                    String::new()
                } else {
                    let mut f = String::from("    listener_filters:\n");
                    for lf in &t.listener_filters {
                        f.push_str(&indent(lf, 4));
                    }
                    f
                },
                transport = t
                    .transport_socket
                    .as_deref()
                    .map(|ts| format!("transport_socket:\n{}      ", indent(ts, 8)))
                    .unwrap_or_default(),
            );
            return;
        }
        let fmt = self.log_format.clone().unwrap_or_else(|| {
            format!(
                "listener={} method=%REQ(:METHOD)% path=%REQ(:PATH)% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS%",
                self.name
            )
        });
        let mut fmt = format!("{ACCESS_MARKER}{fmt}");
        for f in &self.log_fields {
            fmt.push(' ');
            fmt.push_str(f);
        }
        fmt.push('\n');
        let _ = write!(
            y,
            "  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: {fmt}
",
            name = quote(&self.name),
            fmt = quote(&fmt),
        );
        for raw in &self.hcm_extra {
            y.push_str(&indent(raw, 10));
        }
        y.push_str(
            "          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
",
        );
        if self.routes.is_empty() {
            Route::to("/", "upstream").render(y);
        }
        for r in &self.routes {
            r.render(y);
        }
        y.push_str("          http_filters:\n");
        for f in &self.filters {
            let _ = writeln!(
                y,
                "          - name: {}\n            typed_config:",
                quote(&f.name)
            );
            y.push_str(&indent(&f.typed_config, 14));
        }
        y.push_str(
            "          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
",
        );
    }
}

/// One route of the listener's single virtual host.
#[derive(Debug, Clone)]
pub enum Route {
    /// `prefix` → cluster.
    Cluster {
        /// Path prefix to match.
        prefix: String,
        /// Target cluster.
        cluster: String,
    },
    /// `prefix` → the cluster named by request header `header`.
    ClusterHeader {
        /// Path prefix to match.
        prefix: String,
        /// Request header holding the cluster name.
        header: String,
    },
    /// `prefix` → a `direct_response` from Envoy itself.
    Direct {
        /// Path prefix to match.
        prefix: String,
        /// Status code.
        status: u16,
        /// Inline body.
        body: String,
    },
    /// One raw YAML route entry (starting with `- match:`).
    Raw(String),
}

impl Route {
    /// `prefix` → `cluster`.
    pub fn to(prefix: &str, cluster: &str) -> Route {
        Route::Cluster {
            prefix: prefix.into(),
            cluster: cluster.into(),
        }
    }

    /// `prefix` → cluster named by request header `header`.
    pub fn cluster_header(prefix: &str, header: &str) -> Route {
        Route::ClusterHeader {
            prefix: prefix.into(),
            header: header.into(),
        }
    }

    /// `prefix` → Envoy answers `status` with `body` itself.
    pub fn direct(prefix: &str, status: u16, body: &str) -> Route {
        Route::Direct {
            prefix: prefix.into(),
            status,
            body: body.into(),
        }
    }

    /// `prefix` → `cluster`, with a `DynamicModuleFilterPerRoute` for the HTTP filter named
    /// `filter_key` (for [`module_filter`] that is `<module>.<filter_name>`): the module's
    /// per-route config `config_name`, given `config` as a `google.protobuf.StringValue` (none:
    /// no `filter_config`, the module gets zero-length bytes).
    pub fn with_module_config(
        prefix: &str,
        cluster: &str,
        filter_key: &str,
        module: &str,
        config_name: &str,
        config: Option<&str>,
    ) -> Route {
        let mut y = format!(
            "- match: {{ prefix: {} }}
  route: {{ cluster: {}, timeout: 30s }}
  typed_per_filter_config:
    {}:
      \"@type\": {DM_PER_ROUTE}
      dynamic_module_config: {{ name: {} }}
      per_route_config_name: {}
",
            quote(prefix),
            quote(cluster),
            quote(filter_key),
            quote(module),
            quote(config_name)
        );
        if let Some(c) = config {
            let _ = write!(
                y,
                "      filter_config:
        \"@type\": type.googleapis.com/google.protobuf.StringValue
        value: {}
",
                quote(c)
            );
        }
        Route::Raw(y)
    }

    fn render(&self, y: &mut String) {
        let _ = match self {
            Route::Cluster { prefix, cluster } => writeln!(
                y,
                "              - match: {{ prefix: {} }}\n                route: {{ cluster: {}, timeout: 30s }}",
                quote(prefix),
                quote(cluster)
            ),
            Route::ClusterHeader { prefix, header } => writeln!(
                y,
                "              - match: {{ prefix: {} }}\n                route: {{ cluster_header: {}, timeout: 30s }}",
                quote(prefix),
                quote(header)
            ),
            Route::Direct {
                prefix,
                status,
                body,
            } => writeln!(
                y,
                "              - match: {{ prefix: {} }}\n                direct_response: {{ status: {status}, body: {{ inline_string: {} }} }}",
                quote(prefix),
                quote(body)
            ),
            Route::Raw(raw) => {
                y.push_str(&indent(raw, 14));
                Ok(())
            }
        };
    }
}

/// One entry of `http_filters` (before the router).
#[derive(Debug, Clone)]
pub struct HttpFilter {
    name: String,
    typed_config: String,
    is_module: bool,
}

impl HttpFilter {
    /// Any filter: `typed_config_yaml` is the body of `typed_config` (starting with `"@type": ...`).
    pub fn raw(name: &str, typed_config_yaml: &str) -> HttpFilter {
        HttpFilter {
            name: name.into(),
            typed_config: typed_config_yaml.into(),
            is_module: false,
        }
    }

    /// Marks a raw filter as a dynamic module (so the harness builds the modules).
    pub fn as_module(mut self) -> HttpFilter {
        self.is_module = true;
        self
    }
}

/// A dynamic-module filter: `lib<module>.so`, `filter_name`, and `config` passed to the module
/// as raw bytes (wrapped in `google.protobuf.StringValue`). No config → zero-length bytes.
pub fn module_filter(module: &str, filter_name: &str, config: Option<&str>) -> HttpFilter {
    let mut t = format!(
        "\"@type\": {DM_FILTER}\ndynamic_module_config:\n  name: {}\nfilter_name: {}\n",
        quote(module),
        quote(filter_name)
    );
    if let Some(c) = config {
        let _ = write!(
            t,
            "filter_config:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: {}\n",
            quote(c)
        );
    }
    HttpFilter {
        name: format!("{module}.{filter_name}"),
        typed_config: t,
        is_module: true,
    }
}

/// A STATIC loopback cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    /// Endpoint ports on 127.0.0.1; empty for a cluster without endpoints.
    ports: Vec<u16>,
    http2: bool,
    connect_timeout: String,
    raw: Vec<String>,
}

impl Cluster {
    /// Cluster `name` → 127.0.0.1:`port`, HTTP/1.1, 1 s connect timeout.
    pub fn new(name: &str, port: u16) -> Cluster {
        Cluster {
            name: name.into(),
            ports: vec![port],
            http2: false,
            connect_timeout: "1s".into(),
            raw: Vec::new(),
        }
    }

    /// Cluster `name` with no endpoints at all: the router has no host to pick and answers
    /// `503 no healthy upstream` at once, without any connection attempt.
    pub fn without_endpoints(name: &str) -> Cluster {
        Cluster {
            ports: Vec::new(),
            ..Cluster::new(name, 0)
        }
    }

    /// Adds another endpoint, 127.0.0.1:`port`, to the cluster (round robin between them).
    pub fn endpoint(mut self, port: u16) -> Cluster {
        self.ports.push(port);
        self
    }

    /// Speak HTTP/2 (prior knowledge) to this upstream.
    pub fn http2(mut self) -> Cluster {
        self.http2 = true;
        self
    }

    /// Connect timeout, as an Envoy duration (`"0.25s"`).
    pub fn connect_timeout(mut self, d: &str) -> Cluster {
        self.connect_timeout = d.into();
        self
    }

    /// Raw YAML added to the cluster entry (e.g. `circuit_breakers: ...`).
    pub fn raw_yaml(mut self, yaml: &str) -> Cluster {
        self.raw.push(yaml.into());
        self
    }

    fn render(&self, y: &mut String) {
        let _ = write!(
            y,
            "  - name: {name}
    connect_timeout: {ct}
    type: STATIC
    load_assignment:
      cluster_name: {name}
",
            name = quote(&self.name),
            ct = self.connect_timeout,
        );
        if self.ports.is_empty() {
            y.push_str("      endpoints: []\n");
        } else {
            y.push_str("      endpoints:\n      - lb_endpoints:\n");
        }
        for port in &self.ports {
            let _ = write!(
                y,
                "        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"
            );
        }
        if self.http2 {
            y.push_str(
                "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
",
            );
        }
        for raw in &self.raw {
            y.push_str(&indent(raw, 4));
        }
    }
}

/// Indents every line of `text` by `n` spaces; ensures a trailing newline.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::new();
    for line in text.lines() {
        if !line.trim().is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Writes an SDS file holding one generic secret `name` with value `value` (YAML), the way
/// Envoy's file watch expects an update: written beside, then moved into place.
pub fn write_generic_secret(path: &Path, name: &str, value: &str) {
    let text = format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  \
         name: {name}\n  generic_secret:\n    secret:\n      inline_string: \"{value}\"\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write the secret file");
    std::fs::rename(&tmp, path).expect("move the secret file into place");
}

impl EnvoyConfig {
    /// Gives Envoy a node identity (`--service-node`/`--service-cluster`), which SDS needs.
    pub fn node_identity(self) -> Self {
        self.arg("--service-node")
            .arg("jisr-e2e")
            .arg("--service-cluster")
            .arg("jisr-e2e")
    }
}
