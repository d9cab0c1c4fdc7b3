//! `troth web …`: the web client this binary carries (the release bundle of
//! `troth-web-assets`, the same bytes the relay built from this commit
//! serves), and a check of what a server serves against it.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use troth_web_assets::{ASSETS, bundle_hash, release_json, version};

use crate::ctx::{EXIT_FAILED, EXIT_INTEGRITY, EXIT_RELAY, fail, fail_with};

/// The most one asset may weigh when fetched (the wasm is ~0.7 MB).
const MAX_ASSET: u64 = 16 * 1024 * 1024;

/// `troth web release`: the bundle hash and version (`--json`: the whole
/// `release.json`).
pub fn release(json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        write!(out, "{}", release_json())?;
    } else {
        writeln!(
            out,
            "Troth web client {}, bundle {} ({} files).",
            version(),
            bundle_hash(),
            ASSETS.len()
        )?;
    }
    Ok(())
}

/// What one fetched file turned out to be.
enum Outcome {
    Same,
    Differs(String),
    Missing(u16),
    Unreachable,
}

/// `troth web verify URL`: fetches every file of the bundle from `url` (and
/// `/`, the page a browser opens) uncompressed, and compares each with the
/// copy embedded here. One line per file; exit 0 only if all match.
pub fn verify(url: &str, json: bool) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains(['?', '#']) {
        return Err(fail_with(
            EXIT_FAILED,
            format!("{url} is not a web address; give one like https://troth.example.org"),
        ));
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .user_agent(concat!("troth/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut checks: Vec<(&str, &str)> = ASSETS.iter().map(|a| (a.path, a.sha256)).collect();
    if let Some(index) = ASSETS.iter().find(|a| a.path == "/index.html") {
        checks.insert(0, ("/", index.sha256));
    }
    let mut rows = Vec::new();
    let mut out = std::io::stdout().lock();
    for (path, expected) in &checks {
        let outcome = fetch(&agent, &format!("{base}{path}"))
            .map(|r| match r {
                Ok(bytes) => {
                    let got = hex::encode(Sha256::digest(&bytes));
                    if got == *expected {
                        Outcome::Same
                    } else {
                        Outcome::Differs(got)
                    }
                }
                Err(status) => Outcome::Missing(status),
            })
            .unwrap_or(Outcome::Unreachable);
        if !json {
            let line = match &outcome {
                Outcome::Same => format!("same     {path}"),
                Outcome::Differs(got) => format!(
                    "DIFFERS  {path}  (served {}…, this troth has {}…)",
                    &got[..16],
                    &expected[..16]
                ),
                Outcome::Missing(status) => {
                    format!("MISSING  {path}  (the server answered {status})")
                }
                Outcome::Unreachable => format!("MISSING  {path}  (no answer)"),
            };
            writeln!(out, "{line}")?;
        }
        rows.push((*path, *expected, outcome));
    }
    let bad: Vec<&str> = rows
        .iter()
        .filter(|(_, _, o)| !matches!(o, Outcome::Same))
        .map(|(p, _, _)| *p)
        .collect();
    if rows
        .iter()
        .all(|(_, _, o)| matches!(o, Outcome::Unreachable))
    {
        return Err(fail_with(
            EXIT_RELAY,
            format!(
                "Could not reach {base}. Check the address and your connection, then try again."
            ),
        ));
    }
    if json {
        let files: Vec<_> = rows
            .iter()
            .map(|(path, expected, o)| {
                let (status, got) = match o {
                    Outcome::Same => ("same", Some((*expected).to_owned())),
                    Outcome::Differs(g) => ("differs", Some(g.clone())),
                    Outcome::Missing(_) | Outcome::Unreachable => ("missing", None),
                };
                json!({ "path": path, "status": status, "expected": expected, "served": got })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "url": base,
                "version": version(),
                "bundle": bundle_hash(),
                "match": bad.is_empty(),
                "files": files,
            })
        )?;
    } else if bad.is_empty() {
        writeln!(
            out,
            "All {} files match this troth's web client {} (bundle {}).",
            rows.len(),
            version(),
            bundle_hash()
        )?;
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(fail_with(
            EXIT_INTEGRITY,
            format!(
                "{} of {} files served by {base} are not the ones this troth carries: {}. Don't unlock Troth from there until you know why; `troth web` serves this copy.",
                bad.len(),
                rows.len(),
                bad.join(", ")
            ),
        ))
    }
}

/// GET without compression: the bytes on 200, the status otherwise; `None`
/// if there was no answer (or the body was too large or unreadable).
fn fetch(agent: &ureq::Agent, url: &str) -> Option<Result<Vec<u8>, u16>> {
    let mut res = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .ok()?;
    let status = res.status().as_u16();
    if status != 200 {
        return Some(Err(status));
    }
    res.body_mut()
        .with_config()
        .limit(MAX_ASSET)
        .read_to_vec()
        .ok()
        .map(Ok)
}

/// The origin (`scheme://host[:port]`) of an http(s) URL, and the WebSocket
/// origin beside it; `None` if it is not one.
fn origins(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let ws = match scheme.to_ascii_lowercase().as_str() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    let host = rest.split('/').next().unwrap_or("");
    let good = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !good || url.contains(['?', '#', ' ', '\'', '"', ';']) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    Some((
        format!("{}://{host}", scheme.to_ascii_lowercase()),
        format!("{ws}://{host}"),
    ))
}

/// `troth web serve --relay URL [--listen ADDR]`: the web client this troth
/// carries, served from this computer, so that a partner who does not trust
/// a relay's operator uses a copy no operator can touch. The page's policy
/// lets it talk to this origin and the chosen relay only; the app reads the
/// relay from `/troth-config.json`. Prints the app's address alone on the
/// first line, then serves until stopped.
pub fn serve(relay: &str, listen: &str) -> anyhow::Result<()> {
    use axum::http::HeaderValue;
    let relay = relay.trim_end_matches('/');
    let Some((http_origin, ws_origin)) = origins(relay) else {
        return Err(fail(format!(
            "{relay} is not a relay address; give one like https://relay.example.org"
        )));
    };
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        fail(format!(
            "{listen} is not an address to serve on, like 127.0.0.1:8090"
        ))
    })?;
    let csp = format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; connect-src 'self' {http_origin} {ws_origin}; \
         manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let csp = HeaderValue::from_str(&csp).map_err(|_| fail("that relay address cannot be used"))?;
    let config = serde_json::to_vec(&json!({ "relay": relay }))?;
    let app = troth_web_assets::serve::router_with::<()>(csp, config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            fail(format!("Could not serve on {addr} ({e}); try another --listen address"))
        })?;
        let local = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "http://{local}")?;
            writeln!(
                out,
                "Troth (bundle {}…) is served from this computer and talks to {relay}. Open the address above; Ctrl-C stops it.",
                &bundle_hash()[..16.min(bundle_hash().len())]
            )?;
            out.flush()?;
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::origins;

    #[test]
    fn relay_origins() {
        assert_eq!(
            origins("https://Relay.example.org/base"),
            Some((
                "https://relay.example.org".into(),
                "wss://relay.example.org".into()
            ))
        );
        assert_eq!(
            origins("http://127.0.0.1:8080"),
            Some(("http://127.0.0.1:8080".into(), "ws://127.0.0.1:8080".into()))
        );
        for bad in [
            "ftp://x",
            "relay.example",
            "https://",
            "https://a b",
            "https://a;script-src *",
        ] {
            assert_eq!(origins(bad), None, "{bad}");
        }
    }
}
