//! The browser core as it ships: a cdylib that links `troth-wasm`, whose
//! `#[wasm_bindgen]` exports it carries unchanged. It exists for one reason:
//! with link-time optimisation, the whole program is optimised at the level of
//! the final crate. This crate is built at `opt-level = 2`, so the loop
//! optimisations that scrypt needs run (unlocking a key file takes ~0.6 s
//! instead of ~1 s in Chromium), while every other crate keeps `opt-level =
//! "z"` and stays small (docs/WEB.md, "Budgets").
#![forbid(unsafe_code)]

pub use troth_wasm_core::*;
