//! `troth-client` as a library against the real relay binary: pairing in two
//! threads, a lost race (409) re-based and re-sent, paging past one page,
//! and a relay that stops answering mid-way.

use std::time::Duration;

use rand::rngs::OsRng;
use troth_client::pair::{Invitation, await_admission, create_space, join};
use troth_client::{Error, RelayClient, Session};
use troth_core::content::Content;
use troth_core::event::Role;
use troth_core::keyfile::KeyBundle;
use troth_tests::cli::Relay;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn paired(relay: &Relay) -> (Session, Session) {
    paired_with(RelayClient::new(&relay.url).expect("url"))
}

fn paired_with(client: RelayClient) -> (Session, Session) {
    let ka = KeyBundle::generate(&mut OsRng, now());
    let kb = KeyBundle::generate(&mut OsRng, now());
    let inv = Invitation::open(&client, &ka, Role::Leading, &mut OsRng).expect("open");
    let code = inv.code().to_string();
    let c2 = client.clone();
    let joiner = std::thread::spawn(move || {
        let p = join(&c2, &kb, &code, Duration::from_secs(30), &mut OsRng).expect("join");
        let r = await_admission(&c2, kb, &p, Duration::from_secs(30)).expect("admitted");
        (p.safety_number, r)
    });
    let p = inv.wait(Duration::from_secs(30)).expect("paired");
    let ra = create_space(&client, ka, Role::Leading, &p, now(), &mut OsRng).expect("space");
    let (sn, rb) = joiner.join().expect("joiner thread");
    assert_eq!(sn, p.safety_number);
    assert_eq!(ra.safety_number(), rb.safety_number());
    (Session::new(ra, client.clone()), Session::new(rb, client))
}

fn checkin(text: &str) -> Content {
    Content::CheckIn {
        text: text.into(),
        place: None,
        answers: None,
    }
}

#[test]
fn a_lost_race_is_rebased_and_long_logs_are_paged() {
    let relay = Relay::start();
    let (mut a, mut b) = paired(&relay);
    assert_eq!(b.sync().expect("sync").accepted, 0);

    // B writes; A, not yet synced, writes on its stale head: 409, re-base, retry.
    b.post(&checkin("on my way"), now(), &mut OsRng)
        .expect("b posts");
    let stale_head = a.replica().chain().head();
    let ev = a
        .post(
            &Content::RequestCheckIn { note: "ok".into() },
            now(),
            &mut OsRng,
        )
        .expect("a posts after re-basing");
    assert_eq!(ev.header().seq, 3, "composed again on the new head");
    assert_ne!(a.replica().chain().head(), stale_head);
    assert_eq!(b.sync_strict().expect("sync"), 1);
    assert_eq!(a.replica().state_code(), b.replica().state_code());
    assert_eq!(a.replica().state().checkins.len(), 1);

    // More than one page (64 events) arrives in order and verifies.
    for i in 0..70 {
        b.post(&checkin(&format!("check-in {i}")), now(), &mut OsRng)
            .expect("post");
    }
    assert_eq!(a.sync_strict().expect("sync"), 70);
    assert_eq!(a.replica().state().checkins.len(), 71);
    assert_eq!(a.replica().state_code(), b.replica().state_code());

    // The relay goes away: a clear error, and the replica is untouched.
    let before = a.replica().state_code();
    drop(relay);
    match a.sync() {
        Err(Error::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(matches!(
        a.post(&checkin("x"), now(), &mut OsRng),
        Err(Error::Unreachable { .. })
    ));
    assert_eq!(a.replica().state_code(), before);
}

/// The relay's `troth_relay_sessions` gauge.
fn open_sessions(relay: &Relay) -> u64 {
    let body = ureq::get(&format!("{}/metrics", relay.url))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix("troth_relay_sessions "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn request_sessions_carry_a_couple_across_a_relay_restart() {
    let relay = Relay::start();
    let client = RelayClient::new(&relay.url).expect("url").with_sessions();
    let (mut a, mut b) = paired_with(client);
    a.post(&checkin("home soon"), now(), &mut OsRng)
        .expect("a posts");
    assert_eq!(b.sync_strict().expect("b syncs"), 1);
    assert_eq!(open_sessions(&relay), 2, "one session per device");
    // A restart forgets the sessions; the clients open new ones by themselves.
    let relay = relay.restart();
    assert_eq!(open_sessions(&relay), 0);
    b.post(&checkin("see you"), now(), &mut OsRng)
        .expect("b posts");
    assert_eq!(a.sync_strict().expect("a syncs"), 1);
    assert_eq!(a.replica().state_code(), b.replica().state_code());
    assert_eq!(open_sessions(&relay), 2);
}

/// A real TCP proxy in front of the relay that, once armed, forwards the
/// next append to the relay, reads the relay's answer and then cuts the
/// client's connection instead of passing the answer on: the append was
/// made, and the client cannot know it.
struct LosingProxy {
    url: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    lost: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl LosingProxy {
    fn start(upstream: &str) -> LosingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU32};
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let armed = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU32::new(0));
        let (a, l) = (armed.clone(), lost.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (a, l, up) = (a.clone(), l.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, &up, &a, &l);
                });
            }
        });
        LosingProxy { url, armed, lost }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn lost(&self) -> u32 {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One HTTP/1.1 message (head and a Content-Length body) from `r`.
fn read_message(r: &mut impl std::io::BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        msg.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    msg.extend_from_slice(&body);
    Ok(Some(msg))
}

fn proxy_connection(
    client: std::net::TcpStream,
    upstream: &str,
    armed: &std::sync::atomic::AtomicBool,
    lost: &std::sync::atomic::AtomicU32,
) -> std::io::Result<()> {
    use std::io::{BufReader, Write};
    let server = std::net::TcpStream::connect(upstream)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut from_server = BufReader::new(server.try_clone()?);
    let (mut to_client, mut to_server) = (client, server);
    while let Some(req) = read_message(&mut from_client)? {
        to_server.write_all(&req)?;
        let Some(resp) = read_message(&mut from_server)? else {
            return Ok(());
        };
        let append = req.starts_with(b"POST ")
            && req
                .split(|b| *b == b'\r')
                .next()
                .is_some_and(|l| l.ends_with(b"/events HTTP/1.1"));
        if append && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return to_client.shutdown(std::net::Shutdown::Both);
        }
        to_client.write_all(&resp)?;
    }
    Ok(())
}

