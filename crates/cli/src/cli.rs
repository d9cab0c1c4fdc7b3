//! The command line: every command, flag and help text (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Troth: boundary agreements for a couple rebuilding trust, end-to-end encrypted.
///
/// The partner who was hurt sets the conditions; both co-sign them; the
/// partner rebuilding trust keeps them in the open with check-ins. The relay
/// only ever sees ciphertext.
#[derive(Parser, Debug)]
#[command(
    name = "troth",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 could not be done, 2 usage, 3 key or passphrase, \
4 relay, 5 integrity, 6 pairing. See docs/CLI.md."
)]
pub struct Cli {
    /// The key store folder [default: your data folder's `troth`]
    #[arg(
        long,
        global = true,
        env = "TROTH_HOME",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub home: Option<PathBuf>,
    /// Read the passphrase from the first line of FILE (or set TROTH_PASSPHRASE)
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print listings as JSON (stable shapes, see docs/CLI.md)
    #[arg(long, global = true)]
    pub json: bool,
    /// Don't contact the relay: show what this device verified before
    #[arg(long, global = true)]
    pub offline: bool,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create your identity and this device's keys, protected by a passphrase
    Init,
    /// Show your identity's fingerprint (or this device's age recipient)
    Id {
        /// Print only this device's `age1…` recipient
        #[arg(long)]
        age_recipient: bool,
    },
    /// Back up, restore, rotate and revoke keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Every device in your space, yours and your partner's, and the new ones
    #[command(subcommand, alias = "devices")]
    Device(DeviceCommand),
    /// Pair with your partner over a one-time code
    #[command(subcommand)]
    Pair(PairCommand),
    /// Who sets the conditions: where you both stand, and your answer (both confirm before anything is proposed)
    Roles {
        /// Your answer (without one: where you both stand)
        #[command(subcommand)]
        answer: Option<RolesCommand>,
    },
    /// How long things are kept before both devices forget them (shorten alone; keeping longer takes both)
    Retention {
        /// What to change (without one: how long things are kept now)
        #[command(subcommand)]
        change: Option<RetentionCommand>,
    },
    /// Propose, read, sign and review boundary agreements
    #[command(subcommand, alias = "agreements")]
    Agreement(AgreementCommand),
    /// Check an exported agreement certificate (no relay, no keys needed)
    VerifyCertificate {
        /// The certificate file (from `troth agreement export`)
        file: PathBuf,
    },
    /// Post a check-in: where you are, or anything worth saying
    Checkin {
        /// The words, e.g. "at the gym until 7"
        text: String,
        /// Attach a place, this time only
        #[arg(long)]
        place: Option<String>,
        /// The request this answers (its number in the timeline) [default: the latest open one]
        #[arg(long, value_name = "N", conflicts_with = "no_answer")]
        answers: Option<u64>,
        /// Don't answer any open request with this check-in
        #[arg(long)]
        no_answer: bool,
    },
    /// Ask your partner for a check-in
    RequestCheckin {
        /// A gentle note
        #[arg(default_value = "Could you check in when you can?")]
        note: String,
    },
    /// Answer your partner's request another way: talk first, bring it to your therapist, or say it doesn't feel right
    ///
    /// These are normal answers, shown calmly to both of you and never counted as a failure.
    Answer {
        /// talk ("Not now — can we talk about it?"), therapist ("Let's bring this to our
        /// therapist") or not-comfortable ("I'm not comfortable with this")
        #[arg(value_parser = ["talk", "therapist", "not-comfortable"])]
        answer: String,
        /// The request's number in the timeline [default: your partner's latest open request]
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Anything else you wish to say
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Acknowledge your partner's check-in ("seen, thank you")
    Ack {
        /// The check-in's number in the timeline
        n: u64,
    },
    /// The phone-access log: a request, and what happened, noted for both of you
    #[command(subcommand)]
    Phone(PhoneCommand),
    /// Everything that happened, in order, with who did what and when
    Timeline,
    /// Where things stand: partner, safety number, what needs you
    Status,
    /// Fetch and verify what's new from the relay
    Sync {
        /// Keep watching: print each new event as it arrives (Ctrl-C to stop)
        #[arg(long)]
        watch: bool,
        /// How often to look when watching, e.g. 5s
        #[arg(
            long,
            default_value = "3s",
            value_name = "DURATION",
            requires = "watch"
        )]
        every: String,
    },
    /// Re-verify the whole local history
    Verify,
    /// Agree to share a report with a therapist (both partners must)
    ConsentReport {
        /// The therapist's age recipient (`age1…`)
        #[arg(long, value_name = "AGE1")]
        to: String,
        /// How long the consent lasts, e.g. 30d or 4w
        #[arg(
            long = "for",
            value_name = "DURATION",
            default_value = "30d",
            conflicts_with = "until"
        )]
        duration: String,
        /// The last day the consent lasts (YYYY-MM-DD)
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Share agreements only, not check-ins
        #[arg(long)]
        no_checkins: bool,
    },
    /// Write a therapist report, encrypted to their age key (needs both partners' consent)
    Report {
        /// The therapist's age recipient (`age1…`)
        #[arg(long, value_name = "AGE1")]
        to: String,
        /// Where to write it (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Close the shared space for both of you (recorded first), delete it on the relay, forget it here
    DeleteSpace {
        /// Yes, delete it: the relay forgets every event, and neither of you can sync it again
        #[arg(long)]
        yes: bool,
        /// A few words your partner sees with the closing
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Forget the space on this device only: nothing is sent, your partner isn't told, and the space stays for them
    ForgetSpace {
        /// Yes, forget it here (your partner's devices and the relay keep what they have)
        #[arg(long)]
        yes: bool,
    },
    /// The web client this troth carries: serve it here, or check a server's copy against it
    #[command(subcommand)]
    Web(WebCommand),
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `troth roles …`
#[derive(Subcommand, Debug)]
pub enum RolesCommand {
    /// Confirm that the partner shown as setting the conditions does
    Confirm,
    /// Ask for the roles the other way round (once confirmed, they swap when you have both asked; every rule keeps asking the same person)
    Swap,
    /// Ask to end the roles: nobody sets the conditions once you both have, and nothing new can be proposed
    End,
    /// "No — we should talk about this first": nothing can be proposed until you both confirm (it also answers a wish to swap)
    Decline {
        /// A few words your partner sees with your answer
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// `troth retention …`
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Keep things for fewer days (your choice alone; it applies at once)
    Shorten {
        /// How many days (30 to 3650)
        days: u32,
    },
    /// Propose keeping things for more days (it applies once your partner agrees)
    Propose {
        /// How many days (30 to 3650)
        days: u32,
    },
    /// Agree to your partner's proposal to keep things longer
    Agree,
}

/// `troth web …`
#[derive(Subcommand, Debug)]
pub enum WebCommand {
    /// Compare every file a server (a relay, or any site) serves with the web client this troth carries
    Verify {
        /// The address the app is opened from, e.g. https://troth.example.org
        url: String,
    },
    /// Show this troth's web client: version and bundle hash (`--json`: its release.json)
    Release,
    /// Serve the web client this troth carries on this computer, talking to a relay you choose
    Serve {
        /// The relay the app talks to; its operator must allow this app's address (--web-origin)
        #[arg(long, value_name = "URL")]
        relay: String,
        /// Where to serve the app (this computer only by default)
        #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
        listen: String,
    },
}

/// `troth device …`
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Both partners' devices: whose, when added, active or revoked
    List,
    /// Note on this device that you have seen your partner's new devices
    /// (`troth status` stops mentioning them)
    Ack,
    /// Add a new device of your own: shows a one-time code (the first line of output) and waits for it
    Link {
        /// Give the new device only the current key, not the keys of earlier history
        #[arg(long)]
        no_history: bool,
        /// How long to wait for the new device, e.g. 10m
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        timeout: String,
    },
    /// On a new device (after `troth init`): join your space with the code your other device shows
    Join {
        /// The code, e.g. 7-crystal-orbit
        code: String,
        /// The relay's address
        #[arg(long, env = "TROTH_RELAY", hide_env_values = true, value_name = "URL")]
        relay: String,
        /// How long to wait, e.g. 2m
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        timeout: String,
    },
    /// Name one of your devices (this one by default), e.g. "Sam's laptop";
    /// both of you see the name
    Name {
        /// The name (at most 60 characters)
        name: String,
        /// Another of your devices (the start of its id, from `troth device list`)
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
}

/// `troth key …`
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a backup of your keys (asks your current passphrase again; your partner sees it)
    Export {
        /// Where to write it (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The backup's passphrase, from the first line of FILE (or set TROTH_NEW_PASSPHRASE)
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Restore keys from a backup into an empty key store
    Import {
        /// The backup file
        file: PathBuf,
    },
    /// New keys for this device, certified by your identity; the old ones are revoked
    Rotate,
    /// Revoke one of your devices: it reads nothing new from now on
    Revoke {
        /// The device (the start of its id, from `troth key devices`)
        device: String,
    },
    /// Save a recovery kit: a device of yours that lives in a passphrase-protected file (your partner is told)
    RecoveryKit {
        /// Where to write it (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The kit's passphrase, from the first line of FILE (or set TROTH_NEW_PASSPHRASE)
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// On a new device with an empty key store: get back into your space from a recovery kit
    Recover {
        /// The kit file
        file: PathBuf,
        /// A lost device to revoke (the start of its id; repeat for several) [default: your only other device]
        #[arg(long, value_name = "DEVICE")]
        revoke: Vec<String>,
    },
    /// List the devices in your space
    Devices,
}

/// `troth phone …`: an acknowledged log, never remote access to a phone.
#[derive(Subcommand, Debug)]
pub enum PhoneCommand {
    /// Note that you'd like to see your partner's phone
    Ask {
        /// A note
        #[arg(default_value = "")]
        note: String,
    },
    /// Note that you showed your phone (answers the latest open request)
    Shown {
        /// A note
        #[arg(default_value = "")]
        note: String,
    },
    /// Note that you'd rather show it later, with a kind word why
    Later {
        /// A note, e.g. "after dinner, please"
        #[arg(default_value = "")]
        note: String,
    },
}

/// `troth pair …`
#[derive(Subcommand, Debug)]
pub enum PairCommand {
    /// Create the space and show a one-time code for your partner (first line of output)
    Start {
        /// The relay's address
        #[arg(long, env = "TROTH_RELAY", hide_env_values = true, value_name = "URL")]
        relay: String,
        /// Your role: `leading` (the partner who was hurt) or `rebuilding`
        #[arg(long, value_enum, default_value_t = RoleArg::Leading)]
        role: RoleArg,
        /// How long to wait for your partner, e.g. 10m
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        timeout: String,
    },
    /// Join your partner's space with the code they show you
    Join {
        /// The code, e.g. 7-crystal-orbit
        code: String,
        /// The relay's address
        #[arg(long, env = "TROTH_RELAY", hide_env_values = true, value_name = "URL")]
        relay: String,
        /// How long to wait, e.g. 2m
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        timeout: String,
    },
}

/// A partner's role, as typed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    /// The partner who was hurt, who sets the conditions
    Leading,
    /// The partner rebuilding trust
    Rebuilding,
}

/// When to review an agreement.
#[derive(Args, Debug, Clone)]
pub struct Review {
    /// Review after this long, e.g. 30d, 6w [default: 30d]
    #[arg(long, value_name = "DURATION", conflicts_with = "review_on")]
    pub review_in: Option<String>,
    /// Review on this day (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub review_on: Option<String>,
}

/// Limits on asking that an agreement carries (signed with its words).
/// Without these flags a template's own limits apply (whereabouts: at most 3
/// check-in requests a day; phone: at most 1 request a week).
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// At most N check-in requests a day under a whereabouts rule
    #[arg(long, value_name = "N")]
    pub max_requests_per_day: Option<u8>,
    /// At most N requests to see the phone a week under a phone rule
    #[arg(long, value_name = "N")]
    pub max_phone_per_week: Option<u8>,
    /// No requests between these times, e.g. 22:00-07:00
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub quiet_hours: Option<String>,
    /// The quiet hours' time zone as an offset from UTC, e.g. +01:00 [default: +00:00]
    #[arg(
        long,
        value_name = "±HH:MM",
        requires = "quiet_hours",
        allow_hyphen_values = true
    )]
    pub utc_offset: Option<String>,
}

