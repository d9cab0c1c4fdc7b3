//! Prints the embedded `release.json` (for `cargo xtask reproduce`, which
//! builds the bundle again elsewhere and compares).
//!
//! ```text
//! cargo run -q -p troth-web-assets --example release
//! ```

fn main() {
    print!("{}", troth_web_assets::release_json());
}
