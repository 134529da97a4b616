//! Records the compiler version for `--version` (`nsqd v1.3.0 (built w/rust-1.95.0)`).

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=NSQ_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
