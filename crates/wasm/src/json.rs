//! Core values as plain (JSON-friendly) JavaScript objects, built directly
//! with `js_sys` rather than through a JSON library (smaller wasm), and the
//! QR code as SVG.

use std::fmt::Write as _;

use js_sys::{Array, Object, Reflect};
use troth_core::agreement::{Category, Day, Limits, QuietHours, Rule, templates as core_templates};
use troth_core::event::Role;
use troth_core::replica::{Alert, Replica};
use troth_core::state::VersionStatus;
use wasm_bindgen::{JsError, JsValue};

use crate::role_name;

/// A plain object from `(name, value)` pairs.
pub(crate) fn obj(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// An array.
pub(crate) fn arr(items: impl IntoIterator<Item = JsValue>) -> JsValue {
    items.into_iter().collect::<Array>().into()
}

/// A string.
pub(crate) fn s(x: &str) -> JsValue {
    JsValue::from_str(x)
}

/// A whole number (exact below 2^53).
pub(crate) fn n(x: impl Into<u64>) -> JsValue {
    JsValue::from_f64(x.into() as f64)
}

/// `null` or a value.
pub(crate) fn opt<T>(o: Option<T>, f: impl FnOnce(T) -> JsValue) -> JsValue {
    o.map(f).unwrap_or(JsValue::NULL)
}

/// Reads a string property (empty if missing).
pub(crate) fn get_str(o: &JsValue, k: &str) -> String {
    Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

fn get_array(o: &JsValue, k: &str) -> Vec<JsValue> {
    Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .filter(Array::is_array)
        .map(|v| Array::from(&v).iter().collect())
        .unwrap_or_default()
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

fn limits_js(l: &Limits) -> JsValue {
    obj(&[
        ("checkinsPerDay", opt(l.checkins_per_day, n)),
        ("phonePerWeek", opt(l.phone_per_week, n)),
        (
            "quiet",
            opt(l.quiet, |q| {
                obj(&[
                    ("from", n(q.from_min)),
                    ("to", n(q.to_min)),
                    ("utcOffset", JsValue::from_f64(f64::from(q.utc_offset_min))),
                ])
            }),
        ),
        ("words", arr(l.words().iter().map(|w| s(w)))),
    ])
}

/// A number property as `T`, if present and in range.
fn get_num<T: TryFrom<i64>>(o: &JsValue, k: &str) -> Option<T> {
    Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .and_then(|v| v.as_f64())
        .filter(|f| f.fract() == 0.0 && f.abs() < 1e9)
        .and_then(|f| T::try_from(f as i64).ok())
}

fn limits(v: &JsValue) -> Limits {
    let Some(l) = Reflect::get(v, &JsValue::from_str("limits"))
        .ok()
        .filter(JsValue::is_object)
    else {
        return Limits::default();
    };
    let quiet = Reflect::get(&l, &JsValue::from_str("quiet"))
        .ok()
        .filter(JsValue::is_object)
        .and_then(|q| {
            Some(QuietHours {
                from_min: get_num(&q, "from")?,
                to_min: get_num(&q, "to")?,
                utc_offset_min: get_num(&q, "utcOffset")?,
            })
        });
    Limits {
        checkins_per_day: get_num(&l, "checkinsPerDay"),
        phone_per_week: get_num(&l, "phonePerWeek"),
        quiet,
    }
}

fn rule_js(r: &Rule) -> JsValue {
    obj(&[
        ("limits", limits_js(&r.limits)),
        ("text", s(&r.text)),
        ("category", s(r.category.name())),
        ("asksOf", s(role_name(r.asks_of))),
        (
            "params",
            arr(r.params.iter().map(|(k, v)| arr([s(k), s(v)]))),
        ),
    ])
}

/// A rule from `{text, category, asksOf, params: [[k, v]]}`.
pub(crate) fn rule(v: &JsValue) -> Rule {
    let asks_of = match get_str(v, "asksOf").as_str() {
        "leading" => Role::Leading,
        _ => Role::Rebuilding,
    };
    let params = get_array(v, "params")
        .iter()
        .filter(|p| Array::is_array(p))
        .map(|p| {
            let p = Array::from(p);
            let at = |i| p.get(i).as_string().unwrap_or_default().trim().to_owned();
            (at(0), at(1))
        })
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect();
    Rule {
        text: get_str(v, "text").trim().to_owned(),
        category: category_from(&get_str(v, "category")),
        asks_of,
        params,
        limits: limits(v),
    }
}

/// The rules of a draft `{rules: [...]}`.
pub(crate) fn rules(draft: &JsValue) -> Vec<Rule> {
    get_array(draft, "rules").iter().map(rule).collect()
}

/// The templates core offers.
pub(crate) fn templates() -> JsValue {
    arr(core_templates().iter().map(|t| {
        obj(&[
            ("name", s(t.name)),
            ("title", s(t.title)),
            ("rules", arr(t.rules.iter().map(rule_js))),
        ])
    }))
}

fn status_name(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Pending => "pending",
        VersionStatus::InForce => "in-force",
        VersionStatus::Superseded => "superseded",
        VersionStatus::Declined => "declined",
        VersionStatus::Withdrawn => "withdrawn",
        VersionStatus::Retired => "retired",
        VersionStatus::Lapsed => "lapsed",
    }
}

/// An integrity alert: `{what, advice}`.
pub(crate) fn alert(a: &Alert) -> JsValue {
    obj(&[("what", s(&a.error.to_string())), ("advice", s(a.advice()))])
}

/// The whole state a person sees (shape documented in docs/WEB.md).
pub(crate) fn state(r: &Replica, now_ms: u64, show: Option<usize>) -> JsValue {
    let today = Day::from_unix_ms(now_ms);
    let st = r.state();
    // How many of the oldest entries of a list to leave out.
    let skip = |len: usize| show.map_or(0, |k| len.saturating_sub(k));
    let due: Vec<String> = st
        .due_for_review(today)
        .iter()
        .map(|v| v.agreement.id.to_hex())
        .collect();
    let agreements = arr(st.agreements.values().map(|rec| {
        let versions = arr(rec.versions.iter().map(|v| {
            obj(&[
                ("version", n(v.agreement.version)),
                ("title", s(&v.agreement.title)),
                ("rules", arr(v.agreement.rules.iter().map(rule_js))),
                ("reviewOn", s(&v.agreement.review_on.to_string())),
                ("proposedBy", s(role_name(v.proposed_by))),
                ("proposedAt", n(v.proposed_at)),
                ("status", s(status_name(v.status))),
                ("statusToday", s(status_name(v.status_on(today)))),
                (
                    "signedBy",
                    arr(v.signatures.keys().map(|r| s(role_name(*r)))),
                ),
                ("verifiedBoth", JsValue::from_bool(v.in_force.is_some())),
                ("hash", s(&v.hash.to_hex())),
                (
                    "changeRequests",
                    arr(v.change_requests.iter().map(|(by, c, seq)| {
                        obj(&[
                            ("by", s(role_name(*by))),
                            ("comment", s(c)),
                            ("seq", n(*seq)),
                        ])
                    })),
                ),
            ])
        }));
        let id = rec.id.to_hex();
        obj(&[
            ("due", JsValue::from_bool(due.contains(&id))),
            ("id", s(&id)),
            (
                "title",
                s(&rec
                    .latest()
                    .map(|v| v.agreement.title.clone())
                    .unwrap_or_default()),
            ),
            ("inForce", opt(rec.in_force(), |v| n(v.agreement.version))),
            (
                "lapsed",
                opt(rec.lapsed_on(today), |v| n(v.agreement.version)),
            ),
            ("pending", opt(rec.pending(), |v| n(v.agreement.version))),
            ("versions", versions),
            (
                "withdrawn",
                opt(rec.withdrawn.as_ref(), |(by, seq, c)| {
                    obj(&[
                        ("by", s(role_name(*by))),
                        ("seq", n(*seq)),
                        ("comment", s(c)),
                    ])
                }),
            ),
            (
                "retireRequests",
                arr(rec.retire_requests.iter().map(|r| s(role_name(*r)))),
            ),
        ])
    }));
    let consents = Object::new();
    for (role, (scope, seq)) in &st.consents {
        let _ = Reflect::set(
            &consents,
            &s(role_name(*role)),
            &obj(&[
                ("recipient", s(&scope.recipient)),
                (
                    "includeCheckins",
                    JsValue::from_bool(scope.include_checkins),
                ),
                ("until", s(&scope.until.to_string())),
                ("seq", n(*seq)),
                ("current", JsValue::from_bool(scope.until >= today)),
            ]),
        );
    }
    obj(&[
        ("space", s(&r.space().to_hex())),
        ("role", s(role_name(r.role()))),
        ("today", s(&today.to_string())),
        ("partnerJoined", JsValue::from_bool(st.partners.len() == 2)),
        ("safetyNumber", opt(r.safety_number(), |x| s(x.as_str()))),
        ("stateCode", s(&r.state_code())),
        ("events", n(r.chain().len())),
        ("agreements", agreements),
        ("checkinsTotal", n(st.checkins.len() as u64)),
        ("timelineTotal", n(st.timeline.len() as u64)),
        ("requestsTotal", n(st.requests.len() as u64)),
        ("phoneTotal", n(st.phone.len() as u64)),
        ("due", arr(due.iter().map(|d| s(d)))),
        (
            "checkins",
            arr(st.checkins.iter().skip(skip(st.checkins.len())).map(|c| {
                obj(&[
                    ("seq", n(c.seq)),
                    ("hash", s(&c.hash.to_hex())),
                    ("by", s(role_name(c.by))),
                    ("atMs", n(c.at_ms)),
                    ("text", s(&c.text)),
                    ("place", opt(c.place.as_deref(), s)),
                    ("answers", opt(c.answers, |h| s(&h.to_hex()))),
                    ("ackedAt", opt(c.acked_at, n)),
                ])
            })),
        ),
        (
            "requests",
            arr(st.requests.iter().skip(skip(st.requests.len())).map(|q| {
                obj(&[
                    ("seq", n(q.seq)),
                    ("hash", s(&q.hash.to_hex())),
                    ("by", s(role_name(q.by))),
                    ("atMs", n(q.at_ms)),
                    ("note", s(&q.note)),
                    ("answeredBy", opt(q.answered_by, n)),
                    ("answer", opt(q.answer, |(a, _)| s(a.words()))),
                    ("outside", opt(q.outside.as_deref(), s)),
                    ("open", JsValue::from_bool(q.is_open())),
                ])
            })),
        ),
        (
            "phone",
            arr(st.phone.iter().skip(skip(st.phone.len())).map(|p| {
                let action = match p.action {
                    troth_core::content::PhoneAction::Asked => "asked",
                    troth_core::content::PhoneAction::Granted => "granted",
                    troth_core::content::PhoneAction::Declined => "declined",
                };
                obj(&[
                    ("seq", n(p.seq)),
                    ("by", s(role_name(p.by))),
                    ("atMs", n(p.at_ms)),
                    ("action", s(action)),
                    ("note", s(&p.note)),
                    ("hash", s(&p.hash.to_hex())),
                    ("answer", opt(p.answer, |(a, _)| s(a.words()))),
                    ("outside", opt(p.outside.as_deref(), s)),
                ])
            })),
        ),
        ("consents", consents.into()),
        (
            "retention",
            obj(&[
                ("days", n(u64::from(st.retention.days))),
                (
                    "defaultDays",
                    n(u64::from(troth_core::retention::DEFAULT_DAYS)),
                ),
                (
                    "changedBy",
                    opt(st.retention.changed, |(by, _)| s(role_name(by))),
                ),
                (
                    "proposal",
                    opt(st.retention.proposal, |(by, days, _)| {
                        obj(&[("by", s(role_name(by))), ("days", n(u64::from(days)))])
                    }),
                ),
                ("forgottenEpochs", n(u64::from(st.forgotten.epochs))),
                ("forgottenEvents", n(st.forgotten.events)),
            ]),
        ),
        (
            "roles",
            obj(&[
                ("agreed", JsValue::from_bool(st.roles.agreed())),
                // Who sets the conditions (or would, before both confirmed):
                // a role names a person; swapping changes only this.
                ("sets", s(role_name(st.roles.sets))),
                (
                    "swapRequestedBy",
                    arr(st.roles.swap_requests.keys().map(|r| s(role_name(*r)))),
                ),
                ("swapped", JsValue::from_bool(st.roles.swapped_at.is_some())),
                (
                    "ended",
                    JsValue::from_bool(st.roles.ended_at.is_some() && !st.roles.agreed()),
                ),
                (
                    "endRequestedBy",
                    arr(st.roles.end_requests.keys().map(|r| s(role_name(*r)))),
                ),
                (
                    "confirmedBy",
                    arr(st.roles.confirmed.keys().map(|r| s(role_name(*r)))),
                ),
                (
                    "declined",
                    opt(st.roles.declined.as_ref(), |(by, seq, c)| {
                        obj(&[
                            ("by", s(role_name(*by))),
                            ("seq", n(*seq)),
                            ("comment", s(c)),
                        ])
                    }),
                ),
            ]),
        ),
        (
            "closed",
            opt(st.closed, |(by, seq)| {
                obj(&[("by", s(role_name(by))), ("seq", n(seq))])
            }),
        ),
        (
            "notes",
            arr(st
                .notes
                .iter()
                .cloned()
                .chain(r.future_notes(now_ms))
                .map(|(seq, what)| obj(&[("seq", n(seq)), ("what", s(&what))]))),
        ),
        (
            "timeline",
            arr(st.timeline.iter().skip(skip(st.timeline.len())).map(|t| {
                obj(&[
                    ("seq", n(t.seq)),
                    ("hash", s(&t.hash.to_hex())),
                    ("by", s(role_name(t.by))),
                    ("atMs", n(t.at_ms)),
                    ("what", s(&t.what)),
                ])
            })),
        ),
        (
            "problems",
            arr(st
                .problems
                .iter()
                .map(|(seq, what)| obj(&[("seq", n(*seq)), ("what", s(what))]))),
        ),
    ])
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
