//! What each command does.

use std::io::Write;
use std::path::Path;

use rand::rngs::OsRng;
use serde_json::json;
use troth_client::link::LinkInvitation;
use troth_client::pair::{Invitation, await_admission, create_space, join};
use troth_client::store::{clone_keys, role_name, write_new};
use troth_client::{Error as ClientError, RelayClient, Session};
use troth_core::AgreementId;
use troth_core::agreement::{Agreement, Category, Certificate, Day, Rule, template, templates};
use troth_core::content::{Content, ReportScope};
use troth_core::event::Role;
use troth_core::keyfile::{KeyBundle, MAX_WORK_FACTOR};
use troth_core::keys::DeviceId;
use troth_core::replica::Replica;
use troth_core::state::{AgreementRecord, State, VersionStatus};

use crate::cli::{
    AgreementCommand, Cli, Command, DeviceCommand, KeyCommand, LimitArgs, PairCommand,
    PhoneCommand, RetentionCommand, Review, RoleArg, RolesCommand, WebCommand,
};
use crate::ctx::{
    Ctx, EXIT_INTEGRITY, EXIT_KEY, fail, fail_with, parse_days, parse_wait, space_gone, when,
    when_iso,
};
use crate::view;

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "troth", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::VerifyCertificate { file } = &cli.command {
        return verify_certificate(file, cli.json);
    }
    if let Command::Web(w) = &cli.command {
        return match w {
            WebCommand::Verify { url } => crate::web::verify(url, cli.json),
            WebCommand::Release => crate::web::release(cli.json),
            WebCommand::Serve { relay, listen } => crate::web::serve(relay, listen),
        };
    }
    let ctx = Ctx::new(cli.home, cli.passphrase_file, cli.json, cli.offline)?;
    match cli.command {
        Command::Init => init(&ctx),
        Command::Id { age_recipient } => id(&ctx, age_recipient),
        Command::Key(k) => key(&ctx, k),
        Command::Device(d) => device(&ctx, d),
        Command::Pair(p) => pair(&ctx, p),
        Command::Agreement(a) => agreement(&ctx, a),
        Command::Roles { answer } => roles(&ctx, answer),
        Command::Retention { change } => retention(&ctx, change),
        Command::Checkin {
            text,
            place,
            answers,
            no_answer,
        } => checkin(&ctx, text, place, answers, no_answer),
        Command::RequestCheckin { note } => {
            check_words(&[&note])?;
            let mut s = ctx.session()?;
            let ev = s.post(&Content::RequestCheckIn { note }, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            say(
                &ctx,
                &format!("Asked for a check-in (#{}).", ev.header().seq),
                json!({ "seq": ev.header().seq }),
            )
        }
        Command::Ack { n } => ack(&ctx, n),
        Command::Answer { answer, to, note } => answer_request(&ctx, &answer, to, note),
        Command::Phone(p) => phone(&ctx, p),
        Command::Timeline => timeline(&ctx),
        Command::Status => status(&ctx),
        Command::Sync { watch, every } => {
            if watch {
                watch_loop(&ctx, &every)
            } else {
                sync(&ctx)
            }
        }
        Command::Verify => verify(&ctx),
        Command::ConsentReport {
            to,
            duration,
            until,
            no_checkins,
        } => consent_report(&ctx, &to, &duration, until.as_deref(), no_checkins),
        Command::Report { to, out } => crate::report::report(&ctx, &to, &out),
        Command::DeleteSpace { yes, comment } => delete_space(&ctx, yes, comment),
        Command::ForgetSpace { yes } => forget_here(&ctx, yes),
        Command::Completions { .. } | Command::VerifyCertificate { .. } | Command::Web(_) => Ok(()),
    }
}

