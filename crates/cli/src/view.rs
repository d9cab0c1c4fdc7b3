//! How things are shown: calm words for people, stable JSON for scripts.

use serde_json::{Value, json};
use troth_client::store::role_name;
use troth_core::AgreementId;
use troth_core::agreement::{Agreement, Category, Day, Limits, Rule};
use troth_core::event::Role;
use troth_core::state::{AgreementRecord, TimelineEntry, VersionRecord, VersionStatus};

use crate::ctx::when_iso;

/// The JSON name of a version status.
pub fn status_name(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Pending => "pending",
        VersionStatus::InForce => "in_force",
        VersionStatus::Superseded => "superseded",
        VersionStatus::Declined => "declined",
        VersionStatus::Withdrawn => "withdrawn",
        VersionStatus::Retired => "retired",
        VersionStatus::Lapsed => "lapsed",
    }
}

/// At most `max` bytes of `s`, cut on a character boundary (with "…" when cut).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// "you" or "your partner".
pub fn who(me: Role, by: Role) -> &'static str {
    if me == by { "you" } else { "your partner" }
}

/// The first 8 hex digits of an id: enough to type.
pub fn short(id: &AgreementId) -> String {
    id.to_hex()[..8].to_owned()
}

/// Where one version stands on `today`, for people.
pub fn version_words(v: &VersionRecord, me: Role, today: Day) -> String {
    match v.status_on(today) {
        VersionStatus::Pending => {
            if v.signatures.contains_key(&me) {
                "waiting for your partner's signature".into()
            } else {
                "waiting for your signature".into()
            }
        }
        VersionStatus::InForce => "in force".into(),
        VersionStatus::Superseded => "replaced by a later version".into(),
        VersionStatus::Declined => "declined".into(),
        VersionStatus::Withdrawn => "consent withdrawn".into(),
        VersionStatus::Retired => "retired".into(),
        VersionStatus::Lapsed => "lapsed — look at it together".into(),
    }
}

/// Where an agreement stands on `today`, for people.
pub fn record_words(rec: &AgreementRecord, me: Role, today: Day) -> String {
    let now = match (rec.in_force_on(today), rec.lapsed_on(today)) {
        (Some(f), _) => Some(format!("in force (version {})", f.agreement.version)),
        (None, Some(l)) => Some(format!(
            "lapsed — look at it together (version {}: its review date {} passed without both of you renewing it)",
            l.agreement.version, l.agreement.review_on
        )),
        (None, None) => None,
    };
    match (now, rec.pending()) {
        (Some(now), Some(p)) => format!(
            "{now}; version {} is {}",
            p.agreement.version,
            version_words(p, me, today)
        ),
        (Some(now), None) => now,
        (None, _) => rec
            .latest()
            .map(|v| version_words(v, me, today))
            .unwrap_or_default(),
    }
}

/// Whom a rule asks something of, in plain words: relative to the reader
/// when there is one (`me`), else by role alone (a certificate). `sets` is
/// who sets the conditions now (a rule keeps asking the same person after
/// the partners swap roles; only the words for that person change).
pub fn asks_of_words(me: Option<Role>, sets: Role, asks_of: Role) -> String {
    let role = troth_core::agreement::asks_of_words(sets, asks_of);
    match me {
        Some(me) => format!("{}, {role}", who(me, asks_of)),
        None => role.to_owned(),
    }
}

/// A rule's category in plain words.
pub fn category_words(c: Category) -> &'static str {
    match c {
        Category::Whereabouts => "whereabouts (check-ins)",
        Category::PhoneAccess => "phone access",
        Category::SharedBed => "sharing the bed",
        Category::NoContact => "no contact",
        Category::Therapy => "therapy",
        Category::Honesty => "honesty",
        Category::Other => "other",
        // A category added later: its stable name.
        c => c.name(),
    }
}

/// Every signed field of the rules, as numbered lines: each rule's words,
/// then its category and whom it asks of, then its parameters. Nothing
/// that is signed is left out (`me` is the reader, if any; `sets` who sets
/// the conditions, [`asks_of_words`]).
pub fn rules_text(a: &Agreement, me: Option<Role>, sets: Role) -> String {
    let mut out = String::new();
    for (i, r) in a.rules.iter().enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, r.text));
        out.push_str(&format!(
            "     category: {} · asks of: {}\n",
            category_words(r.category),
            asks_of_words(me, sets, r.asks_of)
        ));
        for (k, v) in &r.params {
            out.push_str(&format!("     {k}: {v}\n"));
        }
        for l in r.limits.words() {
            out.push_str(&format!("     limit on asking: {l}\n"));
        }
    }
    out
}

