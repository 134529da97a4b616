//! The page in a real headless Chromium: starts the cluster, nsqadmins (lookupd mode, direct
//! mode, read-only, and two with a fake graphite: direct and `--proxy-graphite`) and runs
//! `tests/browser/e2e.mjs`, which drives Debian's `/usr/bin/chromium` with playwright-core.
//! Prerequisites come from `admin-ui/tests/browser/install.sh`.

use crate::harness::Cluster;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("admin-screenshots")
}

fn assert_prerequisites() {
    let install = "run `bash admin-ui/tests/browser/install.sh` first (installs Debian's chromium and playwright-core)";
    assert!(
        PathBuf::from("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: {install}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in admin-ui/tests/browser: {install}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "node is missing: {install}"
    );
}

/// A 1×1 transparent PNG: what the fake graphite draws.
const TINY_PNG: [u8; 68] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00,
    0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

/// Every `/render` query the fake graphite received.
type Renders = Arc<Mutex<Vec<String>>>;

/// A fake graphite-web on 127.0.0.1: `/render` answers the PNG, or with `format=json` one series
/// whose first datapoint is 120 (so a rate of 120 / statsd interval).
async fn fake_graphite() -> (String, Renders) {
    use axum::extract::{RawQuery, State};
    let renders = Renders::default();
    let app = axum::Router::new()
        .route(
            "/render",
            axum::routing::get(
                |State(renders): State<Renders>, RawQuery(query): RawQuery| async move {
                    let query = query.unwrap_or_default();
                    renders.lock().unwrap().push(query.clone());
                    if query.split('&').any(|pair| pair == "format=json") {
                        (
                            [("content-type", "application/json")],
                            br#"[{"target":"t","datapoints":[[120.0,1700000000]]}]"#.to_vec(),
                        )
                    } else {
                        ([("content-type", "image/png")], TINY_PNG.to_vec())
                    }
                },
            ),
        )
        .with_state(Arc::clone(&renders));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake graphite");
    let addr = listener.local_addr().expect("fake graphite address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), renders)
}

/// The `target` values of `/render` queries.
fn render_targets(renders: &Renders) -> Vec<String> {
    let queries = renders.lock().unwrap().clone();
    queries
        .iter()
        .flat_map(|query| {
            reqwest::Url::parse(&format!("http://graphite.invalid/render?{query}"))
                .map(|url| {
                    url.query_pairs()
                        .filter(|(name, _)| name == "target")
                        .map(|(_, value)| value.into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn page_in_headless_chromium() {
    assert_prerequisites();
    let cluster = Cluster::start().await;
    let timeouts = [
        "--http-client-connect-timeout=1s",
        "--http-client-request-timeout=1s",
    ];
    let admin = cluster.admin(&timeouts);
    let direct = cluster.direct_admin(&timeouts);
    let readonly = cluster.admin(&["--admin-user=alice"]);
    // Graphite graphs: one nsqadmin whose page loads graphite directly (upstream's default
    // names), one that proxies graphite's /render with its own statsd naming.
    let (graphite, renders) = fake_graphite().await;
    let graphite_flag = format!("--graphite-url={graphite}");
    let graphite_admin = cluster.admin(&[graphite_flag.as_str()]);
    let proxy_admin = cluster.direct_admin(&[
        graphite_flag.as_str(),
        "--proxy-graphite",
        "--statsd-prefix=prod.%s",
        "--statsd-counter-format=stats_counts.%s",
        "--statsd-gauge-format=",
        "--statsd-interval=10s",
    ]);
    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let config = serde_json::json!({
        "admin": format!("http://{}", admin.http),
        "direct_admin": format!("http://{}", direct.http),
        "readonly_admin": format!("http://{}", readonly.http),
        "graphite": graphite,
        "graphite_admin": format!("http://{}", graphite_admin.http),
        "proxy_admin": format!("http://{}", proxy_admin.http),
        "nsqd": cluster.nsqd.iter().map(|node| serde_json::json!({
            "http": node.http,
            "tcp": node.tcp,
            "pid": node.pid(),
        })).collect::<Vec<_>>(),
        "screenshots": shots,
    });

    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .arg("e2e.mjs")
            .current_dir(browser_dir())
            .env("NSQADMIN_E2E", config.to_string())
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if child.try_wait().expect("wait for node").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().expect("node output")
    })
    .await
    .expect("e2e runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "e2e.mjs failed ({}); screenshots in {}",
        output.status,
        screenshots_dir().display()
    );
    // What reached graphite: the browser's own requests (upstream names) and, through nsqadmin's
    // proxy, those built from the proxied nsqadmin's statsd flags.
    let targets = render_targets(&renders);
    for expected in [
        r#"summarize(sumSeries(stats.gauges.nsq.*.topic.e2e_live.depth),"60sec","avg")"#,
        r#"summarize(sumSeries(stats.counters.nsq.*.topic.e2e_live.channel.workers.message_count.count),"60sec","avg")"#,
        r#"summarize(sumSeries(prod.*.topic.e2e_live.depth),"10sec","avg")"#,
        r#"summarize(sumSeries(stats_counts.prod.*.topic.e2e_live.message_count),"10sec","avg")"#,
        "sumSeries(stats.counters.nsq.*.topic.e2e_live.message_count.count)",
        "sumSeries(stats_counts.prod.*.topic.e2e_live.message_count)",
    ] {
        assert!(
            targets.iter().any(|target| target == expected),
            "graphite never saw {expected}; it saw {targets:#?}"
        );
    }
    drop((
        admin,
        direct,
        readonly,
        graphite_admin,
        proxy_admin,
        cluster,
    ));
}
