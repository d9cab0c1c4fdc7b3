//! Recovery kits (issue 18) for the browser: the same file `troth key
//! recovery-kit` writes and `troth key recover` reads
//! (`troth_core::keyfile::RecoveryKit`, docs/PROTOCOL.md §8.2).

use troth_core::keyfile::{MAX_WORK_FACTOR, RecoveryKit};
use troth_core::replica::Replica;
use wasm_bindgen::prelude::*;

use crate::{Keys, Space, check_passphrase, err, memory_fits};

/// The kit file (armored age text, under `passphrase`) for the recovery
/// device `kit` (from `keys.rotateDevice`), once `space.addDevice(kit)` is
/// in the log; `relay` is the relay's address.
#[wasm_bindgen(js_name = recoveryKitFile)]
pub fn recovery_kit_file(
    kit: &Keys,
    space: &Space,
    relay: &str,
    passphrase: &str,
) -> Result<String, JsError> {
    check_passphrase(passphrase)?;
    let r = &space.inner;
    if r.chain()
        .members()
        .active_key(&kit.inner.cert.device().id())
        .is_none()
    {
        return Err(err("the recovery device is not in the space yet"));
    }
    RecoveryKit {
        keys: kit.inner.duplicate(),
        space: r.space(),
        relay: relay.to_owned(),
        role: r.role(),
        anchors: r.chain().anchors().clone(),
    }
    .encrypt(passphrase, crate::WORK_FACTOR)
    .map_err(err)
}

/// An opened recovery kit.
#[wasm_bindgen]
pub struct OpenedKit {
    kit: RecoveryKit,
}

#[wasm_bindgen]
impl OpenedKit {
    /// Opens a kit file with its passphrase.
    pub fn open(file: &[u8], passphrase: &str) -> Result<OpenedKit, JsError> {
        memory_fits(file)?;
        RecoveryKit::decrypt(file, passphrase, MAX_WORK_FACTOR)
            .map(|kit| OpenedKit { kit })
            .map_err(|e| match e {
                troth_core::keyfile::KeyFileError::NotAKeyFile => {
                    err("This is not a Troth recovery kit.")
                }
                other => err(other),
            })
    }

    /// The relay the kit's space lives on.
    #[wasm_bindgen(getter)]
    pub fn relay(&self) -> String {
        self.kit.relay.clone()
    }

    /// The kit's device keys (a member of the space).
    pub fn keys(&self) -> Keys {
        Keys {
            inner: self.kit.keys.duplicate(),
        }
    }

    /// The space, to be read from the relay from its first event with the
    /// kit's device, verified against the identities in the kit.
    #[wasm_bindgen(js_name = openSpace)]
    pub fn open_space(&self) -> Space {
        Space {
            inner: Replica::open(
                self.kit.keys.duplicate(),
                self.kit.role,
                self.kit.space,
                self.kit.anchors.clone(),
            ),
        }
    }
}
