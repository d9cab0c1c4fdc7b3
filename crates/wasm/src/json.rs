//! Core values as JSON-friendly JavaScript objects, and the QR code as SVG.

use std::fmt::Write as _;

use serde_json::{Value, json};
use troth_core::agreement::{Category, Day, Rule, templates as core_templates};
use troth_core::event::Role;
use troth_core::replica::Replica;
use troth_core::state::VersionStatus;
use wasm_bindgen::{JsError, JsValue};

use crate::role_name;

/// Converts a JSON value into a plain JavaScript object.
pub(crate) fn to_js(v: &Value) -> Result<JsValue, JsError> {
    js_sys::JSON::parse(&v.to_string()).map_err(|_| JsError::new("could not build a result"))
}

fn category_from(name: &str) -> Category {
    match name {
        "whereabouts" => Category::Whereabouts,
        "phone" => Category::PhoneAccess,
        "bed" => Category::SharedBed,
        "no-contact" => Category::NoContact,
        "therapy" => Category::Therapy,
        "honesty" => Category::Honesty,
        _ => Category::Other,
    }
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "text": r.text,
        "category": r.category.name(),
        "asksOf": role_name(r.asks_of),
        "params": r.params.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// A rule from `{text, category, asksOf, params: [[k, v]]}`.
pub(crate) fn rule(v: &Value) -> Result<Rule, String> {
    let text = v["text"].as_str().unwrap_or_default().trim().to_owned();
    let asks_of = match v["asksOf"].as_str() {
        Some("leading") => Role::Leading,
        _ => Role::Rebuilding,
    };
    let params = v["params"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.trim().to_owned(),
                        p.get(1)?.as_str()?.trim().to_owned(),
                    ))
                })
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Rule {
        text,
        category: category_from(v["category"].as_str().unwrap_or("other")),
        asks_of,
        params,
    })
}

/// The templates core offers.
pub(crate) fn templates() -> Value {
    Value::Array(
        core_templates()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "title": t.title,
                    "rules": t.rules.iter().map(rule_json).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn status_name(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Pending => "pending",
        VersionStatus::InForce => "in-force",
        VersionStatus::Superseded => "superseded",
        VersionStatus::Declined => "declined",
        VersionStatus::Withdrawn => "withdrawn",
        VersionStatus::Retired => "retired",
    }
}

/// The whole state a person sees.
pub(crate) fn state(r: &Replica, today: Day) -> Value {
    let st = r.state();
    let due: Vec<String> = st
        .due_for_review(today)
        .iter()
        .map(|v| v.agreement.id.to_hex())
        .collect();
    let agreements: Vec<Value> = st
        .agreements
        .values()
        .map(|rec| {
            let versions: Vec<Value> = rec
                .versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.agreement.version,
                        "title": v.agreement.title,
                        "rules": v.agreement.rules.iter().map(rule_json).collect::<Vec<_>>(),
                        "reviewOn": v.agreement.review_on.to_string(),
                        "proposedBy": role_name(v.proposed_by),
                        "proposedAt": v.proposed_at,
                        "status": status_name(v.status),
                        "signedBy": v.signatures.keys().map(|r| role_name(*r)).collect::<Vec<_>>(),
                        "verifiedBoth": v.in_force.is_some(),
                        "hash": v.hash.to_hex(),
                        "changeRequests": v.change_requests.iter().map(|(by, c, seq)| json!({
                            "by": role_name(*by), "comment": c, "seq": seq
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let id = rec.id.to_hex();
            json!({
                "id": id,
                "title": rec.latest().map(|v| v.agreement.title.clone()).unwrap_or_default(),
                "inForce": rec.in_force().map(|v| v.agreement.version),
                "pending": rec.pending().map(|v| v.agreement.version),
                "versions": versions,
                "withdrawn": rec.withdrawn.as_ref().map(|(by, seq, c)| json!({
                    "by": role_name(*by), "seq": seq, "comment": c
                })),
                "retireRequests": rec.retire_requests.iter().map(|r| role_name(*r)).collect::<Vec<_>>(),
                "due": due.contains(&id),
            })
        })
        .collect();
    let mut consents = serde_json::Map::new();
    for (role, (scope, seq)) in &st.consents {
        consents.insert(
            role_name(*role).to_owned(),
            json!({
                "recipient": scope.recipient,
                "includeCheckins": scope.include_checkins,
                "until": scope.until.to_string(),
                "seq": seq,
                "current": scope.until >= today,
            }),
        );
    }
    json!({
        "space": r.space().to_hex(),
        "role": role_name(r.role()),
        "today": today.to_string(),
        "partnerJoined": st.partners.len() == 2,
        "safetyNumber": r.safety_number().map(|s| s.to_string()),
        "stateCode": r.state_code(),
        "events": r.events().len(),
        "agreements": agreements,
        "due": due,
        "checkins": st.checkins.iter().map(|c| json!({
            "seq": c.seq, "hash": c.hash.to_hex(), "by": role_name(c.by), "atMs": c.at_ms,
            "text": c.text, "place": c.place,
            "answers": c.answers.map(|h| h.to_hex()), "ackedAt": c.acked_at,
        })).collect::<Vec<_>>(),
        "requests": st.requests.iter().map(|q| json!({
            "seq": q.seq, "hash": q.hash.to_hex(), "by": role_name(q.by), "atMs": q.at_ms,
            "note": q.note, "answeredBy": q.answered_by,
        })).collect::<Vec<_>>(),
        "phone": st.phone.iter().map(|p| json!({
            "seq": p.seq, "by": role_name(p.by), "atMs": p.at_ms,
            "action": match p.action {
                troth_core::content::PhoneAction::Asked => "asked",
                troth_core::content::PhoneAction::Granted => "granted",
                troth_core::content::PhoneAction::Declined => "declined",
            },
            "note": p.note,
        })).collect::<Vec<_>>(),
        "consents": consents,
        "timeline": st.timeline.iter().map(|t| json!({
            "seq": t.seq, "hash": t.hash.to_hex(), "by": role_name(t.by), "atMs": t.at_ms, "what": t.what,
        })).collect::<Vec<_>>(),
        "problems": st.problems.iter().map(|(seq, what)| json!({ "seq": seq, "what": what })).collect::<Vec<_>>(),
    })
}

/// The QR code of `text` as SVG (one unit per module, a quiet zone of four).
pub(crate) fn qr_svg(text: &str) -> Result<String, JsError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| JsError::new("could not draw the QR code"))?;
    let w = code.width();
    let size = w + 8;
    let mut path = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let _ = write!(path, "M{} {}h1v1h-1z", i % w + 4, i / w + 4);
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code of the pairing code\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}
