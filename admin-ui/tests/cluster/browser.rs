//! The page in a real headless Chromium: starts the cluster, two nsqadmin (lookupd mode and
//! direct mode) and runs `tests/browser/e2e.mjs`, which drives Debian's `/usr/bin/chromium` with
//! playwright-core. Prerequisites come from `admin-ui/tests/browser/install.sh`.

use crate::harness::Cluster;
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let config = serde_json::json!({
        "admin": format!("http://{}", admin.http),
        "direct_admin": format!("http://{}", direct.http),
        "readonly_admin": format!("http://{}", readonly.http),
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
    drop((admin, direct, readonly, cluster));
}