#[test]
fn an_append_whose_answer_was_lost_or_named_in_a_409_is_not_posted_twice() {
    let relay = Relay::start();
    let proxy = LosingProxy::start(&relay.url);
    let (mut a, mut b) = paired_with(RelayClient::new(&proxy.url).expect("url"));

    // The relay writes the event, the answer never reaches A: A looks,
    // finds its own event in the verified log, and is done.
    proxy.arm();
    let before = a.replica().chain().len();
    let ev = a
        .post(&checkin("answer lost on the way"), now(), &mut OsRng)
        .expect("a post whose answer was lost is resolved");
    assert_eq!(proxy.lost(), 1, "the proxy cut an append's answer");
    assert_eq!(a.replica().chain().len(), before + 1, "posted once");
    assert_eq!(
        a.replica().chain().hash_at(ev.header().seq),
        Some(ev.hash())
    );
    assert_eq!(b.sync_strict().expect("b syncs"), 1);
    assert_eq!(b.replica().state().checkins.len(), 1);

    // An append sent twice (an earlier try went through): the relay's 409
    // names this very event as the head, which counts as done.
    let ev = a
        .replica()
        .compose(&checkin("sent twice"), now(), &mut OsRng)
        .expect("compose");
    let first = a
        .relay()
        .append(&a.replica().keys().device, &ev)
        .expect("first try");
    assert!(matches!(first, troth_client::relay::Appended::Done(_)));
    let again = ev.clone();
    let got = a
        .post_with(|_| Ok(again.clone()))
        .expect("the retry is done");
    assert_eq!(got.hash(), ev.hash());
    assert_eq!(a.replica().chain().len(), before + 2);
    assert_eq!(b.sync_strict().expect("b syncs"), 1);
    assert_eq!(b.replica().state().checkins.len(), 2);
    assert_eq!(a.replica().state_code(), b.replica().state_code());
}
