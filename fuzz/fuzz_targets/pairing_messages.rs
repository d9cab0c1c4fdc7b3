//! Pairing messages: arbitrary bytes fed to each state of both sides never
//! panic, and never complete a pairing.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::SpaceId;
use troth_core::event::Role;
use troth_core::keyfile::KeyBundle;
use troth_core::pairing::{Pairing, PairingCode, Step};

fn keys() -> &'static (KeyBundle, KeyBundle) {
    static K: OnceLock<(KeyBundle, KeyBundle)> = OnceLock::new();
    K.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(2);
        (KeyBundle::generate(&mut rng, 0), KeyBundle::generate(&mut rng, 0))
    })
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = keys();
    let mut rng = StdRng::seed_from_u64(3);
    let Ok(code) = PairingCode::parse("7-crystal-orbit") else { return };
    let _ = PairingCode::parse(&String::from_utf8_lossy(data));
    let Ok((creator, _)) =
        Pairing::create(&code, &a.identity, &a.cert, SpaceId([1; 16]), Role::Leading, &mut rng)
    else {
        return;
    };
    let Ok((joiner, _)) = Pairing::join(&code, &b.identity, &b.cert, &mut rng) else { return };
    for side in [creator, joiner] {
        let mut state = side;
        for msg in data.split(|&b| b == 0xff) {
            match state.receive(msg) {
                Ok((Step::Continue(next), _)) => state = next,
                Ok((Step::Paired(_), _)) => panic!("paired from fuzz input"),
                Err(_) => break,
            }
        }
    }
});
