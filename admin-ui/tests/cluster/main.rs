//! nsqadmin against real processes: nsqlookupd and two nsqd from `<workspace>/target/debug/`
//! (`cargo build -p nsqd -p nsqlookupd`) and this package's nsqadmin, all on 127.0.0.1 port 0.
//!
//! * `api`: `/api/*` compared with upstream's captured answers (`shared/fixtures/nsqadmin`),
//!   ACL and notifications, partial and total upstream failures, start-up checks.
//! * `browser`: the page in headless Chromium (`tests/browser/e2e.mjs`, playwright-core), also
//!   with graphite graphs from a fake graphite, direct and through nsqadmin's `/render` proxy.
//! * `graphite`: the page's graphite target names and graph URLs (`assets/graphite.js` under node).
//! * `tls`: nsqadmin's `--http-client-tls-*` flags against a real nsqd with `--tls-required`.

mod api;
mod browser;
mod graphite;
mod harness;
mod shape;
mod tls;
