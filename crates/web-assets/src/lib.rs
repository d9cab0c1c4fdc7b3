//! The web client as one release bundle, built once (`build.rs`: the wasm
//! core, the bindgen glue, `web/`, and `release.json`) and embedded in both
//! the relay and the `troth` CLI, so that each binary carries the same
//! bytes: the relay serves them, `troth web verify` compares what a server
//! serves with them. With the `serve` feature, [`serve::router`] serves the
//! bundle with the headers it needs (docs/WEB.md).
#![forbid(unsafe_code)]

#[cfg(feature = "serve")]
pub mod serve;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL path (`/app.js`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// A strong validator (a prefix of the SHA-256 of `raw`, quoted).
    pub etag: &'static str,
    /// The SHA-256 of `raw`, lowercase hex (as listed in `release.json`).
    pub sha256: &'static str,
    /// The bytes.
    pub raw: &'static [u8],
    /// The bytes, gzipped.
    pub gzip: &'static [u8],
}

/// Every embedded file of the web client, sorted by path, `release.json`
/// included. Empty in fuzz builds (they build no wasm).
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The bundle hash: SHA-256 over the lines `sha256sum` prints for every
/// asset but `release.json` (`<hex>  <path>`, sorted by path), lowercase
/// hex. The app shows it under Safety; `release.json` lists it.
pub fn bundle_hash() -> &'static str {
    release_field("\"bundle\": \"").unwrap_or("")
}

/// The client's version (the workspace's), as `release.json` lists it.
pub fn version() -> &'static str {
    release_field("\"version\": \"").unwrap_or("")
}

/// `release.json`: the version, the bundle hash, and each asset's path,
/// size and SHA-256.
pub fn release_json() -> &'static str {
    asset("/release.json")
        .and_then(|a| std::str::from_utf8(a.raw).ok())
        .unwrap_or("")
}

/// The embedded asset at a URL path.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The string value after `key` in `release.json` (which the build writes
/// with one field per line, no escapes inside hex or version strings).
fn release_field(key: &str) -> Option<&'static str> {
    let json = release_json();
    let start = json.find(key)? + key.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_embedded_with_its_release() {
        let paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        for p in [
            "/index.html",
            "/troth_wasm.js",
            "/troth_wasm_bg.wasm",
            "/release.json",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        assert_eq!(bundle_hash().len(), 64);
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        // release.json lists every other asset with its hash.
        for a in ASSETS.iter().filter(|a| a.path != "/release.json") {
            let line = format!(
                "\"path\": \"{}\", \"size\": {}, \"sha256\": \"{}\"",
                a.path,
                a.raw.len(),
                a.sha256
            );
            assert!(release_json().contains(&line), "{line} not in release.json");
        }
    }
}
