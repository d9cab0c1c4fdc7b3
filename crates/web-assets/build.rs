//! Builds the web client's release bundle, which the relay and the `troth`
//! CLI both embed (so `cargo run -p troth-relay` serves it with no other
//! step, and `troth web verify` compares a server's copy with it; see
//! `docs/WEB.md` and the `TOOLCHAIN` notes there):
//!
//! 1. compiles `crates/wasm` for `wasm32-unknown-unknown` with a nested cargo,
//!    in a target folder of its own (`target-wasm/`, beside the outer one:
//!    sharing the outer folder deadlocks on its lock) and the `wasm-release`
//!    profile, through `cargo rustc --crate-type cdylib` (LTO is dropped for a
//!    `cdylib` + `rlib` crate under `cargo build`);
//! 2. runs the bindgen step with `wasm-bindgen-cli-support` (same version as
//!    `wasm-bindgen`, pinned with `=`), so no CLI is installed;
//! 3. copies `web/` beside the generated files, gzips each asset (Zopfli, cached
//!    by content in `target-wasm/gz-cache/`), writes `release.json` (each
//!    asset's SHA-256 and the bundle hash, `docs/WEB.md`), and writes
//!    `assets.rs` (path, type, etag, SHA-256, bytes, gzip bytes) and
//!    `release.rs` (the bundle hash) for `src/lib.rs`.
//!
//! The bundle is deterministic: the nested build remaps the checkout's and
//! cargo's paths (which panic messages would otherwise carry into the wasm),
//! so the same commit gives the same bundle hash wherever it is built
//! (`cargo xtask reproduce` checks it).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        // One line that says what to do; cargo prints it with the failure.
        panic!("{e}");
    }
}

