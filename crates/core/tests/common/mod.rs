//! A couple's two replicas over an in-memory log (the relay's
//! append-if-head), shared by the end-to-end core tests.
#![allow(dead_code)]

use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::SpaceId;
use troth_core::agreement::{Agreement, Day, template};
use troth_core::content::Content;
use troth_core::event::{Event, Role};
use troth_core::ids::AgreementId;
use troth_core::keyfile::KeyBundle;
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;

/// Two partners' replicas and the log they share.
pub struct Couple {
    pub log: Vec<Event>,
    pub a: Replica,
    pub b: Replica,
    pub rng: StdRng,
    pub now: u64,
}

impl Couple {
    /// A paired couple who both confirmed who sets the conditions (the
    /// partner paired in the leading role): ready to propose.
    pub fn new(seed: u64) -> Self {
        let mut c = Couple::new_unconfirmed(seed);
        let ca = c.a.confirm_roles().expect("a confirms");
        c.post(Role::Leading, ca);
        let cb = c.b.confirm_roles().expect("b confirms");
        c.post(Role::Rebuilding, cb);
        assert!(c.a.state().roles.agreed() && c.b.state().roles.agreed());
        c
    }

    /// A paired couple: genesis and AddMember in the log, both synced; roles
    /// not confirmed yet.
    pub fn new_unconfirmed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let now = 1_790_000_000_000;
        let ka = KeyBundle::generate(&mut rng, now);
        let kb = KeyBundle::generate(&mut rng, now);
        let space = SpaceId::random(&mut rng);
        let a_id = ka.identity.public();
        let b_id = kb.identity.public();
        let b_cert = kb.cert.clone();
        let (mut a, genesis) =
            Replica::create(ka, Role::Leading, space, now, &mut rng).expect("create");
        assert_eq!(a.ingest(std::slice::from_ref(&genesis)).accepted, 1);
        // Pairing authenticated each other's identity keys (see pairing tests).
        a.trust_partner(b_id);
        let add = a.compose_add_member(&b_cert, now + 1).expect("add member");
        assert_eq!(a.ingest(std::slice::from_ref(&add)).accepted, 1);
        let b = Replica::open(
            kb,
            Role::Rebuilding,
            space,
            TrustAnchors {
                leading: Some(a_id),
                rebuilding: None,
            },
        );
        let mut c = Couple {
            log: vec![genesis, add],
            a,
            b,
            rng,
            now: now + 2,
        };
        c.sync_b();
        assert_eq!(c.b.events().len(), 2);
        c
    }

    /// The couple's day (by the clock the helper gives events).
    pub fn today(&self) -> Day {
        Day::from_unix_ms(self.now)
    }

    /// A catches up with the log.
    pub fn sync_a(&mut self) {
        let from = self.a.events().len();
        let r = self.a.ingest(&self.log[from..]);
        assert!(r.error.is_none(), "{:?}", r.error);
    }

    /// B catches up with the log.
    pub fn sync_b(&mut self) {
        let from = self.b.events().len();
        let r = self.b.ingest(&self.log[from..]);
        assert!(r.error.is_none(), "{:?}", r.error);
    }

    /// Like [`Couple::post`], as a modified client would: without the
    /// composer's checks (review cap, request limits).
    pub fn post_unchecked(&mut self, by: Role, content: Content) -> Event {
        self.now += 1000;
        let rep = match by {
            Role::Leading => &self.a,
            Role::Rebuilding => &self.b,
        };
        let ev = rep
            .compose_unchecked(&content, self.now, &mut self.rng)
            .expect("compose");
        self.log.push(ev.clone());
        self.sync_a();
        self.sync_b();
        ev
    }

    /// Composes on the author's head and appends if it is still the log's head.
    pub fn post(&mut self, by: Role, content: Content) -> Event {
        self.now += 1000;
        let rep = match by {
            Role::Leading => &self.a,
            Role::Rebuilding => &self.b,
        };
        let ev = rep
            .compose(&content, self.now, &mut self.rng)
            .expect("compose");
        assert_eq!(ev.header().seq, self.log.len() as u64, "stale head");
        self.log.push(ev.clone());
        self.sync_a();
        self.sync_b();
        ev
    }
}

/// The whereabouts template as version 1 of agreement `id`.
pub fn whereabouts(id: AgreementId) -> Agreement {
    let t = template("whereabouts").expect("template");
    Agreement {
        id,
        version: 1,
        supersedes: None,
        title: t.title.into(),
        rules: t.rules,
        review_on: Day::parse("2026-11-15").expect("day"),
    }
}
