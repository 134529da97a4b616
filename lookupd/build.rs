//! Records the compiler version for `nsqlookupd --version` (`built w/rust-<version>`).

fn main() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .filter(|version| {
            version
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-')
        })
        .map(|version| version.to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=NSQ_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
