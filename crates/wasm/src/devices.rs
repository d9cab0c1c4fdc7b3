//! Devices (issue 18, the browser's side): both partners' devices with
//! their names, naming one's own, revoking one's own others, and rotating
//! this device's keys (an `AddDevice` for fresh keys, then a revocation of
//! the old device from the new one).

use rand_core::OsRng;
use troth_core::content::Content;
use troth_core::keys::DeviceId;
use wasm_bindgen::prelude::*;

use crate::{Keys, Space, b64, err, hex_array, json};

fn device_id(s: &str) -> Result<DeviceId, JsError> {
    hex_array("the device id", s).map(DeviceId)
}

#[wasm_bindgen]
impl Keys {
    /// The same identity with a fresh device key and certificate (for a
    /// rotation: admit it with `space.addDevice`, then revoke the old one).
    #[wasm_bindgen(js_name = rotateDevice)]
    pub fn rotate_device(&self, now: f64) -> Keys {
        Keys {
            inner: self.inner.rotate_device(&mut OsRng, crate::ms(now)),
        }
    }

    /// This device's id, hex (as `Space.devices()` names devices).
    #[wasm_bindgen(getter, js_name = deviceHex)]
    pub fn device_hex(&self) -> String {
        hex::encode(self.inner.cert.device().id().0)
    }
}

#[wasm_bindgen]
impl Space {
    /// Both partners' devices: `[{id, mine, thisDevice, name, active,
    /// added, addedSeq, addedAt, revokedSeq, revokedAt}]` (`id` hex;
    /// `added`: it came by AddDevice, after its person's first device —
    /// the devices a partner is told about; times are the author's, ms).
    pub fn devices(&self) -> JsValue {
        let r = &self.inner;
        let members = r.chain().members();
        let me = r.keys().identity.public();
        let this = r.keys().cert.device().id();
        let names = &r.state().device_names;
        let at = |seq: u64| r.event_at(seq).map_or(0, |e| e.header().timestamp_ms);
        json::arr(members.devices().map(|(id, d)| {
            json::obj(&[
                ("id", json::s(&hex::encode(id.0))),
                ("mine", JsValue::from_bool(*d.cert.identity() == me)),
                ("thisDevice", JsValue::from_bool(*id == this)),
                (
                    "name",
                    json::opt(names.get(id).map(|(n, _)| n.as_str()), json::s),
                ),
                ("active", JsValue::from_bool(d.is_active())),
                ("added", JsValue::from_bool(members.was_added(id))),
                ("addedSeq", json::n(d.added_at)),
                ("addedAt", json::n(at(d.added_at))),
                ("revokedSeq", json::opt(d.revoked_at, json::n)),
                ("revokedAt", json::opt(d.revoked_at.map(at), json::n)),
            ])
        }))
    }

    /// Names one of this person's devices (`device` hex; this device when
    /// absent). Returns the event (base64).
    #[wasm_bindgen(js_name = nameDevice)]
    pub fn name_device(
        &self,
        device: Option<String>,
        name: &str,
        now: f64,
    ) -> Result<String, JsError> {
        let device = match device {
            Some(d) => device_id(&d)?,
            None => self.inner.keys().cert.device().id(),
        };
        let c = Content::DeviceName {
            device,
            name: name.trim().to_owned(),
        };
        self.seal(&c, now)
    }

    /// Admits `keys`' device (the same identity's fresh keys) with
    /// envelopes for every epoch. Returns the event (base64).
    #[wasm_bindgen(js_name = addDevice)]
    pub fn add_device(&self, keys: &Keys, now: f64) -> Result<String, JsError> {
        self.inner
            .compose_add_device(&keys.inner.cert, crate::ms(now))
            .map(|e| b64(&e))
            .map_err(err)
    }

    /// Revokes one of this person's other devices (`device` hex) and starts
    /// a new epoch it cannot read. Returns the event (base64).
    #[wasm_bindgen(js_name = revokeDevice)]
    pub fn revoke_device(&self, device: &str, now: f64) -> Result<String, JsError> {
        let id = device_id(device)?;
        if id == self.inner.keys().cert.device().id() {
            return Err(err(
                "That is this device. To replace its keys, use “Replace this device's keys”.",
            ));
        }
        self.inner
            .compose_revoke(id, crate::ms(now), &mut OsRng)
            .map(|e| b64(&e))
            .map_err(err)
    }
}
