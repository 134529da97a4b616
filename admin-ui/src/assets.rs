//! The page's assets, embedded in the binary at compile time (no front-end build step).
//!
//! `assets/index.html` is the shell every page route returns; it holds two placeholders filled in
//! per request: `{{BASE}}` (the `--base-path` prefix, "" at the root) and `{{CONFIG}}` (a JSON
//! document: version, mode, discovery addresses, whether the requester is an admin, and the
//! graphite/statsd settings the page builds graph URLs from). Everything
//! else is served from `<base>/static/<name>` with an `ETag` and `Cache-Control: no-cache`, so a
//! browser revalidates cheaply and never runs stale code after an upgrade. With
//! `--dev-static-dir` the files are read from that directory on every request instead.

use std::borrow::Cow;
use std::path::PathBuf;

/// Every embedded file, by the name it is served under.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../assets/index.html")),
    ("app.js", include_bytes!("../assets/app.js")),
    ("graphite.js", include_bytes!("../assets/graphite.js")),
    ("app.css", include_bytes!("../assets/app.css")),
    ("favicon.svg", include_bytes!("../assets/favicon.svg")),
];

/// Where assets come from: the binary, or a development directory.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    dev_dir: Option<PathBuf>,
}

/// One asset's bytes and validator.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The file's contents.
    pub bytes: Cow<'static, [u8]>,
    /// A strong `ETag` (quoted hash of the contents).
    pub etag: String,
    /// MIME type from the extension.
    pub content_type: &'static str,
}

impl Assets {
    /// Embedded assets, or files from `dev_dir` when given.
    pub fn new(dev_dir: Option<PathBuf>) -> Self {
        Self { dev_dir }
    }

    /// The asset called `name`, if there is one (`name` is a plain file name).
    pub fn get(&self, name: &str) -> Option<Asset> {
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return None;
        }
        let bytes: Cow<'static, [u8]> = match &self.dev_dir {
            Some(dir) => Cow::Owned(std::fs::read(dir.join(name)).ok()?),
            None => Cow::Borrowed(
                EMBEDDED
                    .iter()
                    .find(|(embedded, _)| *embedded == name)
                    .map(|(_, bytes)| *bytes)?,
            ),
        };
        Some(Asset {
            etag: format!("\"{:016x}\"", fnv1a(&bytes)),
            content_type: content_type(name),
            bytes,
        })
    }

    /// `index.html` with its placeholders filled in.
    pub fn index(&self, base_prefix: &str, config_json: &str) -> String {
        let shell = self
            .get("index.html")
            .map(|asset| String::from_utf8_lossy(&asset.bytes).into_owned())
            .unwrap_or_default();
        shell
            .replace("{{BASE}}", base_prefix)
            .replace("{{CONFIG}}", config_json)
    }
}

/// Upstream's MIME types: the usual ones plus its font and source-map overrides.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "map" | "json" => "application/json",
        "woff" => "application/font-woff",
        "woff2" => "application/font-woff2",
        "ttf" => "application/font-sfnt",
        "eot" => "application/vnd.ms-fontobject",
        _ => "application/octet-stream",
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_assets_and_types() {
        let assets = Assets::default();
        for name in [
            "app.js",
            "graphite.js",
            "app.css",
            "index.html",
            "favicon.svg",
        ] {
            let asset = assets.get(name).unwrap_or_else(|| panic!("{name}"));
            assert!(!asset.bytes.is_empty());
            assert!(asset.etag.starts_with('"'));
        }
        assert!(assets.get("nosuch.js").is_none());
        assert!(assets.get("../Cargo.toml").is_none());
        assert_eq!(content_type("main.js.map"), "application/json");
        assert_eq!(content_type("x.woff2"), "application/font-woff2");
        let index = assets.index("/admin", r#"{"x":1}"#);
        assert!(index.contains("/admin/static/app.js"));
        assert!(index.contains(r#"{"x":1}"#));
        assert!(!index.contains("{{"));
    }
}