fn run() -> Res<()> {
    let manifest = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the workspace root")?
        .to_path_buf();
    let out = PathBuf::from(var("OUT_DIR")?);
    // Fuzz builds (cargo fuzz sets `--cfg fuzzing`) run on a nightly toolchain
    // without the wasm target and exercise only the API: serve no web assets.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        fs::write(out.join("assets.rs"), "&[]")
            .map_err(|e| format!("cannot write assets.rs: {e}"))?;
        fs::write(out.join("release.rs"), "\"\"")
            .map_err(|e| format!("cannot write release.rs: {e}"))?;
        return Ok(());
    }
    for p in [
        "crates/wasm/src",
        "crates/wasm/Cargo.toml",
        "crates/wasm-bundle",
        "crates/core/src",
        "crates/core/Cargo.toml",
        "web",
        "Cargo.lock",
        "Cargo.toml",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=TROTH_WASM_PROFILE");

    let wasm = build_wasm(&root, &out)?;
    let site = out.join("site");
    if site.exists() {
        fs::remove_dir_all(&site).map_err(|e| format!("cannot clear {}: {e}", site.display()))?;
    }
    fs::create_dir_all(&site).map_err(|e| format!("cannot create {}: {e}", site.display()))?;
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen
        .input_path(&wasm)
        .web(true)
        .map_err(|e| format!("wasm-bindgen: {e}"))?
        // The library defaults to `true`, unlike the CLI; then `await init()`
        // cannot find the .wasm file.
        .omit_default_module_path(false)
        .typescript(false)
        .out_name("troth_wasm")
        .remove_name_section(true)
        .remove_producers_section(true)
        .generate(&site)
        .map_err(|e| format!("wasm-bindgen could not process {}: {e}", wasm.display()))?;
    strip_doc_comments(&site.join("troth_wasm.js"))?;
    copy_dir(&root.join("web"), &site)?;
    let cache = wasm
        .ancestors()
        .nth(3)
        .map(|t| t.join("gz-cache"))
        .unwrap_or_else(|| out.join("gz-cache"));
    write_release(&site)?;
    write_assets(&site, &out, &cache)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bundle hash over `(sha256, path)` pairs sorted by path: SHA-256 of
/// the lines `sha256sum` prints for them (`<hex>  <path without />\n`),
/// so that `sha256sum $(find … | sort) | sha256sum` reproduces it.
fn bundle_hash(entries: &[(String, String, usize)]) -> String {
    let mut h = sha2::Sha256::new();
    for (path, sha, _) in entries {
        h.update(format!("{sha}  {}\n", path.trim_start_matches('/')));
    }
    hex(&h.finalize())
}

/// Writes `release.json` into the site: every other asset's path, size and
/// SHA-256, sorted by path, and the bundle hash over them.
fn write_release(site: &Path) -> Res<()> {
    let mut list = Vec::new();
    files(site, site, &mut list)?;
    list.sort();
    let mut entries = Vec::new();
    for (url, path) in &list {
        if content_type(url).is_none() || url == "/release.json" || url.ends_with(".gz") {
            continue;
        }
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        entries.push((url.clone(), hex(&sha2::Sha256::digest(&bytes)), bytes.len()));
    }
    let bundle = bundle_hash(&entries);
    let version = var("CARGO_PKG_VERSION")?;
    let mut json = format!(
        "{{\n  \"name\": \"troth-web\",\n  \"version\": \"{version}\",\n  \"bundle\": \"{bundle}\",\n  \"assets\": [\n"
    );
    for (i, (url, sha, size)) in entries.iter().enumerate() {
        let comma = if i + 1 < entries.len() { "," } else { "" };
        let _ = writeln!(
            json,
            "    {{ \"path\": \"{url}\", \"size\": {size}, \"sha256\": \"{sha}\" }}{comma}"
        );
    }
    json.push_str("  ]\n}\n");
    let dest = site.join("release.json");
    fs::write(&dest, json).map_err(|e| format!("cannot write {}: {e}", dest.display()))
}

/// Drops the doc comments (`/** … */` on lines of their own) that the
/// bindgen step copies from the Rust docs into the JavaScript glue: read by
/// nobody in the browser, they were about 2.8 KiB of the first download
/// (gzip). The Rust docs stay where they are (`missing_docs` is a lint).
fn strip_doc_comments(glue: &Path) -> Res<()> {
    let text =
        fs::read_to_string(glue).map_err(|e| format!("cannot read {}: {e}", glue.display()))?;
    let mut out = String::with_capacity(text.len());
    let mut in_doc = false;
    for line in text.lines() {
        let t = line.trim_start();
        if !in_doc && t.starts_with("/**") {
            in_doc = !t.contains("*/");
            continue;
        }
        if in_doc {
            in_doc = !t.contains("*/");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    fs::write(glue, out).map_err(|e| format!("cannot write {}: {e}", glue.display()))
}

/// A toolchain rustup installed before `rust-toolchain.toml` listed the wasm
/// target lacks it, and rustup adds listed targets only when it installs a
/// toolchain: add it here, so the README's run command works on such a
/// machine too. Under rustup, `RUSTUP_TOOLCHAIN` names the toolchain in use.
/// Without rustup this does nothing and the caller says what to do.
fn add_wasm_target() {
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", "wasm32-unknown-unknown"])
        .stdout(std::process::Stdio::null());
    if let Ok(t) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &t]);
    }
    // Cargo repeats a build script's warnings on every build until the script
    // runs again, hence the past tense.
    if cmd.status().is_ok_and(|s| s.success()) {
        println!(
            "cargo:warning=added the wasm32-unknown-unknown target to this toolchain (rustup target add), for the web client"
        );
    }
}

