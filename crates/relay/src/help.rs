//! Words and links of help that an operator sets per language (issue 17,
//! item 2): shown by the web client's private moment before a rule about
//! whereabouts or the phone. Every client fetches them once when the app
//! opens, whether or not the moment is ever shown, so fetching says nothing
//! about it. Without any, the client keeps its neutral default (no hotline
//! is claimed).

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Most languages an operator may set.
pub const MAX_LANGUAGES: usize = 32;
/// Most links per language.
pub const MAX_LINKS: usize = 5;
/// Longest words, in characters.
pub const MAX_WORDS: usize = 1000;
/// Longest link label, in characters.
pub const MAX_LABEL: usize = 100;
/// Longest link address, in characters.
pub const MAX_URL: usize = 300;

/// One link: what it says and where it goes (`https:` or `tel:`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HelpLink {
    /// What the link says, e.g. "National support line".
    pub label: String,
    /// `https://…` or `tel:…`.
    pub url: String,
}

/// The help for one language (`[[help]]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Help {
    /// A language tag as browsers send it: `en`, `fr-CA`.
    pub lang: String,
    /// A few sentences of help in that language.
    pub words: String,
    /// Where to find help.
    #[serde(default)]
    pub links: Vec<HelpLink>,
}

fn invalid(why: String) -> ConfigError {
    ConfigError::Invalid {
        setting: "help (config file)".into(),
        why,
    }
}

fn plain(what: &str, lang: &str, s: &str, max: usize) -> Result<(), ConfigError> {
    if s.trim().is_empty() {
        return Err(invalid(format!("has an empty {what} for `{lang}`")));
    }
    if s.chars().count() > max {
        return Err(invalid(format!(
            "has {what} for `{lang}` longer than {max} characters"
        )));
    }
    // Words only: no control characters, no bidi overrides a reader can't see.
    let hidden = |c: char| {
        (c.is_control() && c != '\n')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if s.chars().any(hidden) {
        return Err(invalid(format!(
            "has hidden characters in its {what} for `{lang}`"
        )));
    }
    Ok(())
}

fn url_ok(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .map(|r| (r, false))
        .or_else(|| u.strip_prefix("tel:").map(|r| (r, true)));
    match rest {
        Some((r, false)) => {
            !r.is_empty() && !r.starts_with('/') && r.chars().all(|c| c.is_ascii_graphic())
        }
        Some((r, true)) => {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'))
        }
        None => false,
    }
}

/// Checks an operator's help: language tags, lengths, links (`https:` or
/// `tel:` only), one entry per language.
pub fn check(list: &[Help]) -> Result<(), ConfigError> {
    if list.len() > MAX_LANGUAGES {
        return Err(invalid(format!("has more than {MAX_LANGUAGES} languages")));
    }
    let mut seen = Vec::new();
    for h in list {
        let tag_ok = !h.lang.is_empty()
            && h.lang.len() <= 35
            && h.lang.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !tag_ok {
            return Err(invalid(format!(
                "has `{}`, not a language tag like en or fr-CA",
                h.lang
            )));
        }
        let lower = h.lang.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(invalid(format!("names `{}` twice", h.lang)));
        }
        seen.push(lower);
        plain("words", &h.lang, &h.words, MAX_WORDS)?;
        if h.links.len() > MAX_LINKS {
            return Err(invalid(format!(
                "has more than {MAX_LINKS} links for `{}`",
                h.lang
            )));
        }
        for l in &h.links {
            plain("link label", &h.lang, &l.label, MAX_LABEL)?;
            if l.url.len() > MAX_URL || !url_ok(&l.url) {
                return Err(invalid(format!(
                    "has the link `{}` for `{}`: links must be https://… or tel:… (at most {MAX_URL} characters)",
                    l.url, h.lang
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(lang: &str, url: &str) -> Help {
        Help {
            lang: lang.into(),
            words: "Vous n'êtes pas seul·e.".into(),
            links: vec![HelpLink {
                label: "Ligne d'écoute".into(),
                url: url.into(),
            }],
        }
    }

    #[test]
    fn good_help_passes_and_bad_help_is_named() {
        assert!(
            check(&[
                help("fr-CA", "https://example.org/aide"),
                help("en", "tel:+1 800 555 0100")
            ])
            .is_ok()
        );
        for (bad, word) in [
            (vec![help("fr CA", "https://example.org")], "language tag"),
            (vec![help("en", "javascript:alert(1)")], "https://"),
            (vec![help("en", "http://example.org")], "https://"),
            (vec![help("en", "tel:call-me-maybe")], "tel:"),
            (
                vec![help("en", "https://a"), help("EN", "https://b")],
                "twice",
            ),
        ] {
            let e = check(&bad).expect_err("refused").to_string();
            assert!(e.contains(word), "{e}");
            assert!(e.contains("help"), "{e}");
        }
        let mut h = help("en", "https://example.org");
        h.words = "a\u{202e}b".into();
        assert!(
            check(&[h])
                .expect_err("hidden characters")
                .to_string()
                .contains("hidden")
        );
        let mut h = help("en", "https://example.org");
        h.words = "x".repeat(MAX_WORDS + 1);
        assert!(check(&[h]).is_err());
    }
}
