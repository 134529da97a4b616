//! nsqadmin against real processes: nsqlookupd and two nsqd from `<workspace>/target/debug/`
//! (`cargo build -p nsqd -p nsqlookupd`) and this package's nsqadmin, all on 127.0.0.1 port 0.
//!
//! * `api`: `/api/*` compared with upstream's captured answers (`shared/fixtures/nsqadmin`),
//!   ACL and notifications, partial and total upstream failures, start-up checks.
//! * `browser`: the page in headless Chromium (`tests/browser/e2e.mjs`, playwright-core).

mod api;
mod browser;
mod harness;
mod shape;
