//! The web client: the release bundle of `troth-web-assets` (built once,
//! embedded here and in the `troth` CLI), served at `/` by its router.

pub use troth_web_assets::serve::{CONTENT_SECURITY_POLICY, router};
pub use troth_web_assets::{ASSETS, Asset};