fn var(name: &str) -> Res<String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// The outer target folder: the ancestor of OUT_DIR holding `CACHEDIR.TAG`.
fn outer_target(out: &Path) -> Option<PathBuf> {
    out.ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

fn build_wasm(root: &Path, out: &Path) -> Res<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let wasm_std = sysroot.join("lib/rustlib/wasm32-unknown-unknown/lib");
    if !wasm_std.is_dir() {
        add_wasm_target();
    }
    if !wasm_std.is_dir() {
        return Err(
            "the web client needs the wasm32 target: run `rustup target add wasm32-unknown-unknown`"
                .into(),
        );
    }
    let target_dir = match outer_target(out) {
        Some(t) => t
            .parent()
            .map(|p| p.join("target-wasm"))
            .unwrap_or_else(|| out.join("target-wasm")),
        None => out.join("target-wasm"),
    };
    let profile = env::var("TROTH_WASM_PROFILE").unwrap_or_else(|_| "wasm-release".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args([
            "rustc",
            "-p",
            "troth-wasm-bundle",
            "--lib",
            "--crate-type",
            "cdylib",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            &profile,
            "--locked",
            "--quiet",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Keep the outer cargo's settings out of the nested build.
    for (k, _) in env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let keep = matches!(k, "CARGO_HOME" | "CARGO_MAKEFLAGS")
            || [
                "CARGO_NET_",
                "CARGO_HTTP_",
                "CARGO_REGISTRY",
                "CARGO_REGISTRIES_",
                "CARGO_TERM_",
            ]
            .iter()
            .any(|p| k.starts_with(p));
        let drop = (k.starts_with("CARGO_") && !keep)
            || k.starts_with("__CARGO")
            || matches!(
                k,
                "CARGO"
                    | "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CLIPPY_ARGS"
                    | "CLIPPY_CONF_DIR"
            );
        if drop {
            cmd.env_remove(k);
        }
    }
    // Remap the paths a build would write into the wasm (panic locations):
    // the checkout's and cargo's home, so the bundle does not depend on
    // where it was built.
    let mut flags = String::from("-Ctarget-feature=+simd128");
    let _ = write!(flags, "\x1f--remap-path-prefix={}=/troth", root.display());
    let cargo_home = env::var("CARGO_HOME")
        .ok()
        .or_else(|| env::var("HOME").ok().map(|h| format!("{h}/.cargo")));
    if let Some(home) = cargo_home {
        let _ = write!(flags, "\x1f--remap-path-prefix={home}=/cargo");
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags)
        .env("RUSTC", &rustc);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run the nested cargo ({cargo}): {e}"))?;
    if !status.success() {
        return Err(format!(
            "building crates/wasm for wasm32-unknown-unknown failed (see above); try `cargo build -p troth-wasm --target wasm32-unknown-unknown` ({status})"
        ));
    }
    let wasm = target_dir
        .join("wasm32-unknown-unknown")
        .join(&profile)
        .join("troth_wasm_bundle.wasm");
    if !wasm.is_file() {
        return Err(format!("the wasm build left no {}", wasm.display()));
    }
    Ok(wasm)
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    let entries = fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let dest = to.join(&name);
        if path.is_dir() {
            fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
            copy_dir(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit('.').next()?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

fn files(dir: &Path, base: &Path, acc: &mut Vec<(String, PathBuf)>) -> Res<()> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            files(&path, base, acc)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            acc.push((format!("/{rel}"), path));
        }
    }
    Ok(())
}

/// Zopfli gzip (a few seconds for the wasm), cached by content in `cache`.
fn gzip_cached(bytes: &[u8], cached: &Path) -> Res<Vec<u8>> {
    if let Ok(gz) = fs::read(cached) {
        return Ok(gz);
    }
    let mut gz = Vec::new();
    zopfli::compress(
        zopfli::Options::default(),
        zopfli::Format::Gzip,
        bytes,
        &mut gz,
    )
    .map_err(|e| format!("gzip failed: {e}"))?;
    if let Some(dir) = cached.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = fs::write(cached, &gz);
    Ok(gz)
}

fn write_assets(site: &Path, out: &Path, cache: &Path) -> Res<()> {
    let dest = out.join("assets.rs");
    let mut list = Vec::new();
    files(site, site, &mut list)?;
    list.sort();
    let mut code = String::from("// Generated by build.rs: the web client's files.\n&[\n");
    for (url, path) in &list {
        let Some(ct) = content_type(url) else {
            continue;
        };
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let hex = hex(&sha2::Sha256::digest(&bytes));
        let etag = &hex[..24];
        let gz = gzip_cached(&bytes, &cache.join(format!("{hex}.gz")))?;
        let gz_path = PathBuf::from(format!("{}.gz", path.display()));
        fs::write(&gz_path, &gz).map_err(|e| format!("cannot write {}: {e}", gz_path.display()))?;
        let _ = writeln!(
            code,
            "    Asset {{ path: {url:?}, content_type: {ct:?}, etag: \"\\\"{etag}\\\"\", sha256: {hex:?}, raw: include_bytes!({:?}), gzip: include_bytes!({:?}) }},",
            path.display().to_string(),
            gz_path.display().to_string()
        );
    }
    code.push_str("]\n");
    fs::write(&dest, code).map_err(|e| format!("cannot write {}: {e}", dest.display()))
}
