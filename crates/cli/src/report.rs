//! The therapist report: agreements, their history and a check-in summary,
//! encrypted to the therapist's age recipient. Written only when both
//! partners' signed consent for that recipient is in the log and current.

use std::path::Path;

use serde_json::json;
use troth_client::store::{age_encrypt, write_new};
use troth_core::event::Role;
use troth_core::state::State;

use crate::commands::say;
use crate::ctx::{Ctx, fail, when};
use crate::view;

/// Parses an `age1…` recipient, with a kind error.
pub fn parse_recipient(to: &str) -> anyhow::Result<age::x25519::Recipient> {
    to.trim().parse::<age::x25519::Recipient>().map_err(|_| {
        fail("That isn't an age recipient. Ask the therapist for theirs: it starts with age1.")
    })
}

/// A partner, named by their role as things stand when the report is written.
fn partner_name(state: &State, r: Role) -> &'static str {
    if state.roles.sets_conditions(r) {
        "the partner who set the conditions"
    } else {
        "the partner rebuilding trust"
    }
}

/// The report's text (Markdown).
pub fn render(
    state: &State,
    state_code: &str,
    include_checkins: bool,
    today: troth_core::agreement::Day,
    until: Option<troth_core::agreement::Day>,
) -> String {
    let mut s = String::new();
    s.push_str("# Troth report\n\n");
    s.push_str(&format!(
        "Prepared on {today}, with both partners' signed consent. State code {state_code}.\n\n"
    ));
    if let Some(until) = until {
        s.push_str(&troth_core::therapist::until_line(until));
        s.push_str("\n\n");
    }
    s.push_str("## Agreements\n\n");
    if state.agreements.is_empty() {
        s.push_str("No agreements yet.\n\n");
    }
    for rec in state.agreements.values() {
        let Some(latest) = rec.latest() else { continue };
        let shown = rec.in_force().unwrap_or(latest);
        s.push_str(&format!("### {}\n\n", shown.agreement.title));
        s.push_str(&format!(
            "Now: {} · version {} · review on {}\n\n",
            view::status_name(shown.status_on(today)).replace('_', " "),
            shown.agreement.version,
            shown.agreement.review_on
        ));
        s.push_str(&view::rules_text(&shown.agreement, None, state.roles.sets));
        s.push('\n');
        if let Some((by, _, c)) = &rec.withdrawn {
            s.push_str(&format!(
                "Consent was withdrawn by {}{}.\n\n",
                partner_name(state, *by),
                if c.is_empty() {
                    String::new()
                } else {
                    format!(": “{c}”")
                }
            ));
        }
    }
    if include_checkins {
        s.push_str("## Check-ins\n\n");
        let total = state.checkins.len();
        let acked = state
            .checkins
            .iter()
            .filter(|c| c.acked_at.is_some())
            .count();
        let reqs = state.requests.len();
        let answered = state
            .requests
            .iter()
            .filter(|r| r.answered_by.is_some())
            .count();
        s.push_str(&format!(
            "{total} check-ins ({acked} acknowledged); {reqs} requests for a check-in ({answered} answered).\n\n"
        ));
        for c in &state.checkins {
            let place = c
                .place
                .as_ref()
                .map(|p| format!(" (at {p})"))
                .unwrap_or_default();
            s.push_str(&format!("- {} · {}{place}\n", when(c.at_ms), c.text));
        }
        s.push('\n');
    }
    s.push_str("## History\n\n");
    for e in &state.timeline {
        s.push_str(&format!(
            "- {} · {}: {}\n",
            when(e.at_ms),
            partner_name(state, e.by),
            e.what
        ));
    }
    s
}

/// `troth report --to age1… --out FILE`.
pub fn report(ctx: &Ctx, to: &str, out: &Path) -> anyhow::Result<()> {
    let recipient = parse_recipient(to)?;
    if out.exists() {
        return Err(troth_client::Error::Exists(out.to_path_buf()).into());
    }
    if ctx.offline {
        return Err(fail(
            "Writing a report is recorded for both of you first, so it needs the relay; nothing was written.",
        ));
    }
    let mut s = ctx.session()?;
    let today = ctx.today();
    let to = to.trim();
    if !s.replica().state().report_consented(to, today) {
        return Err(fail(
            "A report needs both partners' consent for this recipient, and it must still be current. Each of you can give it with `troth consent-report --to age1…`.",
        ));
    }
    // Nothing leaves silently: the report is a signed event both see,
    // appended before the file is written.
    s.post(
        &troth_core::content::Content::Exported {
            what: troth_core::content::ExportKind::Report,
            detail: format!("for the therapist's key {}", view::clip(to, 150)),
        },
        ctx.now_ms,
        &mut rand::rngs::OsRng,
    )?;
    ctx.save(&s)?;
    let st = s.replica().state();
    let include_checkins = [Role::Leading, Role::Rebuilding].iter().all(|r| {
        st.consents
            .get(r)
            .is_some_and(|(sc, _)| sc.include_checkins)
    });
    let text = zeroize::Zeroizing::new(render(
        st,
        &s.replica().state_code(),
        include_checkins,
        today,
        st.report_until(to),
    ));
    let armored = age_encrypt(&recipient, text.as_bytes())
        .map_err(|e| fail(format!("Couldn't encrypt the report: {e}")))?;
    write_new(out, armored.as_bytes())?;
    say(
        ctx,
        &format!(
            "Wrote the report to {}, encrypted to {to}. Only the therapist's key opens it.",
            out.display()
        ),
        json!({ "out": out, "recipient": to, "include_checkins": include_checkins }),
    )
}
