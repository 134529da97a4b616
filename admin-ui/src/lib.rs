//! nsqadmin: the NSQ admin web page and its JSON API.
//!
//! nsqadmin stores nothing: every request fans out over HTTP to the lookupds (lookupd mode) or
//! the configured nsqds (direct mode) and merges what comes back ([`cluster`]). The page is a
//! hand-written single-page app embedded in the binary ([`assets`]), which talks to the
//! upstream-compatible `/api/*` ([`api`]).
//!
//! * [`start`] validates the options, binds the listener (port 0 picks a free port; the bound
//!   address is logged as `HTTP: listening on …`) and serves until the token is cancelled.
//! * [`app`] is the router, testable without a socket (`tower::ServiceExt::oneshot`).
//! * [`options`]: flags and config file. [`error`]: the crate's error type and V1 responses.
//!   [`logging`]: upstream-shaped log lines. [`gojson`]: Go's request-body decoding and errors.
#![warn(missing_docs)]

pub mod api;
pub mod assets;
pub mod cluster;
pub mod error;
pub mod gojson;
pub mod logging;
pub mod options;

pub use api::AppState;
pub use error::Error;
pub use options::Options;

use axum::Router;
use axum::routing::{MethodRouter, get};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;

/// The NSQ version this nsqadmin belongs to (reported by `--version` and the page).
pub const VERSION: &str = nsq_protocol::NSQ_VERSION;

/// What `--version` prints: `nsqadmin v1.3.0 (built w/rust-1.95.0)`.
pub fn version_line() -> String {
    format!(
        "nsqadmin v{VERSION} (built w/rust-{})",
        env!("NSQ_RUSTC_VERSION")
    )
}

/// A started nsqadmin.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Finishes when the server has stopped.
    pub join: JoinHandle<Result<(), Error>>,
}

/// Checks the options as upstream does at start-up (one discovery source, resolvable addresses),
/// binds the listener, logs `HTTP: listening on <addr>` and serves until `cancel` is cancelled.
pub async fn start(
    options: Options,
    log_control: Option<logging::LevelControl>,
    cancel: CancellationToken,
) -> Result<Running, Error> {
    options.validate()?;
    for (flag, addresses) in [
        ("--lookupd-http-address", &options.lookupd_http_addresses),
        ("--nsqd-http-address", &options.nsqd_http_addresses),
    ] {
        for address in addresses {
            if let Err(err) = tokio::net::lookup_host(address.as_str()).await {
                return Err(Error::Startup(format!(
                    "failed to resolve {flag} ({address}) - {err}"
                )));
            }
        }
    }
    let state = Arc::new(AppState::new(options.clone(), log_control)?);
    let failed = |source| Error::Listen {
        address: options.http_address.clone(),
        source,
    };
    let target = match options.http_address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => options.http_address.clone(),
    };
    let listener = TcpListener::bind(&target).await.map_err(failed)?;
    let http_addr = listener.local_addr().map_err(failed)?;
    tracing::info!("HTTP: listening on {http_addr}");
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let join = tokio::spawn(async move {
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        tracing::info!("HTTP: closing");
        served.map_err(Error::HttpServer)
    });
    Ok(Running { http_addr, join })
}

