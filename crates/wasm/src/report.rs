//! The therapist report: a readable summary both partners consented to, as
//! text for printing, or as an age file to the therapist's X25519 recipient.

use std::fmt::Write as _;
use std::io::Write as _;

use troth_core::agreement::Day;
use troth_core::event::Role;
use troth_core::replica::Replica;
use troth_core::state::{State, VersionStatus};
use wasm_bindgen::JsError;

use crate::err;

/// A partner, named by their role as things stand when the report is written.
fn who(st: &State, r: Role) -> &'static str {
    if st.roles.sets_conditions(r) {
        "Partner who sets the conditions"
    } else {
        "Partner rebuilding trust"
    }
}

/// Parses a therapist's `age1…` recipient.
pub(crate) fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, JsError> {
    s.parse::<age::x25519::Recipient>().map_err(|_| {
        err("That doesn't look like an age key. It starts with age1 — ask your therapist to copy it again.")
    })
}

fn date(ms: u64) -> String {
    Day::from_unix_ms(ms).to_string()
}

/// The summary, only if both partners consent to `recipient` today.
pub(crate) fn text(r: &Replica, recipient: &str, today: Day) -> Result<String, JsError> {
    let st = r.state();
    if !st.report_consented(recipient, today) {
        return Err(err(
            "A report is shared only when both of you have agreed to share it with the same person, and the agreement is still current.",
        ));
    }
    let include_checkins = st
        .consents
        .values()
        .all(|(scope, _)| scope.include_checkins);
    let mut s = String::new();
    let _ = writeln!(s, "Troth — shared report");
    let _ = writeln!(s, "Prepared on {today}. Both partners agreed to share it.");
    if let Some(until) = st.report_until(recipient) {
        let _ = writeln!(s, "{}", troth_core::therapist::until_line(until));
    }
    let _ = writeln!(s, "Space state code: {}", r.state_code());
    let _ = writeln!(s, "\nAgreements\n==========");
    for rec in st.agreements.values() {
        for v in &rec.versions {
            let status = match v.status_on(today) {
                VersionStatus::Pending => "waiting for signatures",
                VersionStatus::InForce => "in force, signed by both",
                VersionStatus::Superseded => "replaced by a later version",
                VersionStatus::Declined => "declined",
                VersionStatus::Withdrawn => "consent withdrawn",
                VersionStatus::Retired => "retired together",
                VersionStatus::Lapsed => "lapsed: the review date passed without both renewing it",
            };
            let _ = writeln!(
                s,
                "\n{} (version {}) — {status}; review on {}",
                v.agreement.title, v.agreement.version, v.agreement.review_on
            );
            for rule in &v.agreement.rules {
                let _ = writeln!(s, "  • {}", rule.text);
            }
        }
    }
    let asked = st.requests.len();
    let answered = st
        .requests
        .iter()
        .filter(|q| q.answered_by.is_some())
        .count();
    let acked = st.checkins.iter().filter(|c| c.acked_at.is_some()).count();
    let _ = writeln!(s, "\nTrends\n======");
    let _ = writeln!(
        s,
        "Check-ins: {} ({} acknowledged). Check-in requests: {asked} ({answered} answered). Phone log entries: {}.",
        st.checkins.len(),
        acked,
        st.phone.len()
    );
    let _ = writeln!(s, "\nHistory\n=======");
    for t in &st.timeline {
        if !include_checkins && t.what.starts_with("checked in") {
            continue;
        }
        let _ = writeln!(s, "{}  {}: {}", date(t.at_ms), who(st, t.by), t.what);
    }
    Ok(s)
}

/// `text` as an armored age file to `recipient`.
pub(crate) fn encrypt(recipient: &str, text: &str) -> Result<String, JsError> {
    let r = parse_recipient(recipient)?;
    let fail = |_| err("The report could not be encrypted. Please try again.");
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|_| err("The report could not be encrypted. Please try again."))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(fail)?;
    let mut w = enc.wrap_output(armor).map_err(fail)?;
    w.write_all(text.as_bytes()).map_err(fail)?;
    w.finish().and_then(|a| a.finish()).map_err(fail)?;
    String::from_utf8(out).map_err(|_| err("The report could not be encrypted. Please try again."))
}