/// Every signed field of a version: its title, version, review date and
/// rules ([`rules_text`]).
pub fn words_text(a: &Agreement, me: Option<Role>, sets: Role) -> String {
    format!(
        "“{}” · version {} · review on {}\n{}",
        a.title,
        a.version,
        a.review_on,
        rules_text(a, me, sets)
    )
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "text": r.text,
        "category": r.category.name(),
        "asks_of": role_name(r.asks_of),
        "params": r.params.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>(),
        "limits": limits_json(&r.limits),
    })
}

fn limits_json(l: &Limits) -> Value {
    json!({
        "checkins_per_day": l.checkins_per_day,
        "phone_per_week": l.phone_per_week,
        "quiet_hours": l.quiet.map(|q| json!({
            "from_minute": q.from_min, "to_minute": q.to_min, "utc_offset_minutes": q.utc_offset_min,
        })),
        "words": l.words(),
    })
}

/// An agreement version's words as JSON.
pub fn agreement_json(a: &Agreement) -> Value {
    json!({
        "id": a.id.to_hex(),
        "version": a.version,
        "title": a.title,
        "review_on": a.review_on.to_string(),
        "content_hash": a.content_hash().to_hex(),
        "rules": a.rules.iter().map(rule_json).collect::<Vec<_>>(),
    })
}

fn signed_by(v: &VersionRecord) -> Vec<&'static str> {
    v.signatures.keys().map(|r| role_name(*r)).collect()
}

/// One line of `agreement list --json` (statuses as on `today`: a version
/// in force whose review day passed is `lapsed`).
pub fn summary_json(rec: &AgreementRecord, today: Day) -> Value {
    let latest = rec.latest();
    json!({
        "id": rec.id.to_hex(),
        "title": latest.map(|v| v.agreement.title.clone()),
        "latest_version": latest.map(|v| v.agreement.version),
        "status": latest.map(|v| status_name(v.status_on(today))),
        "in_force_version": rec.in_force_on(today).map(|v| v.agreement.version),
        "lapsed_version": rec.lapsed_on(today).map(|v| v.agreement.version),
        "pending_version": rec.pending().map(|v| v.agreement.version),
        "signed_by": latest.map(signed_by).unwrap_or_default(),
        "review_on": rec.in_force().or(latest).map(|v| v.agreement.review_on.to_string()),
        "withdrawn_by": rec.withdrawn.as_ref().map(|w| role_name(w.0)),
        // Every signed field of the versions a person acts on.
        // Words in force today only: a lapsed version's words are under
        // `lapsed`, so a script testing `in_force` never acts on them.
        "in_force": rec.in_force_on(today).map(|v| agreement_json(&v.agreement)),
        "lapsed": rec.lapsed_on(today).map(|v| agreement_json(&v.agreement)),
        "pending": rec.pending().map(|v| agreement_json(&v.agreement)),
    })
}

/// `agreement show --json` (statuses as on `today`).
pub fn record_json(rec: &AgreementRecord, today: Day) -> Value {
    json!({
        "id": rec.id.to_hex(),
        "in_force_version": rec.in_force_on(today).map(|v| v.agreement.version),
        "lapsed_version": rec.lapsed_on(today).map(|v| v.agreement.version),
        "withdrawn": rec.withdrawn.as_ref().map(|(by, seq, comment)| json!({
            "by": role_name(*by), "seq": seq, "comment": comment,
        })),
        "retire_requested_by": rec.retire_requests.iter().map(|r| role_name(*r)).collect::<Vec<_>>(),
        "versions": rec.versions.iter().map(|v| {
            let mut a = agreement_json(&v.agreement);
            a["status"] = json!(status_name(v.status_on(today)));
            a["proposed_by"] = json!(role_name(v.proposed_by));
            a["proposed_at_seq"] = json!(v.proposed_at);
            a["signed_by"] = json!(signed_by(v));
            a["change_requests"] = json!(v.change_requests.iter().map(|(by, c, seq)| json!({
                "by": role_name(*by), "comment": c, "seq": seq,
            })).collect::<Vec<_>>());
            a
        }).collect::<Vec<_>>(),
    })
}

/// One timeline entry as JSON, with the notes about its author time
/// (`"notes": [sentence…]`, empty when there are none).
pub fn entry_json_with(e: &TimelineEntry, notes: Option<&Vec<String>>) -> Value {
    json!({
        "seq": e.seq,
        "by": role_name(e.by),
        "at": when_iso(e.at_ms),
        "at_ms": e.at_ms,
        "what": e.what,
        "hash": e.hash.to_hex(),
        "notes": notes.cloned().unwrap_or_default(),
    })
}