/// The router: pages, assets, `/api/*`, `/config/*`, `/ping` and, with `--proxy-graphite`,
/// graphite's `/render`, under `--base-path`; responses are gzip- or deflate-compressed when the
/// client asks.
pub fn app(state: Arc<AppState>) -> Router {
    const GET: &str = "GET, OPTIONS";
    let only_get = |handler: MethodRouter<Arc<AppState>>| -> MethodRouter<Arc<AppState>> {
        handler.fallback(api::method_not_allowed(GET))
    };
    let page = || only_get(get(api::index));
    let base_path = state.options().base_path.clone();
    let routes = Router::new()
        .route("/ping", only_get(get(api::ping)))
        .route("/", page())
        .route("/topics", page())
        .route("/topics/{topic}", page())
        .route("/topics/{topic}/{channel}", page())
        .route("/nodes", page())
        .route("/nodes/{node}", page())
        .route("/counter", page())
        .route("/lookup", page())
        .route("/static/{asset}", only_get(get(api::static_asset)))
        .route("/fonts/{asset}", only_get(get(api::static_asset)))
        .route(
            "/api/topics",
            get(api::topics)
                .post(api::create_topic_channel)
                .fallback(api::method_not_allowed("GET, OPTIONS, POST")),
        )
        .route(
            "/api/topics/{topic}",
            get(api::topic)
                .post(api::topic_action)
                .delete(api::delete_topic)
                .fallback(api::method_not_allowed("DELETE, GET, OPTIONS, POST")),
        )
        .route(
            "/api/topics/{topic}/{channel}",
            get(api::channel)
                .post(api::channel_action)
                .delete(api::delete_channel)
                .fallback(api::method_not_allowed("DELETE, GET, OPTIONS, POST")),
        )
        .route("/api/nodes", only_get(get(api::nodes)))
        .route(
            "/api/nodes/{node}",
            get(api::node)
                .delete(api::tombstone_node_for_topic)
                .fallback(api::method_not_allowed("DELETE, GET, OPTIONS")),
        )
        .route("/api/counter", only_get(get(api::counter)))
        .route("/api/graphite", only_get(get(api::graphite)))
        .route("/api/overview", only_get(get(api::overview)))
        .route(
            "/config/{opt}",
            get(api::config)
                .put(api::config)
                .fallback(api::method_not_allowed("GET, OPTIONS, PUT")),
        )
        .fallback(api::not_found);
    let routes = if state.options().proxy_graphite {
        routes.route("/render", only_get(get(api::graphite_render)))
    } else {
        routes
    };
    let routes = routes.with_state(state);
    let router = if base_path == "/" {
        routes
    } else {
        Router::new()
            .nest(&base_path, routes)
            .fallback(api::not_found)
    };
    router.layer(CompressionLayer::new().gzip(true).deflate(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use std::time::Duration;
    use tower::ServiceExt as _;

    fn options(extra: impl FnOnce(&mut Options)) -> Options {
        let mut options = Options {
            nsqd_http_addresses: vec!["127.0.0.1:1".to_owned()],
            http_client_connect_timeout: Duration::from_millis(200),
            http_client_request_timeout: Duration::from_millis(500),
            ..Options::default()
        };
        extra(&mut options);
        options
    }

    async fn call(
        options: Options,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let state = Arc::new(AppState::new(options, None).unwrap());
        let response = app(state).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn from(ip: &str, mut request: Request<Body>) -> Request<Body> {
        let addr: SocketAddr = format!("{ip}:5555").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(addr));
        request
    }

    #[tokio::test]
    async fn routes_errors_and_methods() {
        let (status, headers, body) = call(options(|_| {}), get("/ping")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        let (status, headers, body) = call(options(|_| {}), get("/api/nosuch")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"message":"NOT_FOUND"}"#)
        );
        assert_eq!(headers["x-nsq-content-type"], "nsq; version=1.0");
        let put = Request::put("/api/topics/t").body(Body::empty()).unwrap();
        let (status, headers, body) = call(options(|_| {}), put).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, r#"{"message":"METHOD_NOT_ALLOWED"}"#);
        assert_eq!(headers["allow"], "DELETE, GET, OPTIONS, POST");
        let options_request = Request::options("/api/nodes").body(Body::empty()).unwrap();
        let (status, headers, _) = call(options(|_| {}), options_request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["allow"], "GET, OPTIONS");
        let (status, _, body) =
            call(options(|_| {}), get("/api/graphite?metric=count&target=x")).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"INVALID_ARG_METRIC"}"#
            )
        );
        let (status, _, body) = call(options(|_| {}), get("/api/graphite?metric=rate")).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"INVALID_ARG_TARGET"}"#
            )
        );
    }

    #[tokio::test]
    async fn assets_revalidate_and_pages_carry_config() {
        let (status, headers, body) = call(options(|_| {}), get("/static/app.js")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
        assert!(body.contains("nsqadmin-config"));
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let revalidate = Request::get("/static/app.js")
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = call(options(|_| {}), revalidate).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        for page in [
            "/",
            "/topics",
            "/topics/t",
            "/topics/t/c",
            "/nodes",
            "/nodes/n:1",
            "/counter",
            "/lookup",
        ] {
            let (status, headers, body) = call(options(|_| {}), get(page)).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(headers["content-type"], "text/html; charset=utf-8");
            assert!(body.contains(r#""is_admin":true"#), "{page}");
            assert!(body.contains(r#"src="/static/app.js""#), "{page}");
        }
    }

    #[tokio::test]
    async fn base_path_prefixes_everything() {
        let with_base = || options(|options| options.base_path = "/admin".to_owned());
        let (status, _, body) = call(with_base(), get("/admin/ping")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));
        let (status, _, body) = call(with_base(), get("/admin/topics/t")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#"src="/admin/static/app.js""#));
        assert!(body.contains(r#""base_path":"/admin""#));
        let (status, _, _) = call(with_base(), get("/admin/static/app.css")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = call(with_base(), get("/ping")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn acl_guards_every_mutation_before_any_upstream_call() {
        let guarded = || options(|options| options.admin_users = vec!["alice".to_owned()]);
        let requests = [
            Request::post("/api/topics").body(Body::from(r#"{"topic":"t"}"#)),
            Request::post("/api/topics/t").body(Body::from(r#"{"action":"pause"}"#)),
            Request::post("/api/topics/t/c").body(Body::from(r#"{"action":"empty"}"#)),
            Request::delete("/api/topics/t").body(Body::empty()),
            Request::delete("/api/topics/t/c").body(Body::empty()),
            Request::delete("/api/nodes/n:1").body(Body::from(r#"{"topic":"t"}"#)),
        ];
        for request in requests {
            let request = request.unwrap();
            let what = format!("{} {}", request.method(), request.uri());
            let (status, _, body) = call(guarded(), request).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::FORBIDDEN, r#"{"message":"FORBIDDEN"}"#),
                "{what}"
            );
        }
        let page = Request::get("/")
            .header("X-Forwarded-User", "bob")
            .body(Body::empty())
            .unwrap();
        let (_, _, body) = call(guarded(), page).await;
        assert!(body.contains(r#""is_admin":false"#));
        let admin = Request::post("/api/topics")
            .header("X-Forwarded-User", "alice")
            .body(Body::from(r#"{"topic":"bad!"}"#))
            .unwrap();
        let (status, _, body) = call(guarded(), admin).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, r#"{"message":"INVALID_TOPIC"}"#)
        );
    }

    #[tokio::test]
    async fn config_endpoint_checks_the_caller_and_applies_changes() {
        let (status, _, body) = call(
            options(|_| {}),
            from("10.1.2.3", get("/config/nsqd_http_addresses")),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::FORBIDDEN, r#"{"message":"FORBIDDEN"}"#)
        );
        let (status, _, body) = call(options(|_| {}), get("/config/log_level")).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::BAD_REQUEST,
                r#"{"message":"INVALID_REMOTE_ADDR"}"#
            )
        );
        let (status, _, body) = call(
            options(|_| {}),
            from("127.0.0.1", get("/config/nsqd_http_addresses")),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"["127.0.0.1:1"]"#)
        );
        let (_, _, body) = call(
            options(|_| {}),
            from("127.0.0.1", get("/config/http_client_request_timeout")),
        )
        .await;
        assert_eq!(body, "500000000");

        let state = Arc::new(AppState::new(options(|_| {}), None).unwrap());
        let put = |path: &str, body: &'static str| {
            from(
                "127.0.0.1",
                Request::put(path).body(Body::from(body)).unwrap(),
            )
        };
        let router = app(Arc::clone(&state));
        let response = router
            .clone()
            .oneshot(put("/config/log_level", "debug"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "1"
        );
        let response = router
            .clone()
            .oneshot(put(
                "/config/nsqlookupd_http_addresses",
                r#"["127.0.0.1:4161"]"#,
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(state.options().lookupd_http_addresses, ["127.0.0.1:4161"]);
        for (path, body, status) in [
            ("/config/log_level", "loud", StatusCode::BAD_REQUEST),
            ("/config/log_level", "", StatusCode::PAYLOAD_TOO_LARGE),
            ("/config/http_address", "x", StatusCode::BAD_REQUEST),
            (
                "/config/nsqlookupd_http_addresses",
                "nope",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let response = router.clone().oneshot(put(path, body)).await.unwrap();
            assert_eq!(response.status(), status, "{path} {body:?}");
        }
    }

    #[tokio::test]
    async fn graphite_rate_from_a_graphite_server() {
        let graphite = axum::Router::new().route(
            "/render",
            axum::routing::get(
                |axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                    let query = query.unwrap_or_default();
                    assert!(query.contains("format=json"), "{query}");
                    assert!(query.contains("from=-120sec"), "{query}");
                    assert!(query.contains("until=-60sec"), "{query}");
                    let value = if query.contains("target=negative") {
                        -1.0
                    } else {
                        30.0
                    };
                    axum::Json(serde_json::json!([
                        {"target": "x", "datapoints": [[value, 1_700_000_000]]}
                    ]))
                },
            ),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, graphite).await });
        let with_graphite = || options(|options| options.graphite_url = format!("http://{addr}"));
        let (status, _, body) =
            call(with_graphite(), get("/api/graphite?metric=rate&target=t")).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"rate":"0.50"}"#)
        );
        let (_, _, body) = call(
            with_graphite(),
            get("/api/graphite?metric=rate&target=negative"),
        )
        .await;
        assert_eq!(body, r#"{"rate":"N/A"}"#);
        let (status, _, body) =
            call(options(|_| {}), get("/api/graphite?metric=rate&target=t")).await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"INTERNAL_ERROR"}"#
            )
        );
    }

    /// What the fake graphite received: query string and `Authorization` of each `/render`.
    type Seen = Arc<parking_lot::Mutex<Vec<(String, String)>>>;

    /// A fake graphite-web: `/render` answers a tiny PNG, or JSON with `format=json`;
    /// `status=<n>` picks the status. Every request is recorded.
    async fn fake_graphite() -> (SocketAddr, Seen) {
        use axum::extract::{RawQuery, State as Shared};
        let seen = Seen::default();
        let graphite = axum::Router::new()
            .route(
                "/render",
                axum::routing::get(
                    |Shared(seen): Shared<Seen>,
                     RawQuery(query): RawQuery,
                     headers: axum::http::HeaderMap| async move {
                        let query = query.unwrap_or_default();
                        let auth = headers
                            .get("authorization")
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        seen.lock().push((query.clone(), auth));
                        let status = query
                            .split('&')
                            .find_map(|pair| pair.strip_prefix("status="))
                            .and_then(|code| code.parse().ok())
                            .and_then(|code| StatusCode::from_u16(code).ok())
                            .unwrap_or(StatusCode::OK);
                        let (content_type, body) = if query.contains("format=json") {
                            ("application/json", GRAPHITE_JSON.to_vec())
                        } else {
                            ("image/png", TINY_PNG.to_vec())
                        };
                        axum::response::Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .header("cache-control", "max-age=60")
                            .header("x-not-proxied", "1")
                            .body(axum::body::Body::from(body))
                            .unwrap()
                    },
                ),
            )
            .with_state(Arc::clone(&seen));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, graphite).await });
        (addr, seen)
    }

    const GRAPHITE_JSON: &[u8] = br#"[{"target":"x","datapoints":[[120.0,1]]}]"#;

    /// A 1×1 transparent PNG.
    const TINY_PNG: [u8; 68] = [
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00, 0x00, 0x00, 0x00,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    async fn call_bytes(
        options: Options,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let state = Arc::new(AppState::new(options, None).unwrap());
        let response = app(state).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }

    #[tokio::test]
    async fn render_is_proxied_to_graphite_only_with_proxy_graphite() {
        let (graphite, seen) = fake_graphite().await;
        let proxied = |url: String, base: &str| {
            let base = base.to_owned();
            options(move |options| {
                options.graphite_url = url;
                options.proxy_graphite = true;
                options.base_path = base;
            })
        };
        let query = "target=summarize(sumSeries(stats.gauges.nsq.*.topic.t.depth),%2260sec%22,%22avg%22)&target=x&from=-2h&until=-1min";
        let (status, headers, body) = call_bytes(
            proxied(format!("http://{graphite}/"), "/"),
            get(&format!("/render?{query}")),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert!(!headers.contains_key("x-not-proxied"));
        assert_eq!(body, TINY_PNG);
        assert_eq!(seen.lock().pop(), Some((query.to_owned(), String::new())));

        // Under --base-path; user:password in --graphite-url become Basic auth.
        let (status, headers, body) = call_bytes(
            proxied(format!("http://nsq:p%40ss@{graphite}"), "/admin"),
            get(&format!("/admin/render?{query}&format=json")),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, GRAPHITE_JSON);
        assert_eq!(
            seen.lock().pop(),
            Some((
                format!("{query}&format=json"),
                "Basic bnNxOnBAc3M=".to_owned()
            ))
        );

        // Graphite's status comes back as is.
        let (status, _, _) = call_bytes(
            proxied(format!("http://{graphite}"), "/"),
            get("/render?status=400&target=bad("),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Graphite down: 502 with an empty body, like Go's reverse proxy.
        let (status, _, body) = call_bytes(
            proxied("http://127.0.0.1:1".to_owned(), "/"),
            get("/render?target=x"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.is_empty());
        // Only GET.
        let (status, _, _) = call_bytes(
            proxied(format!("http://{graphite}"), "/"),
            Request::post("/render").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Without --proxy-graphite there is no /render.
        let before = seen.lock().len();
        let not_proxied = options(|options| options.graphite_url = format!("http://{graphite}"));
        let (status, _, body) = call(not_proxied, get(&format!("/render?{query}"))).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"message":"NOT_FOUND"}"#)
        );
        assert_eq!(seen.lock().len(), before);
    }

    #[tokio::test]
    async fn page_config_carries_graphite_settings() {
        let config_of = |body: &str| -> serde_json::Value {
            let start = body.find(r#"type="application/json">"#).unwrap() + 24;
            let end = start + body[start..].find("</script>").unwrap();
            serde_json::from_str(&body[start..end]).unwrap()
        };
        let (_, _, body) = call(
            options(|options| {
                options.graphite_url = "http://graphite.local:8080/".to_owned();
                options.statsd_prefix = "prod.%s".to_owned();
                options.statsd_counter_format = "stats_counts.%s".to_owned();
                options.statsd_gauge_format = String::new();
                options.statsd_interval = Duration::from_secs(10);
            }),
            get("/topics/t"),
        )
        .await;
        let config = config_of(&body);
        assert_eq!(config["graphite_enabled"], true);
        assert_eq!(config["graphite_url"], "http://graphite.local:8080");
        assert_eq!(config["proxy_graphite"], false);
        assert_eq!(config["statsd_prefix"], "prod.%s");
        assert_eq!(config["statsd_counter_format"], "stats_counts.%s");
        assert_eq!(config["statsd_gauge_format"], "");
        assert_eq!(config["statsd_interval"], 10);
        assert!(body.contains(r#"src="/static/graphite.js""#));

        // Proxied: the page asks nsqadmin's own /render, under the base path.
        let (_, _, body) = call(
            options(|options| {
                options.graphite_url = "http://graphite.local:8080".to_owned();
                options.proxy_graphite = true;
                options.base_path = "/admin".to_owned();
            }),
            get("/admin"),
        )
        .await;
        let config = config_of(&body);
        assert_eq!(config["graphite_url"], "/admin");
        assert_eq!(config["proxy_graphite"], true);
        assert_eq!(config["statsd_prefix"], "nsq.%s");
        assert_eq!(config["statsd_counter_format"], "stats.counters.%s.count");
        assert_eq!(config["statsd_gauge_format"], "stats.gauges.%s");
        assert_eq!(config["statsd_interval"], 60);

        let (_, _, body) = call(options(|_| {}), get("/")).await;
        assert_eq!(config_of(&body)["graphite_enabled"], false);

        // The new options are readable through /config like every other.
        let with = || {
            options(|options| {
                options.proxy_graphite = true;
                options.graphite_url = "http://g".to_owned();
                options.http_client_tls_insecure_skip_verify = true;
            })
        };
        for (name, expected) in [
            ("proxy_graphite", "true"),
            ("statsd_prefix", r#""nsq.%s""#),
            ("statsd_counter_format", r#""stats.counters.%s.count""#),
            ("statsd_gauge_format", r#""stats.gauges.%s""#),
            ("http_client_tls_insecure_skip_verify", "true"),
            ("http_client_tls_root_ca_file", r#""""#),
            ("http_client_tls_cert", r#""""#),
            ("http_client_tls_key", r#""""#),
        ] {
            let (status, _, body) =
                call(with(), from("127.0.0.1", get(&format!("/config/{name}")))).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, expected),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn unreachable_nodes_answer_502_in_direct_mode() {
        let (status, _, body) = call(options(|_| {}), get("/api/topics")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(
            body.starts_with(r#"{"message":"UPSTREAM_ERROR: failed to query any nsqd: Get \"http://127.0.0.1:1/stats?format=json\": dial tcp 127.0.0.1:1: "#),
            "{body}"
        );
    }
}