/// `troth agreement …`
#[derive(Subcommand, Debug)]
pub enum AgreementCommand {
    /// Propose an agreement (you sign it as you propose it)
    Propose {
        /// Start from a template: whereabouts, phone, bed, no-contact, therapy, honesty
        #[arg(long, value_name = "NAME")]
        template: Option<String>,
        /// A title [default: the template's]
        #[arg(long)]
        title: Option<String>,
        /// The words of a rule (repeat for several); replaces the template's words
        #[arg(long, value_name = "TEXT")]
        text: Vec<String>,
        /// When to review it
        #[command(flatten)]
        review: Review,
        /// Limits on asking under it
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List agreements and where each stands
    List,
    /// Show an agreement's words, versions and signatures
    Show {
        /// The agreement (the start of its id)
        id: String,
    },
    /// Co-sign the version waiting for your signature, as this device showed it
    #[command(disable_version_flag = true)]
    Sign {
        /// The agreement
        id: String,
        /// The version you read (see `troth agreement show`); refused unless it is the one waiting
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Ask for a change before signing
    RequestChange {
        /// The agreement
        id: String,
        /// What you'd like changed
        #[arg(long)]
        comment: String,
    },
    /// Decline the version waiting for your signature
    Decline {
        /// The agreement
        id: String,
        /// Why, if you wish to say
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Propose new words for an agreement (a new version both sign)
    Amend {
        /// The agreement
        id: String,
        /// A new title
        #[arg(long)]
        title: Option<String>,
        /// New words for the rules (repeat for several)
        #[arg(long, value_name = "TEXT")]
        text: Vec<String>,
        /// When to review it
        #[command(flatten)]
        review: Review,
    },
    /// Keep an agreement as it is until a new review date (a new version both sign)
    Renew {
        /// The agreement
        id: String,
        /// When to review it next
        #[command(flatten)]
        review: Review,
    },
    /// Ask to retire an agreement (retired once both have asked)
    Retire {
        /// The agreement
        id: String,
    },
    /// Withdraw your consent, at any time, alone
    Withdraw {
        /// The agreement
        id: String,
        /// Anything you wish to say
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Write the co-signed agreement as a certificate anyone can verify offline
    Export {
        /// The agreement
        id: String,
        /// Where to write it (never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Where a certificate's agreement stands today in your space's log (in force, withdrawn, …)
    Status {
        /// The certificate file (from `troth agreement export`)
        file: PathBuf,
    },
    /// List the templates
    Templates,
}