/// Refuses words with characters that change how they read without being
/// seen (bidirectional controls, zero-width and other invisible format
/// characters, control characters), before anything is synced or signed:
/// one line with the core's sentence, exit 1.
fn check_words(words: &[&str]) -> anyhow::Result<()> {
    for w in words {
        troth_core::text::check_text(w).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Prints a line for people, or a JSON object for scripts.
pub fn say(ctx: &Ctx, text: &str, value: serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if ctx.json {
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

fn me(s: &Session) -> Role {
    s.replica().role()
}

// ------------------------------------------------------------------ keys

fn init(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.home.has_keys() {
        return Err(ClientError::Exists(ctx.home.key_path()).into());
    }
    let pass = ctx.new_passphrase("Choose a passphrase for your key: ")?;
    let keys = KeyBundle::generate(&mut OsRng, ctx.now_ms);
    {
        let _s = ctx.spinner("Protecting your key with your passphrase…");
        ctx.home.create_keys(&keys, &pass, ctx.work_factor)?;
    }
    let fp = keys.identity.public().fingerprint();
    say(
        ctx,
        &format!(
            "Your key is ready.\nIdentity: {}\nKey store: {}\n\nNext, to pair with your partner: `troth pair start --relay URL` on one side,\n`troth pair join CODE --relay URL` on the other.",
            ctx.bold(&fp),
            ctx.home.dir().display()
        ),
        json!({ "identity": fp, "home": ctx.home.dir() }),
    )
}

fn id(ctx: &Ctx, age_recipient: bool) -> anyhow::Result<()> {
    let keys = ctx.keys()?;
    let recipient = keys.cert.device().age_recipient_string();
    if age_recipient && !ctx.json {
        println!("{recipient}");
        return Ok(());
    }
    let fp = keys.identity.public().fingerprint();
    say(
        ctx,
        &format!(
            "Identity: {fp}\nDevice:   {}\nage:      {recipient}",
            hex::encode(keys.cert.device().id().0)
        ),
        json!({
            "identity": fp,
            "identity_key": hex::encode(keys.identity.public().to_bytes()),
            "device": hex::encode(keys.cert.device().id().0),
            "age_recipient": recipient,
        }),
    )
}

fn key(ctx: &Ctx, k: KeyCommand) -> anyhow::Result<()> {
    match k {
        KeyCommand::Export {
            out,
            new_passphrase_file,
        } => export(ctx, &out, new_passphrase_file.as_deref()),
        KeyCommand::Import { file } => {
            if ctx.home.has_keys() {
                return Err(ClientError::Exists(ctx.home.key_path()).into());
            }
            let bytes = read_small(&file, troth_core::keyfile::MAX_FILE)?;
            let pass = ctx.passphrase("Passphrase of the backup: ", false)?;
            let keys = {
                let _s = ctx.spinner("Opening the backup…");
                KeyBundle::decrypt(&bytes, &pass, MAX_WORK_FACTOR)?
            };
            {
                let _s = ctx.spinner("Saving your key…");
                ctx.home.create_keys(&keys, &pass, ctx.work_factor)?;
            }
            let fp = keys.identity.public().fingerprint();
            say(
                ctx,
                &format!("Restored identity {fp} into {}.", ctx.home.dir().display()),
                json!({ "identity": fp, "home": ctx.home.dir() }),
            )
        }
        KeyCommand::Rotate => rotate(ctx),
        KeyCommand::RecoveryKit {
            out,
            new_passphrase_file,
        } => recovery_kit(ctx, &out, new_passphrase_file.as_deref()),
        KeyCommand::Recover { file, revoke } => recover(ctx, &file, &revoke),
        KeyCommand::Revoke { device } => {
            let mut s = ctx.session()?;
            let target = find_device(s.replica(), &device)?;
            if target == s.replica().keys().cert.device().id() {
                return Err(fail(
                    "That is this device. To replace its keys, use `troth key rotate`.",
                ));
            }
            let now = ctx.now_ms;
            s.post_with(|r| Ok(r.compose_revoke(target, now, &mut OsRng)?))?;
            ctx.save(&s)?;
            say(
                ctx,
                &format!(
                    "Revoked device {}. It can't read anything new.",
                    hex::encode(&target.0[..8])
                ),
                json!({ "revoked": hex::encode(target.0) }),
            )
        }
        KeyCommand::Devices => {
            let s = ctx.session()?;
            let me = s.replica().keys().cert.device().id();
            let members = s.replica().chain().members();
            let list: Vec<_> = members
                .devices()
                .map(|(id, d)| {
                    json!({
                        "id": hex::encode(id.0),
                        "role": s.replica().role_of(d.cert.identity()).map(role_name),
                        "active": d.is_active(),
                        "added_at_seq": d.added_at,
                        "revoked_at_seq": d.revoked_at,
                        "this_device": *id == me,
                    })
                })
                .collect();
            if ctx.json {
                println!("{}", json!({ "devices": list }));
                return Ok(());
            }
            let myrole = s.replica().role();
            for (id, d) in members.devices() {
                let state = if d.is_active() { "active" } else { "revoked" };
                let this = if *id == me { " (this device)" } else { "" };
                println!(
                    "{}  {:<12} {state}{this}",
                    hex::encode(&id.0[..8]),
                    s.replica()
                        .role_of(d.cert.identity())
                        .map_or("someone", |r| view::who(myrole, r))
                );
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ devices

/// A device the partner added (by `AddDevice`) after `seen`: its id, the
/// sequence number and author's time of the event that added it, and
/// whether it is still active.
fn partner_new_devices(r: &Replica, seen: Option<u64>) -> Vec<(DeviceId, u64, u64, bool)> {
    let members = r.chain().members();
    let me = r.keys().identity.public();
    members
        .devices()
        .filter(|(id, d)| *d.cert.identity() != me && members.was_added(id))
        .filter(|(_, d)| seen.is_none_or(|s| d.added_at > s))
        .map(|(id, d)| (*id, d.added_at, event_time(r, d.added_at), d.is_active()))
        .collect()
}

/// The author's clock on the event at `seq` (0 if this device lacks it).
fn event_time(r: &Replica, seq: u64) -> u64 {
    r.events()
        .get(seq as usize)
        .filter(|e| e.header().seq == seq)
        .map_or(0, |e| e.header().timestamp_ms)
}

/// The calm words `troth status` and `troth device list` use for a device
/// the partner added.
fn new_device_words(seq: u64, ms: u64, active: bool, name: Option<&str>) -> String {
    let since = if active { "" } else { " (since revoked)" };
    let named = name.map(|n| format!(", named “{n}”")).unwrap_or_default();
    format!(
        "Your partner added a device on {} (#{seq}){named}{since}. If you didn't expect this, talk about it; you can withdraw consent at any time. (troth device ack once you have seen it)",
        when(ms)
    )
}

/// `troth device link`: the code alone on the first line of standard
/// output, then the wait for the new device.
fn link_device(ctx: &Ctx, no_history: bool, timeout: &str) -> anyhow::Result<()> {
    let timeout = parse_wait(timeout)?;
    let mut s = ctx.session()?;
    let inv = {
        let _s = ctx.spinner("Asking the relay for a code…");
        LinkInvitation::open(&s, ctx.now_ms, &mut OsRng)?
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", inv.code().as_str())?;
        out.flush()?;
    }
    let r = s.replica();
    let from = if no_history {
        r.chain().members().epoch()
    } else {
        r.history_from()
    };
    let hidden = r.events_before_epoch(from);
    let reads = if hidden == 0 {
        "It will read your whole shared history.".to_owned()
    } else {
        format!(
            "It will read what was written since your keys last changed; the {hidden} earlier entries stay unreadable on it."
        )
    };
    eprintln!(
        "On the new device, after `troth init`: troth device join {} --relay {}\n{reads} Your partner will be told that you added a device.",
        inv.code().as_str(),
        s.relay().url()
    );
    let added = {
        let _s = ctx.spinner("Waiting for the new device…");
        inv.wait(&mut s, !no_history, timeout, ctx.now_ms)?
    };
    ctx.save(&s)?;
    say(
        ctx,
        &format!(
            "Added device {} to your space (#{}). Your partner is told that you added a device.\nState: {}",
            hex::encode(&added.device.0[..8]),
            added.seq,
            s.replica().state_code()
        ),
        json!({
            "device": hex::encode(added.device.0),
            "added_at_seq": added.seq,
            "from_epoch": added.from_epoch,
            "state_code": s.replica().state_code(),
        }),
    )
}

/// `troth device join CODE`: on a key store made by `troth init` and not in
/// a space yet; its device keys stay, its identity becomes the one linked to.
fn join_device(ctx: &Ctx, code: &str, relay: &str, timeout: &str) -> anyhow::Result<()> {
    if ctx.home.has_space() {
        return Err(fail(
            "This key store is already in a space. Run `troth init` with another --home on the new device, then join from there.",
        ));
    }
    let timeout = parse_wait(timeout)?;
    let relay = RelayClient::new(relay)?;
    let (keys, pass) = unlock(ctx)?;
    let replica = {
        let _s = ctx.spinner("Joining your space…");
        troth_client::link::join(&relay, &keys, code, timeout, ctx.now_ms, &mut OsRng)?
    };
    {
        let _s = ctx.spinner("Protecting your key with your passphrase…");
        ctx.home
            .replace_keys(replica.keys(), &pass, ctx.work_factor)?;
    }
    ctx.home.save_space(relay.url(), &replica)?;
    let unreadable = replica
        .state()
        .problems
        .iter()
        .filter(|(_, p)| p.contains("could not be read"))
        .count();
    let safety = replica.safety_number().map(|n| n.as_str().to_owned());
    let mut words = format!(
        "This device is now one of yours in the space, with keys of its own. Your partner is told that you added a device.\nIdentity: {}\nState: {}",
        replica.keys().identity.public().fingerprint(),
        replica.state_code()
    );
    if let Some(n) = &safety {
        words.push_str(&format!("\nSafety number (unchanged): {n}"));
    }
    if unreadable > 0 {
        words.push_str(&format!(
            "\n{unreadable} earlier entries stay unreadable here: your other device shared only the keys since they last changed."
        ));
    }
    say(
        ctx,
        &words,
        json!({
            "device": hex::encode(replica.keys().cert.device().id().0),
            "identity": replica.keys().identity.public().fingerprint(),
            "safety_number": safety,
            "state_code": replica.state_code(),
            "unreadable": unreadable,
        }),
    )
}

fn device(ctx: &Ctx, d: DeviceCommand) -> anyhow::Result<()> {
    match d {
        DeviceCommand::Link {
            no_history,
            timeout,
        } => link_device(ctx, no_history, &timeout),
        DeviceCommand::Join {
            code,
            relay,
            timeout,
        } => join_device(ctx, &code, &relay, &timeout),
        DeviceCommand::Name { name, device } => name_device(ctx, &name, device.as_deref()),
        DeviceCommand::List => device_in_space(ctx, false),
        DeviceCommand::Ack => device_in_space(ctx, true),
    }
}

/// `troth device list` (`ack` false) and `troth device ack`: read the space.
fn device_in_space(ctx: &Ctx, ack: bool) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let r = s.replica();
    let seen = ctx.home.devices_seen(r.keys(), r.space());
    match ack {
        false => {
            let me = r.keys().cert.device().id();
            let my_identity = r.keys().identity.public();
            let members = r.chain().members();
            let new = partner_new_devices(r, seen);
            if ctx.json {
                let list: Vec<_> = members
                    .devices()
                    .map(|(id, d)| {
                        json!({
                            "id": hex::encode(id.0),
                            "owner": if *d.cert.identity() == my_identity { "you" } else { "partner" },
                            "role": r.role_of(d.cert.identity()).map(role_name),
                            "active": d.is_active(),
                            "added_at_seq": d.added_at,
                            "added_at": when_iso(event_time(r, d.added_at)),
                            "revoked_at_seq": d.revoked_at,
                            "revoked_at": d.revoked_at.map(|s| when_iso(event_time(r, s))),
                            "this_device": *id == me,
                            "new": new.iter().any(|(n, ..)| n == id),
                            "name": r.state().device_names.get(id).map(|(n, _)| n.as_str()),
                        })
                    })
                    .collect();
                println!("{}", json!({ "devices": list }));
                return Ok(());
            }
            for (title, mine) in [("Your devices:", true), ("Your partner's devices:", false)] {
                let of: Vec<_> = members
                    .devices()
                    .filter(|(_, d)| (*d.cert.identity() == my_identity) == mine)
                    .collect();
                if of.is_empty() {
                    continue;
                }
                println!("{title}");
                for (id, d) in of {
                    let state = match d.revoked_at {
                        None => "active".to_owned(),
                        Some(s) => format!("revoked on {} (#{s})", when(event_time(r, s))),
                    };
                    let mut notes = String::new();
                    if let Some((n, _)) = r.state().device_names.get(id) {
                        notes.push_str(&format!(" “{n}”"));
                    }
                    if *id == me {
                        notes.push_str(" (this device)");
                    }
                    if new.iter().any(|(n, ..)| n == id) {
                        notes.push_str(" (new)");
                    }
                    println!(
                        "  {}  added on {} (#{})  {state}{notes}",
                        hex::encode(&id.0[..8]),
                        when(event_time(r, d.added_at)),
                        d.added_at
                    );
                }
            }
            if !new.is_empty() {
                println!(
                    "Your partner added a device you haven't acknowledged yet. If you didn't expect this, talk about it; you can withdraw consent at any time. (troth device ack once you have seen it)"
                );
            }
            Ok(())
        }
        true => {
            let through = r.chain().head().map_or(0, |(seq, _)| seq);
            let n = partner_new_devices(r, seen).len();
            ctx.home.set_devices_seen(r.keys(), r.space(), through)?;
            let words = match n {
                0 => "Nothing new to acknowledge: you have seen all of your partner's devices."
                    .to_owned(),
                1 => "Noted: you have seen your partner's new device.".to_owned(),
                n => format!("Noted: you have seen your partner's {n} new devices."),
            };
            say(
                ctx,
                &words,
                json!({ "acknowledged": n, "through_seq": through }),
            )
        }
    }
}

/// `troth device name NAME [--device ID]`: a signed name both partners see.
fn name_device(ctx: &Ctx, name: &str, device: Option<&str>) -> anyhow::Result<()> {
    let mut s = ctx.session()?;
    let target = match device {
        Some(p) => find_device(s.replica(), p)?,
        None => s.replica().keys().cert.device().id(),
    };
    let name = name.trim().to_owned();
    s.post(
        &Content::DeviceName {
            device: target,
            name: name.clone(),
        },
        ctx.now_ms,
        &mut OsRng,
    )?;
    ctx.save(&s)?;
    say(
        ctx,
        &format!(
            "Named device {} “{name}”. Your partner sees the name.",
            hex::encode(&target.0[..8])
        ),
        json!({ "device": hex::encode(target.0), "name": name }),
    )
}

/// What this client calls itself in the space's timeline when it exports a key.
const EXPORT_LABEL: &str = "the troth command line";

/// `troth key export`: asks for the current passphrase (which must open
/// key.age) before the backup's, and records the export in the space
/// (synced first) before the file is written. Anything that fails before
/// then writes nothing.
fn export(ctx: &Ctx, out: &Path, new_passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    if out.exists() {
        return Err(ClientError::Exists(out.to_path_buf()).into());
    }
    if !ctx.home.has_keys() {
        return Err(ClientError::NoKeys(ctx.home.dir().to_path_buf()).into());
    }
    let current = ctx.passphrase("Your current passphrase (to export your key): ", false)?;
    let keys = {
        let _s = ctx.spinner("Unlocking your key…");
        ctx.home.load_keys(&current)?
    };
    let backup = ctx.backup_passphrase(new_passphrase_file, &current)?;
    drop(current);
    let paired = ctx.home.has_space();
    if paired && ctx.offline {
        return Err(fail(
            "A key export is recorded in your shared space first, so your partner sees it; that needs the relay. Nothing was written; try again without --offline.",
        ));
    }
    let armored = {
        let _s = ctx.spinner("Encrypting the backup…");
        keys.encrypt(&backup, ctx.work_factor)?
    };
    drop(backup);
    if paired {
        let stored = ctx.home.load_space(clone_keys(&keys)?)?;
        let not_recorded = |e: anyhow::Error| -> anyhow::Error {
            let code = crate::ctx::exit_code(&e);
            fail_with(
                code,
                format!(
                    "The export couldn't be recorded in your shared space, so nothing was written (a key never leaves silently): {e}"
                ),
            )
        };
        let mut s = ctx.sync_session(stored).map_err(not_recorded)?;
        s.post(
            &Content::KeyExported {
                label: EXPORT_LABEL.to_owned(),
            },
            ctx.now_ms,
            &mut OsRng,
        )
        .map_err(|e| not_recorded(e.into()))?;
        ctx.save(&s)?;
    }
    write_new(out, armored.as_bytes()).map_err(|e| {
        if paired {
            fail(format!(
                "The export is recorded in your shared space, but the file couldn't be written: {e}"
            ))
        } else {
            e.into()
        }
    })?;
    say(
        ctx,
        &format!(
            "Wrote a backup of your keys to {}. It opens with the backup's passphrase (also with `age -d`). Keep it somewhere safe.{}",
            out.display(),
            if paired {
                " Your partner sees in the timeline that you exported a copy of your key."
            } else {
                ""
            }
        ),
        json!({ "out": out, "recorded": paired }),
    )
}

fn unlock(ctx: &Ctx) -> anyhow::Result<(KeyBundle, zeroize::Zeroizing<String>)> {
    if !ctx.home.has_keys() {
        return Err(ClientError::NoKeys(ctx.home.dir().to_path_buf()).into());
    }
    let pass = ctx.passphrase("Passphrase: ", false)?;
    let _s = ctx.spinner("Unlocking your key…");
    let keys = ctx.home.load_keys(&pass)?;
    Ok((keys, pass))
}

fn read_small(path: &Path, max: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| fail(format!("Couldn't open {}: {e}", path.display())))?;
    let mut v = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| fail(format!("Couldn't read {}: {e}", path.display())))?;
    if v.len() > max {
        return Err(fail_with(
            EXIT_KEY,
            format!("{} is too large to be a key file.", path.display()),
        ));
    }
    Ok(v)
}

fn find_device(r: &Replica, prefix: &str) -> anyhow::Result<DeviceId> {
    let p = prefix.trim().to_lowercase();
    if p.len() < 4 {
        return Err(fail(
            "Give at least the first 4 characters of the device id (see `troth key devices`).",
        ));
    }
    let mine = *r.keys().cert.identity();
    let found: Vec<DeviceId> = r
        .chain()
        .members()
        .devices()
        .filter(|(id, d)| {
            hex::encode(id.0).starts_with(&p) && *d.cert.identity() == mine && d.is_active()
        })
        .map(|(id, _)| *id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(fail(
            "None of your active devices has that id (see `troth key devices`).",
        )),
        _ => Err(fail("Several devices start that way; give more of the id.")),
    }
}

/// `troth key recovery-kit`: adds a recovery device to the space (the
/// partner is told, like any device), then writes its keys, the identity,
/// the space, the relay and the identities to trust into one
/// passphrase-protected file. Nothing is written if the device can't be added.
fn recovery_kit(ctx: &Ctx, out: &Path, new_passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    if out.exists() {
        return Err(ClientError::Exists(out.to_path_buf()).into());
    }
    let (keys, current) = unlock(ctx)?;
    let pass = ctx.backup_passphrase(new_passphrase_file, &current)?;
    drop(current);
    troth_core::keyfile::check_passphrase(&pass)
        .map_err(|e| fail_with(crate::ctx::EXIT_KEY, e.to_string()))?;
    if !ctx.home.has_space() {
        return Err(ClientError::NotPaired.into());
    }
    let stored = ctx.home.load_space(clone_keys(&keys)?)?;
    let mut s = ctx.sync_session(stored)?;
    let device = troth_core::keys::DeviceSecret::generate(&mut OsRng);
    let cert = keys.identity.certify(&device, ctx.now_ms);
    let now = ctx.now_ms;
    let ev = s.post_with(|r| Ok(r.compose_add_device(&cert, now)?))?;
    ctx.save(&s)?;
    let r = s.replica();
    let kit = troth_core::keyfile::RecoveryKit {
        keys: KeyBundle {
            identity: troth_core::keys::IdentitySecret::from_seed(&keys.identity.to_seed()),
            device,
            cert,
        },
        space: r.space(),
        relay: s.relay().url().to_owned(),
        role: r.role(),
        anchors: r.chain().anchors().clone(),
    };
    let armored = {
        let _s = ctx.spinner("Encrypting the kit…");
        kit.encrypt(&pass, ctx.work_factor)?
    };
    write_new(out, armored.as_bytes())?;
    let id = kit.keys.cert.device().id();
    say(
        ctx,
        &format!(
            "Saved a recovery kit to {} (recovery device {}, added to your space as #{}; your partner is told that you added a device).\nKeep it somewhere safe, apart from this device, with its passphrase. If you lose your devices: `troth key recover {}` on a new one.",
            out.display(),
            hex::encode(&id.0[..8]),
            ev.header().seq,
            out.display()
        ),
        json!({ "out": out, "device": hex::encode(id.0), "added_at_seq": ev.header().seq }),
    )
}

/// `troth key recover KIT`: on an empty key store. The kit's device (a
/// member) adds a fresh device of this identity, which then revokes the
/// kit's device (the kit is spent) and the lost one.
fn recover(ctx: &Ctx, file: &Path, revoke: &[String]) -> anyhow::Result<()> {
    if ctx.home.has_keys() {
        return Err(ClientError::Exists(ctx.home.key_path()).into());
    }
    let bytes = read_small(file, troth_core::keyfile::MAX_FILE)?;
    let pass = ctx.passphrase("Passphrase of the recovery kit: ", false)?;
    let kit = {
        let _s = ctx.spinner("Opening the kit…");
        troth_core::keyfile::RecoveryKit::decrypt(&bytes, &pass, MAX_WORK_FACTOR)?
    };
    let relay = RelayClient::new(&kit.relay)?;
    let kit_device = kit.keys.cert.device().id();
    let replica = Replica::open(
        clone_keys(&kit.keys)?,
        kit.role,
        kit.space,
        kit.anchors.clone(),
    );
    let mut s = Session::new(replica, relay.clone());
    {
        let _s = ctx.spinner("Reading your space…");
        match s.sync_strict() {
            Ok(_) => {}
            Err(ClientError::Refused { status: 403, .. }) => {
                return Err(fail(
                    "This recovery kit has been used or revoked already, so it can't open the space. Nothing was saved. Your partner can pair with you again.",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let me = kit.keys.identity.public();
    let members = s.replica().chain().members();
    if members.active_key(&kit_device).is_none() {
        return Err(fail(
            "This recovery kit has been used or revoked already. Nothing was saved.",
        ));
    }
    // Which lost devices to revoke: those named, or the only other one.
    let others: Vec<DeviceId> = members
        .devices()
        .filter(|(id, d)| d.is_active() && *d.cert.identity() == me && **id != kit_device)
        .map(|(id, _)| *id)
        .collect();
    let lost: Vec<DeviceId> = if revoke.is_empty() {
        if others.len() == 1 {
            others.clone()
        } else {
            Vec::new()
        }
    } else {
        revoke
            .iter()
            .map(|p| find_device(s.replica(), p))
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .filter(|d| *d != kit_device)
            .collect()
    };
    let new = kit.keys.rotate_device(&mut OsRng, ctx.now_ms);
    let now = ctx.now_ms;
    s.post_with(|r| Ok(r.compose_add_device(&new.cert, now)?))?;
    let old = s.into_replica();
    let mut replica = Replica::open(
        clone_keys(&new)?,
        old.role(),
        old.space(),
        old.chain().anchors().clone(),
    );
    if replica.ingest(old.events()).error.is_some() {
        return Err(fail_with(
            EXIT_INTEGRITY,
            "The new device couldn't verify the space; nothing was saved. Try again.",
        ));
    }
    {
        let _s = ctx.spinner("Protecting your key with the kit's passphrase…");
        ctx.home.create_keys(&new, &pass, ctx.work_factor)?;
    }
    ctx.home.save_space(relay.url(), &replica)?;
    let mut s = Session::new(replica, relay);
    let mut revoked = Vec::new();
    for d in std::iter::once(kit_device).chain(lost.iter().copied()) {
        match s.post_with(|r| Ok(r.compose_revoke(d, now, &mut OsRng)?)) {
            Ok(_) => revoked.push(d),
            Err(e) => {
                ctx.save(&s)?;
                return Err(fail(format!(
                    "This device is back in your space, but device {} couldn't be revoked yet ({e}). Run `troth key revoke {}`.",
                    hex::encode(&d.0[..8]),
                    hex::encode(&d.0[..8])
                )));
            }
        }
    }
    ctx.save(&s)?;
    let left: Vec<_> = others.iter().filter(|d| !lost.contains(d)).collect();
    let mut words = format!(
        "This device is back in your space, with keys of its own; your partner is told that you added a device.\nRevoked: the recovery kit's device{}.",
        lost.iter()
            .map(|d| format!(", {}", hex::encode(&d.0[..8])))
            .collect::<String>()
    );
    if !left.is_empty() {
        words.push_str(&format!(
            "\nStill active: {}. If one of them is lost, revoke it: troth key revoke ID",
            left.iter()
                .map(|d| hex::encode(&d.0[..8]))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    words.push_str("\nThe kit is used up; save a new one: troth key recovery-kit --out FILE");
    say(
        ctx,
        &words,
        json!({
            "device": hex::encode(s.replica().keys().cert.device().id().0),
            "revoked": revoked.iter().map(|d| hex::encode(d.0)).collect::<Vec<_>>(),
            "state_code": s.replica().state_code(),
        }),
    )
}

fn rotate(ctx: &Ctx) -> anyhow::Result<()> {
    let (keys, pass) = unlock(ctx)?;
    if !ctx.home.has_space() {
        // No space yet: new device keys, nothing to tell anyone.
        let new = keys.rotate_device(&mut OsRng, ctx.now_ms);
        ctx.home.replace_keys(&new, &pass, ctx.work_factor)?;
        return say(
            ctx,
            "This device has new keys.",
            json!({ "device": hex::encode(new.cert.device().id().0) }),
        );
    }
    let stored = ctx.home.load_space(clone_keys(&keys)?)?;
    let relay = RelayClient::new(&stored.relay)?;
    let mut s = Session::new(stored.replica, relay.clone());
    s.sync_strict()?;
    let old = keys.cert.device().id();
    let new = keys.rotate_device(&mut OsRng, ctx.now_ms);
    let now = ctx.now_ms;
    s.post_with(|r| Ok(r.compose_add_device(&new.cert, now)?))?;
    ctx.save(&s)?;
    // The new device reads every epoch key from the AddDevice envelopes.
    let old_replica = s.into_replica();
    let mut replica = Replica::open(
        clone_keys(&new)?,
        old_replica.role(),
        old_replica.space(),
        old_replica.chain().anchors().clone(),
    );
    let ing = replica.ingest(old_replica.events());
    if ing.error.is_some() {
        return Err(fail_with(
            EXIT_INTEGRITY,
            "The new device couldn't verify the space; your old keys are still in place.",
        ));
    }
    // Readable by both devices until the key file is replaced.
    ctx.home.save_space_for(relay.url(), &replica, &[&keys])?;
    {
        let _s = ctx.spinner("Protecting the new key with your passphrase…");
        ctx.home.replace_keys(&new, &pass, ctx.work_factor)?;
    }
    let mut s = Session::new(replica, relay);
    ctx.save(&s)?;
    let revoked = s.post_with(|r| Ok(r.compose_revoke(old, now, &mut OsRng)?));
    ctx.save(&s)?;
    let newid = hex::encode(new.cert.device().id().0);
    match revoked {
        Ok(_) => say(
            ctx,
            "This device has new keys; the old ones are revoked. Your partner sees the change in the timeline.",
            json!({ "device": newid, "revoked": hex::encode(old.0) }),
        ),
        Err(e) => Err(fail(format!(
            "This device has new keys, but the old ones couldn't be revoked yet ({e}). Run `troth key revoke {}` later.",
            hex::encode(&old.0[..8])
        ))),
    }
}

// ------------------------------------------------------------------ pairing

fn role(r: RoleArg) -> Role {
    match r {
        RoleArg::Leading => Role::Leading,
        RoleArg::Rebuilding => Role::Rebuilding,
    }
}

fn pair(ctx: &Ctx, p: PairCommand) -> anyhow::Result<()> {
    if ctx.home.has_keys() && ctx.home.has_space() {
        return Err(ClientError::AlreadyPaired.into());
    }
    match p {
        PairCommand::Start {
            relay,
            role: r,
            timeout,
        } => {
            let timeout = parse_wait(&timeout)?;
            let relay = RelayClient::new(&relay)?;
            let keys = ctx.keys()?;
            let myrole = role(r);
            let inv = {
                let _s = ctx.spinner("Asking the relay for a code…");
                Invitation::open(&relay, &keys, myrole, &mut OsRng)?
            };
            {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", inv.code().as_str())?;
                out.flush()?;
            }
            eprintln!(
                "Give your partner this code. On their device: troth pair join {} --relay {}",
                inv.code().as_str(),
                relay.url()
            );
            let paired = {
                let _s = ctx.spinner("Waiting for your partner…");
                inv.wait(timeout)?
            };
            let replica = {
                let _s = ctx.spinner("Creating your shared space…");
                create_space(&relay, keys, myrole, &paired, ctx.now_ms, &mut OsRng)?
            };
            ctx.home.save_space(relay.url(), &replica)?;
            paired_message(ctx, &replica, paired.safety_number.as_str())
        }
        PairCommand::Join {
            code,
            relay,
            timeout,
        } => {
            let timeout = parse_wait(&timeout)?;
            let relay = RelayClient::new(&relay)?;
            let keys = ctx.keys()?;
            let paired = {
                let _s = ctx.spinner("Pairing…");
                join(&relay, &keys, &code, timeout, &mut OsRng)?
            };
            let replica = {
                let _s = ctx.spinner("Waiting for your partner's device to add this one…");
                await_admission(&relay, keys, &paired, timeout)?
            };
            ctx.home.save_space(relay.url(), &replica)?;
            paired_message(ctx, &replica, paired.safety_number.as_str())
        }
    }
}

fn paired_message(ctx: &Ctx, r: &Replica, safety: &str) -> anyhow::Result<()> {
    say(
        ctx,
        &format!(
            "Paired. Safety number: {}\nCompare it with your partner's screen: if both show the same number, nobody is in between.\n{}\nBoth of you confirm this before anything is proposed: troth roles confirm (troth roles swap if it should be the other way round, or troth roles decline to talk first).",
            ctx.bold(safety),
            sets_words(r.state().roles.sets_conditions(r.role()))
        ),
        json!({
            "safety_number": safety,
            "space": r.space().to_hex(),
            "role": role_name(r.role()),
            "state_code": r.state_code(),
        }),
    )
}

// ------------------------------------------------------------------ roles

/// Who sets the conditions, as a sentence to the reader.
fn sets_words(i_set: bool) -> &'static str {
    if i_set {
        "You set the conditions; your partner is rebuilding trust."
    } else {
        "Your partner sets the conditions; you are rebuilding trust."
    }
}

/// `troth roles [confirm | swap | end | decline --comment …]`: who sets the
/// conditions, confirmed by both before anything can be proposed; swapped or
/// ended later only when both ask.
fn roles(ctx: &Ctx, answer: Option<RolesCommand>) -> anyhow::Result<()> {
    use troth_core::state::ROLES_DECLINE_WORDS;
    let mut s = ctx.session()?;
    let me = me(&s);
    let done = match answer {
        None => None,
        Some(RolesCommand::Confirm) => {
            let roles = &s.replica().state().roles;
            if roles.confirmed.contains_key(&me) && !roles.swap_requests.contains_key(&me) {
                Some("You had already confirmed.")
            } else {
                let c = s.replica().confirm_roles()?;
                s.post(&c, ctx.now_ms, &mut OsRng)?;
                ctx.save(&s)?;
                Some("You confirmed.")
            }
        }
        Some(RolesCommand::Swap) => {
            let was_agreed = s.replica().state().roles.agreed();
            let c = s.replica().swap_roles()?;
            s.post(&c, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            let roles = &s.replica().state().roles;
            Some(if !was_agreed {
                "You proposed the roles the other way round. Your partner sees it and can confirm it, or answer that you should talk first."
            } else if roles.swap_requests.is_empty() {
                "You have both agreed to swap the roles. Every agreement in force stays as you both signed it: each rule still asks the same person."
            } else {
                "You asked to swap the roles. They swap once your partner asks too; until then nothing changes."
            })
        }
        Some(RolesCommand::End) => {
            let c = s.replica().end_roles()?;
            s.post(&c, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            Some(if s.replica().state().roles.agreed() {
                "You asked to end the roles. They end once your partner asks too."
            } else {
                "You have both ended the roles: nobody sets the conditions now. Agreements already in force stay until they are withdrawn, retired or lapse."
            })
        }
        Some(RolesCommand::Decline { comment }) => {
            check_words(&[&comment])?;
            s.post(&Content::DeclineRoles { comment }, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            Some(if s.replica().state().roles.agreed() {
                "Your partner sees your answer. The roles stay as they are; take the time you need to talk."
            } else {
                "Your partner sees your answer. Nothing can be proposed until you both confirm; take the time you need to talk."
            })
        }
    };
    let st = s.replica().state();
    let roles = &st.roles;
    let ended_last = roles.ended_at.is_some() && roles.confirmed.is_empty();
    let sets = if ended_last {
        "You have both ended the roles: nobody sets the conditions now."
    } else if roles.agreed() {
        sets_words(roles.sets_conditions(me))
    } else if roles.sets_conditions(me) {
        "Proposed: you set the conditions; your partner is rebuilding trust."
    } else {
        "Proposed: your partner sets the conditions; you are rebuilding trust."
    };
    let you = roles.confirmed.contains_key(&me);
    let partner = roles.confirmed.contains_key(&me.other());
    let mut lines = vec![sets.to_owned()];
    if let Some(d) = done {
        lines.push(d.to_owned());
    }
    lines.push(if roles.agreed() {
        "You have both confirmed this.".to_owned()
    } else {
        format!(
            "Confirmed by you: {} · by your partner: {}. Nothing can be proposed until you both confirm (troth roles confirm); you can also propose them the other way round (troth roles swap), or answer “{ROLES_DECLINE_WORDS}” (troth roles decline).",
            if you { "yes" } else { "not yet" },
            if partner { "yes" } else { "not yet" }
        )
    });
    let you_swap = roles.swap_requests.contains_key(&me);
    let partner_swap = roles.swap_requests.contains_key(&me.other());
    if partner_swap {
        lines.push("Your partner asked to swap the roles. If you agree: troth roles swap; to talk first: troth roles decline. Every rule would keep asking the same person.".to_owned());
    } else if you_swap {
        lines.push("You asked to swap the roles; they swap once your partner agrees.".to_owned());
    }
    if let Some((by, _, comment)) = &roles.declined {
        lines.push(format!(
            "{} answered “{ROLES_DECLINE_WORDS}”{}",
            if *by == me { "You" } else { "Your partner" },
            if comment.is_empty() {
                String::new()
            } else {
                format!(": {comment}")
            }
        ));
    }
    say(
        ctx,
        &lines.join("\n"),
        json!({
            "role": role_name(me),
            "sets_conditions": role_name(roles.sets),
            "confirmed_by": roles.confirmed.keys().map(|r| role_name(*r)).collect::<Vec<_>>(),
            "agreed": roles.agreed(),
            "end_requested_by": roles.end_requests.keys().map(|r| role_name(*r)).collect::<Vec<_>>(),
            "ended": roles.ended_at.is_some() && !roles.agreed(),
            "swap_requested_by": roles.swap_requests.keys().map(|r| role_name(*r)).collect::<Vec<_>>(),
            "swapped": roles.swapped_at.is_some(),
            "declined": roles.declined.as_ref().map(|(by, seq, c)| json!({
                "by": role_name(*by), "seq": seq, "comment": c,
            })),
        }),
    )
}

// ------------------------------------------------------------------ retention

/// `troth retention [shorten DAYS | propose DAYS | agree]`: how long things
/// are kept before both devices forget them (issue 17). Every sync rotates
/// keys monthly and forgets what ended more than this long ago.
fn retention(ctx: &Ctx, change: Option<RetentionCommand>) -> anyhow::Result<()> {
    let mut s = ctx.session()?;
    let me = me(&s);
    let done = match change {
        None => None,
        Some(RetentionCommand::Shorten { days }) => {
            let c = s.replica().retention_shorten(days)?;
            s.post(&c, ctx.now_ms, &mut OsRng)?;
            s.replica_mut().forget(ctx.now_ms);
            ctx.save(&s)?;
            Some(format!(
                "From now on things are kept for {days} days, on both of your devices."
            ))
        }
        Some(RetentionCommand::Propose { days }) => {
            let c = s.replica().retention_propose(days)?;
            s.post(&c, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            Some(format!(
                "You proposed keeping things for {days} days. It applies once your partner agrees (troth retention agree)."
            ))
        }
        Some(RetentionCommand::Agree) => {
            let c = s.replica().retention_agree()?;
            s.post(&c, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            Some("You agreed; both of your devices keep things longer from now on.".to_owned())
        }
    };
    let rep = s.replica();
    let st = rep.state();
    let r = &st.retention;
    let mut lines = vec![format!(
        "Things are kept for {} days. After that, both of your devices forget them: the keys that open them are deleted, so nobody can read them in Troth any more.",
        r.days
    )];
    if let Some(d) = done {
        lines.push(d);
    }
    if let Some((by, days, _)) = r.proposal {
        lines.push(if by == me {
            format!("You proposed keeping things for {days} days; waiting for your partner.")
        } else {
            format!(
                "Your partner proposed keeping things for {days} days. If that feels right: troth retention agree."
            )
        });
    }
    if st.forgotten.epochs > 0 {
        lines.push(format!(
            "{} older events were forgotten as agreed (agreements still in force are kept).",
            st.forgotten.events
        ));
    }
    lines.push(format!(
        "Shorten it alone any time (troth retention shorten DAYS); keeping things longer takes both of you (troth retention propose DAYS). Keys change every {} days.",
        troth_core::members::ROTATION_PERIOD_MS / troth_core::state::DAY_MS
    ));
    say(
        ctx,
        &lines.join("\n"),
        json!({
            "days": r.days,
            "default_days": troth_core::retention::DEFAULT_DAYS,
            "changed": r.changed.map(|(by, seq)| json!({ "by": role_name(by), "seq": seq })),
            "proposal": r.proposal.map(|(by, days, seq)| json!({
                "by": role_name(by), "days": days, "seq": seq,
            })),
            "forgotten_epochs": st.forgotten.epochs,
            "forgotten_events": st.forgotten.events,
            "epoch": rep.chain().members().epoch(),
            "rotation_days": troth_core::members::ROTATION_PERIOD_MS / troth_core::state::DAY_MS,
        }),
    )
}

// ------------------------------------------------------------------ agreements

fn review_day(ctx: &Ctx, review: &Review, default: Option<Day>) -> anyhow::Result<Day> {
    let today = ctx.today();
    let day = match (&review.review_in, &review.review_on) {
        (Some(d), _) => today.plus(parse_days(d)?),
        (None, Some(on)) => Day::parse(on)
            .ok_or_else(|| fail(format!("“{on}” isn't a date; write it like 2027-01-15.")))?,
        (None, None) => default.filter(|d| *d > today).unwrap_or(today.plus(30)),
    };
    if day <= today {
        return Err(fail("Choose a review date after today."));
    }
    if day > today.plus(troth_core::agreement::MAX_REVIEW_DAYS) {
        return Err(fail(format!(
            "Choose a review date at most {} days ahead (by {}): rules are looked at together again \
             within {} days, and you can renew them then.",
            troth_core::agreement::MAX_REVIEW_DAYS,
            today.plus(troth_core::agreement::MAX_REVIEW_DAYS),
            troth_core::agreement::MAX_REVIEW_DAYS
        )));
    }
    Ok(day)
}

/// The agreement an id prefix names, with its version waiting for signatures.
fn pending_version(s: &Session, prefix: &str) -> anyhow::Result<(AgreementId, u32)> {
    let id = find_agreement(s.replica().state(), prefix)?;
    let version = record(s.replica().state(), &id)?
        .pending()
        .map(|v| v.agreement.version)
        .ok_or_else(|| fail("There's no version of this agreement waiting for signatures."))?;
    Ok((id, version))
}

fn find_agreement(state: &State, prefix: &str) -> anyhow::Result<AgreementId> {
    let p = prefix.trim().to_lowercase();
    if p.len() < 4 {
        return Err(fail(
            "Give at least the first 4 characters of the agreement's id (see `troth agreement list`).",
        ));
    }
    let found: Vec<AgreementId> = state
        .agreements
        .keys()
        .filter(|id| id.to_hex().starts_with(&p))
        .copied()
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(fail(
            "There's no agreement with that id (see `troth agreement list`).",
        )),
        _ => Err(fail(
            "Several agreements start that way; give more of the id.",
        )),
    }
}

fn record<'a>(state: &'a State, id: &AgreementId) -> anyhow::Result<&'a AgreementRecord> {
    state
        .agreements
        .get(id)
        .ok_or_else(|| fail("There's no agreement with that id."))
}

fn rules_from(texts: &[String], like: Option<&Rule>) -> Vec<Rule> {
    texts
        .iter()
        .map(|t| Rule {
            text: t.trim().to_owned(),
            category: like.map_or(Category::Other, |r| r.category),
            asks_of: like.map_or(Role::Rebuilding, |r| r.asks_of),
            params: Vec::new(),
            // The limits on asking stay with the kind of rule they came with.
            limits: like.map(|r| r.limits).unwrap_or_default(),
        })
        .collect()
}

/// `HH:MM` as minutes after midnight.
fn parse_hm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && m.to_string().len() <= 2).then_some(h * 60 + m)
}

/// `+01:00`, `-05:30` or `+00:00` as minutes.
fn parse_offset(s: &str) -> Option<i16> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => (1, s),
    };
    let m = i16::try_from(parse_hm(rest)?).ok()?;
    (m <= troth_core::agreement::MAX_UTC_OFFSET_MIN).then_some(sign * m)
}

/// Sets the limits asked for on the rules they govern: per-day check-in
/// requests and quiet hours on whereabouts rules, weekly phone requests
/// and quiet hours on phone rules.
fn apply_limits(rules: &mut [Rule], l: &LimitArgs) -> anyhow::Result<()> {
    let quiet = match &l.quiet_hours {
        None => None,
        Some(q) => {
            let bad = || {
                fail(format!(
                    "“{q}” isn't a range of times; write it like 22:00-07:00."
                ))
            };
            let (from, to) = q.split_once('-').ok_or_else(bad)?;
            let (from_min, to_min) = (
                parse_hm(from).ok_or_else(bad)?,
                parse_hm(to).ok_or_else(bad)?,
            );
            if from_min == to_min {
                return Err(bad());
            }
            let off = l.utc_offset.as_deref().unwrap_or("+00:00");
            let utc_offset_min = parse_offset(off).ok_or_else(|| {
                fail(format!(
                    "“{off}” isn't an offset from UTC; write it like +01:00 or -05:00."
                ))
            })?;
            Some(troth_core::agreement::QuietHours {
                from_min,
                to_min,
                utc_offset_min,
            })
        }
    };
    let mut used = (
        l.max_requests_per_day.is_none(),
        l.max_phone_per_week.is_none(),
    );
    for r in rules.iter_mut() {
        match r.category {
            Category::Whereabouts => {
                if let Some(n) = l.max_requests_per_day {
                    r.limits.checkins_per_day = Some(n);
                    used.0 = true;
                }
            }
            Category::PhoneAccess => {
                if let Some(n) = l.max_phone_per_week {
                    r.limits.phone_per_week = Some(n);
                    used.1 = true;
                }
            }
            _ => continue,
        }
        if quiet.is_some() {
            r.limits.quiet = quiet;
        }
    }
    if !used.0 || !used.1 {
        return Err(fail(
            "Limits on asking go with a whereabouts rule (check-in requests) or a phone rule; \
             start from --template whereabouts or --template phone.",
        ));
    }
    Ok(())
}

/// Proposes a version and signs it as the proposer. Returns the id and version.
fn propose_and_sign(ctx: &Ctx, s: &mut Session, a: Agreement) -> anyhow::Result<()> {
    let (id, version, title) = (a.id, a.version, a.title.clone());
    // Every signed field, as it was signed.
    let words = view::words_text(&a, Some(me(s)), s.replica().state().roles.sets);
    let content = s.replica().propose(a)?;
    s.post(&content, ctx.now_ms, &mut OsRng)?;
    ctx.save(s)?;
    let now = ctx.now_ms;
    s.post_with(|r| {
        let c = r.cosign(id, version)?;
        Ok(r.compose(&c, now, &mut OsRng)?)
    })?;
    ctx.save(s)?;
    let short = view::short(&id);
    say(
        ctx,
        &format!(
            "Proposed “{title}” (version {version}, id {short}) and signed it.\n\n{words}\nIt comes into force when your partner signs it too: troth agreement sign {short}"
        ),
        json!({ "id": id.to_hex(), "version": version, "status": "pending" }),
    )
}

fn agreement(ctx: &Ctx, cmd: AgreementCommand) -> anyhow::Result<()> {
    match cmd {
        AgreementCommand::Templates => {
            let ts = templates();
            if ctx.json {
                let v: Vec<_> = ts
                    .iter()
                    .map(|t| json!({ "name": t.name, "title": t.title, "rules": t.rules.iter().map(|r| r.text.clone()).collect::<Vec<_>>() }))
                    .collect();
                println!("{}", json!({ "templates": v }));
            } else {
                for t in ts {
                    println!("{:<12} {}", t.name, t.title);
                    for r in &t.rules {
                        println!("             {}", ctx.dim(&r.text));
                    }
                }
            }
            Ok(())
        }
        AgreementCommand::Propose {
            template: name,
            title,
            text,
            review,
            limits,
        } => {
            let t = match &name {
                Some(n) => Some(template(n).ok_or_else(|| {
                    fail(format!(
                        "There's no template called “{n}”. Try one of: {}.",
                        templates()
                            .iter()
                            .map(|t| t.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?),
                None => None,
            };
            if t.is_none() && text.is_empty() {
                return Err(fail(
                    "Start from a --template, or give the words with --text.",
                ));
            }
            let title = title
                .or_else(|| t.as_ref().map(|t| t.title.to_owned()))
                .ok_or_else(|| fail("Give the agreement a --title."))?;
            let mut rules = if text.is_empty() {
                t.as_ref().map(|t| t.rules.clone()).unwrap_or_default()
            } else {
                rules_from(&text, t.as_ref().and_then(|t| t.rules.first()))
            };
            apply_limits(&mut rules, &limits)?;
            let review_on = review_day(ctx, &review, None)?;
            let a = Agreement {
                id: AgreementId::random(&mut OsRng),
                version: 1,
                supersedes: None,
                title,
                rules,
                review_on,
            };
            a.validate()?;
            let mut s = ctx.session()?;
            // Templates (and words given without a template) name the
            // partner who sets the conditions as `Leading`: as roles stand.
            let sets = s.replica().state().roles.sets;
            let mut a = a;
            for r in &mut a.rules {
                r.asks_of = troth_core::agreement::as_roles(sets, r.asks_of);
            }
            propose_and_sign(ctx, &mut s, a)
        }
        AgreementCommand::List => {
            let s = ctx.session()?;
            let st = s.replica().state();
            if ctx.json {
                let today = ctx.today();
                let v: Vec<_> = st
                    .agreements
                    .values()
                    .map(|r| view::summary_json(r, today))
                    .collect();
                println!("{}", json!({ "agreements": v }));
                return Ok(());
            }
            if st.agreements.is_empty() {
                println!(
                    "No agreements yet. Propose one: troth agreement propose --template whereabouts"
                );
                return Ok(());
            }
            let me = me(&s);
            let today = ctx.today();
            for rec in st.agreements.values() {
                let Some(latest) = rec.latest() else { continue };
                let shown = rec.in_force().unwrap_or(latest);
                let due = if rec
                    .in_force_on(today)
                    .is_some_and(|v| v.agreement.review_on <= today)
                {
                    " · due for review"
                } else {
                    ""
                };
                println!(
                    "{}  {}  {} · review on {}{due}",
                    view::short(&rec.id),
                    ctx.bold(&shown.agreement.title),
                    view::record_words(rec, me, today),
                    shown.agreement.review_on
                );
            }
            Ok(())
        }
        AgreementCommand::Show { id } => {
            let s = ctx.session()?;
            let st = s.replica().state();
            let id = find_agreement(st, &id)?;
            let rec = record(st, &id)?;
            if ctx.json {
                println!("{}", view::record_json(rec, ctx.today()));
                return Ok(());
            }
            let me = me(&s);
            println!("{} {}", ctx.bold("Agreement"), id.to_hex());
            println!("Now: {}", view::record_words(rec, me, ctx.today()));
            for v in rec.versions.iter().rev() {
                let a = &v.agreement;
                println!();
                println!(
                    "{} · version {} · {} · review on {}",
                    ctx.bold(&a.title),
                    a.version,
                    view::version_words(v, me, ctx.today()),
                    a.review_on
                );
                print!("{}", view::rules_text(a, Some(me), st.roles.sets));
                let signed: Vec<&str> = v.signatures.keys().map(|r| view::who(me, *r)).collect();
                println!(
                    "  {}",
                    ctx.dim(&format!(
                        "proposed by {} · signed by {}",
                        view::who(me, v.proposed_by),
                        if signed.is_empty() {
                            "nobody yet".into()
                        } else {
                            signed.join(" and ")
                        }
                    ))
                );
                for (by, c, _) in &v.change_requests {
                    println!("  {} asked for a change: {c}", view::who(me, *by));
                }
            }
            if let Some((by, _, c)) = &rec.withdrawn {
                println!();
                let c = if c.is_empty() {
                    String::new()
                } else {
                    format!(": {c}")
                };
                println!("{} withdrew consent{c}", view::who(me, *by));
            }
            Ok(())
        }
        AgreementCommand::Sign { id, version } => sign(ctx, &id, version),
        AgreementCommand::RequestChange { id, comment } => {
            check_words(&[&comment])?;
            let mut s = ctx.session()?;
            let (id, version) = pending_version(&s, &id)?;
            s.post(
                &Content::RequestChange {
                    agreement: id,
                    version,
                    comment,
                },
                ctx.now_ms,
                &mut OsRng,
            )?;
            ctx.save(&s)?;
            say(
                ctx,
                "Your partner will see your request for a change.",
                json!({ "id": id.to_hex(), "version": version }),
            )
        }
        AgreementCommand::Decline { id, comment } => {
            check_words(&[&comment])?;
            let mut s = ctx.session()?;
            let (id, version) = pending_version(&s, &id)?;
            s.post(
                &Content::Decline {
                    agreement: id,
                    version,
                    comment,
                },
                ctx.now_ms,
                &mut OsRng,
            )?;
            ctx.save(&s)?;
            say(
                ctx,
                "Declined for now. You can talk it over and propose new words any time.",
                json!({ "id": id.to_hex(), "version": version, "status": "declined" }),
            )
        }
        AgreementCommand::Amend {
            id,
            title,
            text,
            review,
        } => {
            let mut words: Vec<&str> = text.iter().map(String::as_str).collect();
            words.extend(title.as_deref());
            check_words(&words)?;
            let mut s = ctx.session()?;
            let id = find_agreement(s.replica().state(), &id)?;
            let a = {
                let st = s.replica().state();
                let rec = record(st, &id)?;
                let latest = rec
                    .latest()
                    .ok_or_else(|| fail("This agreement has no versions."))?;
                let base = &latest.agreement;
                let rules = if text.is_empty() {
                    base.rules.clone()
                } else {
                    rules_from(&text, base.rules.first())
                };
                let review_on = review_day(ctx, &review, Some(base.review_on))?;
                base.amended(
                    title.unwrap_or_else(|| base.title.clone()),
                    rules,
                    review_on,
                )
            };
            a.validate()?;
            propose_and_sign(ctx, &mut s, a)
        }
        AgreementCommand::Renew { id, review } => {
            let mut s = ctx.session()?;
            let id = find_agreement(s.replica().state(), &id)?;
            let a = {
                let st = s.replica().state();
                let rec = record(st, &id)?;
                let latest = rec
                    .latest()
                    .ok_or_else(|| fail("This agreement has no versions."))?;
                let words = rec.in_force().unwrap_or(latest);
                let review_on = review_day(ctx, &review, None)?;
                // The words in force, as the version after the latest one.
                latest.agreement.amended(
                    words.agreement.title.clone(),
                    words.agreement.rules.clone(),
                    review_on,
                )
            };
            propose_and_sign(ctx, &mut s, a)
        }
        AgreementCommand::Retire { id } => {
            let mut s = ctx.session()?;
            let id = find_agreement(s.replica().state(), &id)?;
            s.post(&Content::Retire { agreement: id }, ctx.now_ms, &mut OsRng)?;
            ctx.save(&s)?;
            let st = s.replica().state();
            let rec = record(st, &id)?;
            let both = rec.retire_requests.len() == 2;
            say(
                ctx,
                if both {
                    "The agreement is retired: you both asked."
                } else {
                    "You asked to retire it; it is retired once your partner asks too."
                },
                json!({ "id": id.to_hex(), "retired": both }),
            )
        }
        AgreementCommand::Withdraw { id, comment } => {
            check_words(&[&comment])?;
            let mut s = ctx.session()?;
            let id = find_agreement(s.replica().state(), &id)?;
            s.post(
                &Content::Withdraw {
                    agreement: id,
                    comment,
                },
                ctx.now_ms,
                &mut OsRng,
            )?;
            ctx.save(&s)?;
            say(
                ctx,
                "You withdrew your consent. It's recorded and your partner sees it; the agreement is no longer in force.",
                json!({ "id": id.to_hex(), "status": "withdrawn" }),
            )
        }
        AgreementCommand::Status { file } => certificate_status(ctx, &file),
        AgreementCommand::Export { id, out } => {
            if out.exists() {
                return Err(ClientError::Exists(out).into());
            }
            if ctx.offline {
                return Err(fail(
                    "Exporting a certificate is recorded for both of you first, so it needs the relay; \
                     nothing was written.",
                ));
            }
            let mut s = ctx.session()?;
            let (id, version) = {
                let st = s.replica().state();
                let id = find_agreement(st, &id)?;
                let rec = record(st, &id)?;
                let v = rec
                    .versions
                    .iter()
                    .rev()
                    .find(|v| v.in_force.is_some())
                    .ok_or_else(|| fail("This agreement hasn't been signed by both of you yet, so there's no certificate."))?;
                (id, v.agreement.version)
            };
            let cert = s
                .replica()
                .certificate(id, version)
                .map_err(|e| fail(e.to_string()))?;
            // Nothing leaves silently: the export is a signed event both
            // see, appended before the file is written.
            s.post(
                &Content::Exported {
                    what: troth_core::content::ExportKind::Certificate,
                    detail: format!(
                        "“{}”, version {version}",
                        view::clip(&cert.agreement().title, 150)
                    ),
                },
                ctx.now_ms,
                &mut OsRng,
            )?;
            ctx.save(&s)?;
            write_new(
                &out,
                cert.to_text(s.replica().state().roles.sets).as_bytes(),
            )?;
            let rec = record(s.replica().state(), &id)?;
            let v = rec
                .versions
                .get(version as usize - 1)
                .ok_or_else(|| fail("There's no agreement with that id and version."))?;
            let still = v.status_on(ctx.today()) == VersionStatus::InForce;
            say(
                ctx,
                &format!(
                    "Wrote the certificate of “{}” (version {}) to {}.{}",
                    v.agreement.title,
                    v.agreement.version,
                    out.display(),
                    if still {
                        ""
                    } else {
                        " Note: this version is no longer in force; the certificate shows only that it was agreed."
                    }
                ),
                json!({ "id": id.to_hex(), "version": v.agreement.version, "in_force": still, "out": out }),
            )
        }
    }
}

/// `troth agreement sign ID [--version N]`: signs only words this device
/// showed. With `--version N`, N must be the version waiting for signatures;
/// without it, the version waiting must be the one the local copy held
/// before this command synced. Otherwise the new words are printed and
/// nothing is signed.
fn sign(ctx: &Ctx, prefix: &str, asked: Option<u32>) -> anyhow::Result<()> {
    let stored = ctx.stored()?;
    // What this device could have shown before the sync: the pending
    // version of the local copy (its number and the hash of its words).
    let seen = {
        let st = stored.replica.state();
        find_agreement(st, prefix)
            .ok()
            .and_then(|id| st.agreements.get(&id))
            .and_then(|rec| rec.pending())
            .map(|v| (v.agreement.id, v.agreement.version, v.hash))
    };
    let mut s = ctx.sync_session(stored)?;
    let me = me(&s);
    let id = find_agreement(s.replica().state(), prefix)?;
    let version = {
        let rec = record(s.replica().state(), &id)?;
        let Some(p) = rec.pending() else {
            return Err(fail(match asked {
                Some(n) => format!(
                    "Version {n} isn't waiting for signatures, and no other version is; nothing was signed."
                ),
                None => "There's no version of this agreement waiting for signatures.".to_owned(),
            }));
        };
        let (n, short) = (p.agreement.version, view::short(&id));
        let refuse = |why: String| -> anyhow::Error {
            // The words that are waiting, so the person can read them first.
            if ctx.json {
                println!(
                    "{}",
                    json!({ "pending": view::agreement_json(&p.agreement) })
                );
            } else {
                print!(
                    "{}",
                    view::words_text(&p.agreement, Some(me), s.replica().state().roles.sets)
                );
            }
            fail(format!(
                "{why} Nothing was signed. Read the words above; to sign them: troth agreement sign {short} --version {n}"
            ))
        };
        match asked {
            Some(want) if want == n => n,
            Some(want) => {
                return Err(refuse(format!(
                    "Version {want} isn't the one waiting for signatures; version {n} is."
                )));
            }
            None if seen == Some((id, n, p.hash)) => n,
            None if seen.is_some_and(|(sid, _, _)| sid == id) => {
                return Err(refuse(format!(
                    "Your partner proposed new words (version {n}) since this device last showed the agreement."
                )));
            }
            None => {
                return Err(refuse(format!(
                    "This device hadn't shown version {n} before now."
                )));
            }
        }
    };
    let now = ctx.now_ms;
    // The version is fixed: if the log moves on meanwhile and a later
    // proposal replaces it, signing fails rather than sign other words.
    s.post_with(|r| {
        let c = r.cosign(id, version)?;
        Ok(r.compose(&c, now, &mut OsRng)?)
    })?;
    ctx.save(&s)?;
    let st = s.replica().state();
    let rec = record(st, &id)?;
    let in_force = rec
        .in_force()
        .is_some_and(|v| v.agreement.version == version);
    let title = rec
        .versions
        .get(version.saturating_sub(1) as usize)
        .map(|v| v.agreement.title.clone())
        .unwrap_or_default();
    say(
        ctx,
        &if in_force {
            format!(
                "You signed “{title}” (version {version}). {}",
                ctx.green("It is now in force for both of you.")
            )
        } else {
            format!(
                "You signed “{title}” (version {version}). It comes into force when your partner signs too."
            )
        },
        json!({ "id": id.to_hex(), "version": version, "status": if in_force { "in_force" } else { "pending" } }),
    )
}

/// Reads and verifies a certificate file offline (exit 5 when it doesn't).
fn read_certificate(file: &Path) -> anyhow::Result<Certificate> {
    let bytes = read_small(file, 1024 * 1024)?;
    let text = String::from_utf8_lossy(&bytes);
    Certificate::from_text(&text).map_err(|e| {
        fail_with(
            EXIT_INTEGRITY,
            format!("This certificate does not verify: {e}. Don't rely on it."),
        )
    })
}

/// `troth agreement status FILE`: a certificate proves a signing at one
/// time; this says where its agreement stands now in this space's verified
/// log. Words the log never held (a certificate minted elsewhere) exit 5;
/// another space's certificate exits 1.
fn certificate_status(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    use troth_core::replica::CertificateStatus;
    let cert = read_certificate(file)?;
    let s = ctx.session()?;
    let status = s.replica().certificate_status(&cert, ctx.today());
    let a = cert.agreement();
    let line = format!(
        "“{}” (version {}): {}",
        a.title,
        a.version,
        status.describe()
    );
    let value = json!({
        "id": a.id.to_hex(),
        "version": a.version,
        "status": status.as_str(),
        "describe": status.describe(),
    });
    match status {
        CertificateStatus::NotInLog => {
            if ctx.json {
                println!("{value}");
            }
            Err(fail_with(EXIT_INTEGRITY, line))
        }
        CertificateStatus::NotInThisSpace => {
            if ctx.json {
                println!("{value}");
            }
            Err(fail(line))
        }
        _ => say(ctx, &line, value),
    }
}

fn verify_certificate(file: &Path, json_out: bool) -> anyhow::Result<()> {
    let proof = read_certificate(file)?;
    let a = proof.agreement();
    let signers: Vec<String> = proof.signers().iter().map(|k| k.fingerprint()).collect();
    if json_out {
        let mut v = view::agreement_json(a);
        v["valid"] = json!(true);
        v["space"] = json!(proof.space().to_hex());
        v["signers"] = json!(signers);
        v["proposed_at_seq"] = json!(proof.position().seq);
        v["proposed_event"] = json!(proof.position().event.to_hex());
        println!("{v}");
        return Ok(());
    }
    println!("Valid: both partners signed these exact words.");
    println!();
    println!(
        "{} · version {} · review on {}",
        a.title, a.version, a.review_on
    );
    // On its own a certificate cannot know whether the partners swapped
    // roles since pairing: it words them as paired (PROTOCOL.md §7).
    print!("{}", view::rules_text(a, None, Role::Leading));
    println!();
    // The log position is signed too: where the words were proposed.
    println!(
        "Proposed as event #{} ({}) of space {}.",
        proof.position().seq,
        &proof.position().event.to_hex()[..16],
        proof.space().to_hex()
    );
    println!("Signed by {} and {}.", signers[0], signers[1]);
    println!(
        "(It shows both signed these words at that time only: either partner can withdraw at any moment, and only the couple's log shows whether it is still in force.)"
    );
    Ok(())
}

// ------------------------------------------------------------------ transparency

fn checkin(
    ctx: &Ctx,
    text: String,
    place: Option<String>,
    answers: Option<u64>,
    no_answer: bool,
) -> anyhow::Result<()> {
    check_words(&[&text, place.as_deref().unwrap_or("")])?;
    let mut s = ctx.session()?;
    let me = me(&s);
    let st = s.replica().state();
    let answers = if no_answer {
        None
    } else if let Some(n) = answers {
        Some(
            st.requests
                .iter()
                .find(|r| r.seq == n && r.by != me)
                .map(|r| r.hash)
                .ok_or_else(|| fail(format!("#{n} isn't a check-in request from your partner.")))?,
        )
    } else {
        st.requests
            .iter()
            .rev()
            .find(|r| r.by != me && r.is_open())
            .map(|r| r.hash)
    };
    let ev = s.post(
        &Content::CheckIn {
            text,
            place,
            answers,
        },
        ctx.now_ms,
        &mut OsRng,
    )?;
    ctx.save(&s)?;
    let seq = ev.header().seq;
    say(
        ctx,
        &if answers.is_some() {
            format!("Checked in (#{seq}), answering your partner's request.")
        } else {
            format!("Checked in (#{seq}).")
        },
        json!({ "seq": seq, "answers": answers.map(|h| h.to_hex()) }),
    )
}

/// `troth answer talk|therapist|not-comfortable [--to N]`: a normal
/// answer to the partner's check-in or phone request.
fn answer_request(ctx: &Ctx, answer: &str, to: Option<u64>, note: String) -> anyhow::Result<()> {
    use troth_core::content::{AnswerKind, PhoneAction};
    check_words(&[&note])?;
    let kind = AnswerKind::from_name(answer)
        .ok_or_else(|| fail("Answer with talk, therapist or not-comfortable."))?;
    let mut s = ctx.session()?;
    let me = me(&s);
    let st = s.replica().state();
    // The partner's requests: check-in requests, and requests to see the phone.
    let mut asked: Vec<(u64, troth_core::event::EventHash, bool)> = st
        .requests
        .iter()
        .filter(|r| r.by != me && r.outside.is_none())
        .map(|r| (r.seq, r.hash, r.is_open()))
        .chain(
            st.phone
                .iter()
                .filter(|p| p.by != me && p.action == PhoneAction::Asked && p.outside.is_none())
                .map(|p| (p.seq, p.hash, p.answer.is_none())),
        )
        .collect();
    asked.sort_by_key(|a| a.0);
    let (seq, hash) = match to {
        Some(n) => asked
            .iter()
            .find(|a| a.0 == n)
            .map(|a| (a.0, a.1))
            .ok_or_else(|| {
                fail(format!(
                    "#{n} isn't a request from your partner (see `troth timeline`)."
                ))
            })?,
        None => asked
            .iter()
            .rev()
            .find(|a| a.2)
            .map(|a| (a.0, a.1))
            .ok_or_else(|| fail("There's no request from your partner waiting for an answer."))?,
    };
    s.post(
        &Content::Answer {
            to: hash,
            answer: kind,
            note,
        },
        ctx.now_ms,
        &mut OsRng,
    )?;
    ctx.save(&s)?;
    say(
        ctx,
        &format!(
            "Answered #{seq}: “{}”. Your partner sees it as a normal answer.",
            kind.words()
        ),
        json!({ "answered": seq, "answer": kind.name(), "words": kind.words() }),
    )
}

fn ack(ctx: &Ctx, n: u64) -> anyhow::Result<()> {
    let mut s = ctx.session()?;
    let me = me(&s);
    let hash = s
        .replica()
        .state()
        .checkins
        .iter()
        .find(|c| c.seq == n && c.by != me)
        .map(|c| c.hash)
        .ok_or_else(|| {
            fail(format!(
                "#{n} isn't a check-in from your partner (see `troth timeline`)."
            ))
        })?;
    s.post(&Content::Ack { event: hash }, ctx.now_ms, &mut OsRng)?;
    ctx.save(&s)?;
    say(
        ctx,
        &format!("Acknowledged #{n}."),
        json!({ "acknowledged": n }),
    )
}

fn phone(ctx: &Ctx, cmd: PhoneCommand) -> anyhow::Result<()> {
    use troth_core::content::PhoneAction;
    let (action, note) = match cmd {
        PhoneCommand::Ask { note } => (PhoneAction::Asked, note),
        PhoneCommand::Shown { note } => (PhoneAction::Granted, note),
        PhoneCommand::Later { note } => (PhoneAction::Declined, note),
    };
    check_words(&[&note])?;
    let mut s = ctx.session()?;
    let me = me(&s);
    // An answer names the partner's latest request.
    let answers = if action == PhoneAction::Asked {
        None
    } else {
        let st = s.replica().state();
        st.phone
            .iter()
            .rev()
            .find(|p| p.by != me && p.action == PhoneAction::Asked)
            .and_then(|p| usize::try_from(p.seq).ok())
            .and_then(|i| s.replica().events().get(i))
            .map(|e| e.hash())
    };
    let ev = s.post(
        &Content::Phone {
            action,
            note,
            answers,
        },
        ctx.now_ms,
        &mut OsRng,
    )?;
    ctx.save(&s)?;
    let seq = ev.header().seq;
    let words = match action {
        PhoneAction::Asked => "Noted your request to see the phone",
        PhoneAction::Granted => "Noted that you showed your phone",
        PhoneAction::Declined => "Noted that you'd rather show it later",
    };
    say(ctx, &format!("{words} (#{seq})."), json!({ "seq": seq }))
}

fn timeline(ctx: &Ctx) -> anyhow::Result<()> {
    let s = ctx.session()?;
    if ctx.json {
        let st = s.replica().state();
        let notes = time_notes(ctx, &s);
        let v: Vec<_> = st
            .timeline
            .iter()
            .map(|e| view::entry_json_with(e, notes.get(&e.seq)))
            .collect();
        println!(
            "{}",
            json!({
                "events": v,
                "forgotten": { "epochs": st.forgotten.epochs, "events": st.forgotten.events },
            })
        );
        return Ok(());
    }
    let f = s.replica().state().forgotten;
    if f.epochs > 0 {
        println!(
            "{}",
            ctx.dim(&format!(
                "Older events were forgotten as agreed ({} of them): they were kept for {} days, and agreements still in force are kept.",
                f.events,
                s.replica().state().retention.days
            ))
        );
    }
    print_entries(ctx, &s, 0);
    Ok(())
}

/// Notes about author times, by event: dated before the event before it
/// (from the fold), or ahead of this device's clock. A time can't be
/// refused without a trusted clock, but it never passes silently.
fn time_notes(ctx: &Ctx, s: &Session) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut out: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let r = s.replica();
    for (seq, note) in r
        .state()
        .notes
        .iter()
        .cloned()
        .chain(r.future_notes(ctx.now_ms))
    {
        out.entry(seq).or_default().push(note);
    }
    out
}

fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let r = s.replica();
    let st = r.state();
    let me = r.role();
    let today = ctx.today();
    let lapsed: Vec<_> = st.lapsed(today);
    let due: Vec<_> = st
        .due_for_review(today)
        .into_iter()
        .filter(|v| v.status_on(today) == VersionStatus::InForce)
        .collect();
    // Requests beyond what both signed are never shown as waiting.
    let open_requests: Vec<_> = st
        .requests
        .iter()
        .filter(|q| q.by != me && q.is_open())
        .collect();
    let to_ack: Vec<_> = st
        .checkins
        .iter()
        .filter(|c| c.by != me && c.acked_at.is_none())
        .collect();
    let to_sign: Vec<_> = st
        .agreements
        .values()
        .filter_map(|a| a.pending())
        .filter(|v| !v.signatures.contains_key(&me))
        .collect();
    let safety = r.safety_number().map(|n| n.as_str().to_owned());
    let new_devices = partner_new_devices(r, ctx.home.devices_seen(r.keys(), r.space()));
    if ctx.json {
        println!(
            "{}",
            json!({
                "role": role_name(me),
                "space": r.space().to_hex(),
                "relay": s.relay().url(),
                "partner": r.partner().map(|p| p.fingerprint()),
                "safety_number": safety,
                "state_code": r.state_code(),
                "events": r.events().len(),
                "to_sign": to_sign.iter().map(|v| v.agreement.id.to_hex()).collect::<Vec<_>>(),
                "due_for_review": due.iter().map(|v| v.agreement.id.to_hex()).collect::<Vec<_>>(),
                "lapsed": lapsed.iter().map(|v| v.agreement.id.to_hex()).collect::<Vec<_>>(),
                "roles_confirmed": st.roles.agreed(),
                "sets_conditions": role_name(st.roles.sets),
                "open_requests": open_requests.iter().map(|q| q.seq).collect::<Vec<_>>(),
                "unacknowledged_checkins": to_ack.iter().map(|c| c.seq).collect::<Vec<_>>(),
                "new_partner_devices": new_devices.iter().map(|(id, seq, ms, active)| json!({
                    "id": hex::encode(id.0),
                    "added_at_seq": seq,
                    "added_at": when_iso(*ms),
                    "active": active,
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!("You are {}.", st.roles.words(me));
    match &safety {
        Some(n) => println!("Safety number: {n}"),
        None => println!("Your partner hasn't joined yet."),
    }
    println!(
        "State code: {} (equal codes on both devices mean the same history)",
        r.state_code()
    );
    let in_force = st
        .agreements
        .values()
        .filter(|a| a.in_force_on(today).is_some())
        .count();
    println!("Agreements in force: {in_force}");
    for (id, seq, ms, active) in &new_devices {
        let name = st.device_names.get(id).map(|(n, _)| n.as_str());
        println!("• {}", new_device_words(*seq, *ms, *active, name));
    }
    if !st.roles.agreed() && st.partners.len() == 2 {
        println!(
            "• Both of you confirm who sets the conditions before anything is proposed (troth roles)"
        );
    }
    for v in &to_sign {
        println!(
            "• Waiting for your signature: “{}” (troth agreement show {})",
            v.agreement.title,
            view::short(&v.agreement.id)
        );
    }
    for v in &due {
        println!(
            "• Time to review “{}”: renew, amend or retire it (troth agreement show {})",
            v.agreement.title,
            view::short(&v.agreement.id)
        );
    }
    for v in &lapsed {
        println!(
            "• “{}” lapsed: its review date ({}) passed without both of you renewing it. Look at it together: renew, amend or retire it (troth agreement show {})",
            v.agreement.title,
            v.agreement.review_on,
            view::short(&v.agreement.id)
        );
    }
    for q in &open_requests {
        println!(
            "• Your partner asked for a check-in (#{}): {}",
            q.seq, q.note
        );
    }
    for c in &to_ack {
        println!(
            "• New check-in from your partner (#{}): {} (troth ack {})",
            c.seq, c.text, c.seq
        );
    }
    Ok(())
}

fn sync(ctx: &Ctx) -> anyhow::Result<()> {
    let stored = ctx.stored()?;
    let relay = RelayClient::new(&stored.relay)?;
    let mut s = Session::new(stored.replica, relay);
    let r = {
        let _sp = ctx.spinner("Syncing…");
        match s.sync() {
            Ok(r) => r,
            Err(ClientError::NoSpace) => return Err(space_gone(s.replica())),
            Err(e) => return Err(e.into()),
        }
    };
    if r.accepted > 0 {
        ctx.save(&s)?;
    }
    if let Some(a) = r.alert {
        return Err(ClientError::Integrity(a).into());
    }
    // Forgetting on schedule, as after every sync (`Ctx::sync_session`).
    if s.keep_schedule(ctx.now_ms, &mut OsRng)? {
        ctx.save(&s)?;
    }
    let rep = s.replica();
    say(
        ctx,
        &format!(
            "Up to date: {} new event{}. State code {}.",
            r.accepted,
            if r.accepted == 1 { "" } else { "s" },
            rep.state_code()
        ),
        json!({ "new_events": r.accepted, "events": rep.events().len(), "state_code": rep.state_code() }),
    )
}

/// Prints timeline entries from `from` on: a line each, or a JSON object each.
fn print_entries(ctx: &Ctx, s: &Session, from: usize) {
    let st = s.replica().state();
    let me = me(s);
    let notes = time_notes(ctx, s);
    for e in st.timeline.iter().skip(from) {
        if ctx.json {
            println!("{}", view::entry_json_with(e, notes.get(&e.seq)));
        } else {
            println!(
                "#{:<4} {}  {:<12} {}",
                e.seq,
                ctx.dim(&when(e.at_ms)),
                view::who(me, e.by),
                e.what
            );
            for n in notes.get(&e.seq).into_iter().flatten() {
                println!("      {}", ctx.dim(&format!("note: {n}")));
            }
        }
    }
}

/// `troth sync --watch`: polls the relay and prints what arrives.
fn watch_loop(ctx: &Ctx, every: &str) -> anyhow::Result<()> {
    let every = parse_wait(every)?;
    let stored = ctx.stored()?;
    // A watch asks the relay again and again: one signed request opens a
    // session, and the rest carry a cheap MAC.
    let relay = RelayClient::new(&stored.relay)?.with_sessions();
    let mut s = Session::new(stored.replica, relay);
    let mut shown = s.replica().state().timeline.len();
    if !ctx.json {
        eprintln!("Watching for updates (Ctrl-C to stop)…");
    }
    loop {
        let r = match s.sync() {
            Ok(r) => r,
            Err(ClientError::NoSpace) => return Err(space_gone(s.replica())),
            Err(e) => return Err(e.into()),
        };
        if r.accepted > 0 {
            ctx.save(&s)?;
            print_entries(ctx, &s, shown);
            shown = s.replica().state().timeline.len();
            let _ = std::io::stdout().flush();
        }
        if let Some(a) = r.alert {
            return Err(ClientError::Integrity(a).into());
        }
        std::thread::sleep(every);
    }
}

fn verify(ctx: &Ctx) -> anyhow::Result<()> {
    // Opening the space re-verifies every stored event from the start.
    let stored = ctx.stored()?;
    let r = &stored.replica;
    let problems = &r.state().problems;
    say(
        ctx,
        &format!(
            "All {} events verify: signatures, chain and membership. State code {}.{}",
            r.events().len(),
            r.state_code(),
            if problems.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} could not be applied; see the timeline.)",
                    problems.len()
                )
            }
        ),
        json!({ "ok": true, "events": r.events().len(), "state_code": r.state_code(), "unapplied": problems.len() }),
    )
}

/// `troth delete-space --yes`: leaving is a signed event first
/// (`CloseSpace`, which the partner sees), then the relay is asked to delete
/// the space, then this device forgets it.
fn delete_space(ctx: &Ctx, yes: bool, comment: String) -> anyhow::Result<()> {
    if !yes {
        return Err(fail(
            "This deletes your shared space on the relay for both of you; it can't be undone. If that's what you want, run it again with --yes.",
        ));
    }
    let close = Content::CloseSpace { comment };
    close.validate()?;
    if ctx.offline {
        return Err(fail(
            "Closing the space is recorded in it first, so your partner sees it; that needs the relay. Nothing was changed; try again without --offline.",
        ));
    }
    let stored = ctx.stored()?;
    let relay = RelayClient::new(&stored.relay)?;
    let mut s = Session::new(stored.replica, relay);
    match s.sync() {
        Ok(r) => {
            if r.accepted > 0 {
                ctx.save(&s)?;
            }
            if let Some(a) = r.alert {
                return Err(ClientError::Integrity(a).into());
            }
        }
        // A partner's signed leave is already in this copy, and the relay
        // has deleted the space: forgetting it here is all that is left.
        Err(ClientError::NoSpace) if s.replica().state().closed.is_some() => {
            return forget_space(ctx, s.replica().space());
        }
        Err(ClientError::NoSpace) => return Err(space_gone(s.replica())),
        Err(e) => return Err(e.into()),
    }
    // Sign the leave first, unless one of you already did.
    if s.replica().state().closed.is_none() {
        let _sp = ctx.spinner("Recording that you closed the space…");
        s.post(&close, ctx.now_ms, &mut OsRng)?;
        ctx.save(&s)?;
    }
    let space = s.replica().space();
    let deleted = {
        let _sp = ctx.spinner("Deleting the space on the relay…");
        s.relay().delete_space(&s.replica().keys().device, space)
    };
    match deleted {
        // Already gone: the signed leave is in the log, so that is done too.
        Ok(()) | Err(ClientError::NoSpace) => {}
        Err(e) => {
            let why = e.to_string();
            return Err(fail_with(
                crate::ctx::exit_code(&e.into()),
                format!(
                    "Your closing is recorded in the space, but the relay didn't delete it yet ({why}) Run `troth delete-space --yes` again."
                ),
            ));
        }
    }
    forget_space(ctx, space)
}

/// Removes the local copy of a space that is closed and deleted on the relay.
/// `troth forget-space --yes`: removes the space from this device only.
/// Nothing is sent: the partner is not told, and the relay and the
/// partner's devices keep what they have. The keys stay.
fn forget_here(ctx: &Ctx, yes: bool) -> anyhow::Result<()> {
    if !ctx.home.has_space() {
        return Err(fail("There's no space on this device to forget."));
    }
    if !yes {
        return Err(fail(
            "This forgets the space on this device only; nothing is sent and your partner's devices keep what they have. To go ahead: troth forget-space --yes",
        ));
    }
    std::fs::remove_file(ctx.home.space_path()).map_err(|e| {
        fail(format!(
            "The space couldn't be removed from this device: {e}"
        ))
    })?;
    say(
        ctx,
        "The space is forgotten on this device. Nothing was sent: your partner isn't told, and their devices and the relay keep what they have. Your keys are still here.",
        json!({ "forgotten": true, "sent": false }),
    )
}

fn forget_space(ctx: &Ctx, space: troth_core::SpaceId) -> anyhow::Result<()> {
    std::fs::remove_file(ctx.home.space_path()).map_err(|e| {
        fail(format!(
            "The space is closed and deleted on the relay, but the local copy couldn't be removed: {e}"
        ))
    })?;
    say(
        ctx,
        "The space is closed for both of you, deleted on the relay and forgotten on this device. Your keys are still here.",
        json!({ "deleted": space.to_hex(), "closed": true }),
    )
}

fn consent_report(
    ctx: &Ctx,
    to: &str,
    duration: &str,
    until: Option<&str>,
    no_checkins: bool,
) -> anyhow::Result<()> {
    crate::report::parse_recipient(to)?;
    let today = ctx.today();
    let until = match until {
        Some(u) => Day::parse(u)
            .ok_or_else(|| fail(format!("“{u}” isn't a date; write it like 2027-01-15.")))?,
        None => today.plus(parse_days(duration)?),
    };
    if until < today {
        return Err(fail(
            "The consent would already have ended; choose a later day.",
        ));
    }
    let mut s = ctx.session()?;
    let scope = ReportScope {
        recipient: to.trim().to_owned(),
        include_checkins: !no_checkins,
        until,
    };
    let content = s.replica().consent(scope);
    s.post(&content, ctx.now_ms, &mut OsRng)?;
    ctx.save(&s)?;
    let both = s.replica().state().report_consented(to.trim(), today);
    say(
        ctx,
        &if both {
            format!(
                "You both agreed to share a report with {to} until {until}. Either of you can write it: troth report --to {to} --out FILE"
            )
        } else {
            format!(
                "Your consent is recorded until {until}. A report can be written once your partner agrees too."
            )
        },
        json!({ "recipient": to, "until": until.to_string(), "both": both }),
    )
}
