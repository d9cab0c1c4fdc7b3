//! The "I'm a therapist" page's key: core's [`TherapistKey`], an age X25519
//! identity that only leaves wasm inside its passphrase-protected file.

use troth_core::keyfile::MAX_WORK_FACTOR;
use troth_core::therapist::{self, TherapistKey};
use wasm_bindgen::prelude::*;

use crate::{WORK_FACTOR, check_passphrase, err, json, memory_fits};

/// A therapist's key: receives the reports couples export to its `age1…`
/// recipient. Nothing about it is sent anywhere.
#[wasm_bindgen(js_name = TherapistKey)]
pub struct TherapistHandle {
    inner: TherapistKey,
}

#[wasm_bindgen(js_class = TherapistKey)]
impl TherapistHandle {
    /// A new key.
    pub fn generate() -> TherapistHandle {
        TherapistHandle {
            inner: TherapistKey::generate(),
        }
    }

    /// Opens the key's passphrase-protected file (as `exportFile` wrote it,
    /// or an `age-keygen` identity protected with `age -p`).
    pub fn unlock(file: &[u8], passphrase: &str) -> Result<TherapistHandle, JsError> {
        memory_fits(file)?;
        TherapistKey::decrypt(file, passphrase, MAX_WORK_FACTOR)
            .map(|inner| TherapistHandle { inner })
            .map_err(err)
    }

    /// The key's file, encrypted with a new `passphrase` (armored age text;
    /// the Go `age` tool and `rage` use it as an identity file).
    #[wasm_bindgen(js_name = exportFile)]
    pub fn export_file(
        &self,
        passphrase: &str,
        work_factor: Option<u8>,
    ) -> Result<String, JsError> {
        check_passphrase(passphrase)?;
        self.inner
            .encrypt(passphrase, work_factor.unwrap_or(WORK_FACTOR))
            .map_err(err)
    }

    /// The `age1…` recipient to give the couple.
    #[wasm_bindgen(getter)]
    pub fn recipient(&self) -> String {
        self.inner.recipient()
    }

    /// Opens a report file: `{text, until}` (`until` is `YYYY-MM-DD`, or
    /// `null` for a report that names none).
    #[wasm_bindgen(js_name = openReport)]
    pub fn open_report(&self, file: &[u8]) -> Result<JsValue, JsError> {
        let text = self.inner.open_report(file).map_err(err)?;
        let until = therapist::report_until(&text).map(|d| d.to_string());
        Ok(json::obj(&[
            ("text", json::s(&text)),
            ("until", json::opt(until.as_deref(), json::s)),
        ]))
    }
}
