//! Linking a device of one's own by code (issue 18), for the browser: the
//! same runs as `troth device link` / `troth device join`, over the same
//! rendezvous mailbox, through core's [`Linking`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::OsRng;
use troth_core::event::{Body, Event};
use troth_core::keyfile::KeyBundle;
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_core::link::{Admission, LinkStep, Linked, Linking, Offer};
use troth_core::log::TrustAnchors;
use troth_core::pairing::PairingCode;
use troth_core::replica::Replica;
use wasm_bindgen::prelude::*;

use crate::{Keys, Space, b64, err, ms};

const ENDED: &str = "Adding the device has ended. Start again with a new code.";

/// Adding a device (on a device already in the space) or joining as a new
/// device, over a one-time code.
#[wasm_bindgen]
pub struct LinkSession {
    run: Option<Linking>,
    code: Option<PairingCode>,
    first: Option<String>,
    admission: Option<Admission>,
    linked: Option<Linked>,
    /// The new device's own keys (joiner only) and its certificate's time.
    device: Option<(DeviceSecret, u64)>,
}

impl LinkSession {
    fn new(run: Linking, code: PairingCode, first: &troth_core::pairing::Message) -> Self {
        LinkSession {
            run: Some(run),
            code: Some(code),
            first: Some(STANDARD.encode(first.as_bytes())),
            admission: None,
            linked: None,
            device: None,
        }
    }

    fn linked(&self) -> Result<&Linked, JsError> {
        self.linked
            .as_ref()
            .ok_or_else(|| err("this device has not joined yet"))
    }
}

#[wasm_bindgen]
impl LinkSession {
    /// Starts adding a device to `space` (this person's), on the relay's `mailbox`.
    pub fn add(keys: &Keys, space: &Space, mailbox: u32, now: f64) -> Result<LinkSession, JsError> {
        let r = &space.inner;
        let me = keys.inner.identity.public();
        if r.chain().members().active_count(&me) >= troth_core::members::MAX_ACTIVE_DEVICES {
            return Err(err(
                "You already have 5 active devices, the most a person may have. Remove one you no longer use first.",
            ));
        }
        let code = PairingCode::generate(mailbox, &mut OsRng).map_err(err)?;
        let offer = Offer {
            space: r.space(),
            role: r.role(),
            identity: me,
            partner: r.partner().copied(),
        };
        let (run, first) =
            Linking::add(&code, &keys.inner.identity, offer, ms(now), &mut OsRng).map_err(err)?;
        Ok(LinkSession::new(run, code, &first))
    }

    /// Starts joining as a new device with the code the other device shows.
    /// `keys` are this browser's fresh keys: their device keys stay, their
    /// identity is replaced by the one linked to ([`LinkSession::linked_keys`]).
    pub fn join(keys: &Keys, code: &str, now: f64) -> Result<LinkSession, JsError> {
        let code = PairingCode::parse(code).map_err(err)?;
        let (run, first) = Linking::join(&code, &keys.inner.device, ms(now), &mut OsRng);
        let mut s = LinkSession::new(run, code, &first);
        s.device = Some((keys.inner.device.duplicate(), ms(now)));
        Ok(s)
    }

    /// The code to show while adding runs; empty afterwards.
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> String {
        match (&self.code, &self.admission, &self.linked) {
            (Some(c), None, None) => c.reveal().to_string(),
            _ => String::new(),
        }
    }

    /// The code as a QR code (SVG markup).
    #[wasm_bindgen(js_name = codeSvg)]
    pub fn code_svg(&self) -> Result<String, JsError> {
        let code = self.code();
        if code.is_empty() {
            return Err(err("there is no code to show"));
        }
        crate::json::qr_svg(&code)
    }

    /// The first message to post (base64), once.
    #[wasm_bindgen(js_name = takeFirstMessage)]
    pub fn take_first_message(&mut self) -> Option<String> {
        self.first.take()
    }

    /// Takes the other device's next message (base64); returns one to post,
    /// or `undefined`. Any error ends the run.
    pub fn receive(&mut self, message: &str) -> Result<Option<String>, JsError> {
        let run = self.run.take().ok_or_else(|| err(ENDED))?;
        let bytes = STANDARD
            .decode(message.trim())
            .map_err(|_| err(troth_core::link::LinkError::Malformed))?;
        let (step, out) = run.receive(&bytes).map_err(|e| {
            self.code = None;
            err(e)
        })?;
        match step {
            LinkStep::Continue(next) => self.run = Some(next),
            LinkStep::Admit(a) => self.admission = Some(a),
            LinkStep::Linked(l) => self.linked = Some(l),
        }
        Ok(out.map(|m| STANDARD.encode(m.as_bytes())))
    }

