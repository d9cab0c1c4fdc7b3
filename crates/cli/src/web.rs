//! `troth web …`: the web client this binary carries (the release bundle of
//! `troth-web-assets`, the same bytes the relay built from this commit
//! serves), and a check of what a server serves against it.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use troth_web_assets::{ASSETS, bundle_hash, release_json, version};

use crate::ctx::{EXIT_INTEGRITY, EXIT_RELAY, fail_with};

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
            crate::ctx::EXIT_FAILED,
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
