//! The relay answers browsers on other origins only where its operator
//! listed them (`--web-origin`): a copy of the web client served elsewhere
//! (`troth web serve`) can use it, a page from anywhere else cannot read an
//! answer. The real relay binary on a loopback port.

use std::process::Command;

use troth_tests::cli::{Relay, relay_bin};

const LISTED: &str = "http://127.0.0.1:8090";
const OTHER: &str = "https://elsewhere.example";

struct Answer {
    status: u16,
    allow_origin: Option<String>,
    body: String,
}

fn request(relay: &Relay, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build()
        .new_agent();
    let url = format!("{}{path}", relay.url);
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).expect("request");
    let mut res = agent.run(req).expect("an answer");
    Answer {
        status: res.status().as_u16(),
        allow_origin: res
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: res.body_mut().read_to_string().unwrap_or_default(),
    }
}

#[test]
fn only_listed_origins_get_answers() {
    let relay = Relay::start_with(&["--web-origin", LISTED]);
    let preflight = |origin: &str| {
        request(
            &relay,
            "OPTIONS",
            "/v1/rendezvous",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
        )
    };
    let ok = preflight(LISTED);
    assert_eq!(ok.status, 204);
    assert_eq!(ok.allow_origin.as_deref(), Some(LISTED));
    let no = preflight(OTHER);
    assert_eq!(no.status, 403);
    assert!(no.allow_origin.is_none());
    assert!(no.body.contains("origin_not_allowed"), "{}", no.body);

    // A simple request is answered either way (CORS is the browser's to
    // enforce), but only the listed origin's page may read the answer.
    let listed = request(&relay, "GET", "/healthz", &[("origin", LISTED)]);
    assert_eq!(listed.allow_origin.as_deref(), Some(LISTED));
    let other = request(&relay, "GET", "/healthz", &[("origin", OTHER)]);
    assert_eq!(other.status, 200);
    assert!(other.allow_origin.is_none());
    // No Origin (the CLI): untouched.
    let cli = request(&relay, "GET", "/healthz", &[]);
    assert_eq!((cli.status, cli.allow_origin), (200, None));
}

#[test]
fn without_the_setting_no_other_origin_is_answered() {
    let relay = Relay::start();
    let r = request(
        &relay,
        "OPTIONS",
        "/v1/rendezvous",
        &[
            ("origin", LISTED),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_bad_origin_setting_is_named() {
    let out = Command::new(relay_bin())
        .args([
            "--web-origin",
            "https://a.example/path",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(tempfile::tempdir().expect("tempdir").path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--web-origin") && err.contains("https://a.example/path"),
        "{err}"
    );
}