    /// On the adding device: the new device proved its key; append
    /// [`LinkSession::admit_event`] now.
    #[wasm_bindgen(getter, js_name = isAdmitted)]
    pub fn is_admitted(&self) -> bool {
        self.admission.is_some()
    }

    /// On the new device: done; open the space with [`LinkSession::open_space`].
    #[wasm_bindgen(getter, js_name = isLinked)]
    pub fn is_linked(&self) -> bool {
        self.linked.is_some()
    }

    /// How many events of `space` a device added without the history would
    /// not read (those of earlier key epochs).
    #[wasm_bindgen(js_name = hiddenWithoutHistory)]
    pub fn hidden_without_history(space: &Space) -> u32 {
        let r = &space.inner;
        let n = r.events_before_epoch(r.chain().members().epoch());
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The `AddDevice` event (base64) for the new device, on `space`'s head:
    /// with the whole history this device holds, or (`history` false) the
    /// current key only.
    #[wasm_bindgen(js_name = admitEvent)]
    pub fn admit_event(&self, space: &Space, history: bool, now: f64) -> Result<String, JsError> {
        let a = self.admission.as_ref().ok_or_else(|| err(ENDED))?;
        let r = &space.inner;
        let from = if history {
            r.history_from()
        } else {
            r.chain().members().epoch()
        };
        r.compose_add_device_from(a.cert(), from, ms(now))
            .map(|e| b64(&e))
            .map_err(err)
    }

    /// The last message (base64), once `event` (the `AddDevice`, base64) is
    /// in the log: it gives the new device this person's identity.
    pub fn added(&mut self, event: &str) -> Result<String, JsError> {
        let ev = STANDARD
            .decode(event)
            .ok()
            .and_then(|b| Event::decode(&b).ok())
            .ok_or_else(|| err("that is not an event"))?;
        let a = self.admission.take().ok_or_else(|| err(ENDED))?;
        let admits = match ev.body() {
            Body::Control(c) => c.admitted() == Some(a.cert()),
            Body::Sealed(_) => false,
        };
        if !admits {
            return Err(err("that event does not add the new device"));
        }
        let m = a.added(ev.header().seq, ev.hash()).map_err(err)?;
        self.code = None;
        Ok(STANDARD.encode(m.as_bytes()))
    }

    /// On the new device, once linked: its keys from now on (this
    /// browser's own device keys, the person's identity, the certificate
    /// the other device made). Save them with `exportFile`.
    #[wasm_bindgen(js_name = linkedKeys)]
    pub fn linked_keys(&self) -> Result<Keys, JsError> {
        let l = self.linked()?;
        let (device, created) = self.device.as_ref().ok_or_else(|| err(ENDED))?;
        let identity = IdentitySecret::from_seed(&l.identity.to_seed());
        let cert = identity.certify(device, *created);
        Ok(Keys {
            inner: KeyBundle {
                identity,
                device: device.duplicate(),
                cert,
            },
        })
    }

    /// On the new device, once linked: the space, to be read from the relay
    /// from its first event, verified against the identities learned
    /// through the code. Check it with [`LinkSession::check_admitted`].
    #[wasm_bindgen(js_name = openSpace)]
    pub fn open_space(&self, keys: &Keys) -> Result<Space, JsError> {
        let o = self.linked()?.offer;
        if keys.inner.identity.public() != o.identity {
            return Err(err("these are not the linked keys"));
        }
        let mut anchors = TrustAnchors::default();
        anchors.set(o.role, o.identity);
        if let Some(p) = o.partner {
            anchors.set(o.role.other(), p);
        }
        Ok(Space {
            inner: Replica::open(keys.inner.duplicate(), o.role, o.space, anchors),
        })
    }

    /// The sequence number of the event that added this device.
    #[wasm_bindgen(getter, js_name = addedAt)]
    pub fn added_at(&self) -> Option<f64> {
        self.linked.as_ref().map(|l| l.added_at as f64)
    }

    /// After reading the space: an error unless the event at `addedAt` is
    /// the one the other device named and admits this device's certificate.
    #[wasm_bindgen(js_name = checkAdmitted)]
    pub fn check_admitted(&self, space: &Space) -> Result<(), JsError> {
        let l = self.linked()?;
        let mine = &space.inner.keys().cert;
        let ok = space.inner.event_at(l.added_at).is_some_and(|ev| {
            ev.hash() == l.event
                && matches!(ev.body(), Body::Control(c) if c.admitted() == Some(mine))
        });
        if ok {
            Ok(())
        } else {
            Err(err(
                "The space doesn't show this device where your other device said it added it. Nothing was saved; look at the devices on your other device, then start again.",
            ))
        }
    }
}
