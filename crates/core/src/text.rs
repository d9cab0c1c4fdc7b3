//! Words people sign and read: refusing characters that change how text
//! reads without being seen.
//!
//! A partner signs what their screen shows. Bidirectional controls (U+202E
//! turns "pay 100" into "001 yap" on screen while the signed bytes say
//! otherwise), zero-width and other invisible format characters, and control
//! characters can make the words shown differ from the words signed, or make
//! two different agreements look the same. [`check_text`] refuses them in
//! every title, rule, parameter, comment, note, check-in and place: the
//! composers refuse before anything is signed, and the fold refuses content
//! from a modified client that carries them.
//!
//! One exception keeps ordinary writing working: a ZERO WIDTH JOINER between
//! two emoji (as in family and profession emoji) is allowed.

use thiserror::Error;

/// Text that contains a character that can hide or reorder what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TextError {
    /// An invisible or direction-changing character.
    #[error(
        "The text contains an invisible character (U+{:04X}) that can change how it reads. \
         Please remove it and try again.",
        u32::from(*.0)
    )]
    Invisible(char),
    /// A control character (other than a line break or a tab).
    #[error(
        "The text contains a control character (U+{:04X}) that can't be shown. \
         Please remove it and try again.",
        u32::from(*.0)
    )]
    Control(char),
}

/// Checks that `s` holds nothing that changes how it reads without being seen.
pub fn check_text(s: &str) -> Result<(), TextError> {
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_control() && c != '\n' && c != '\t' {
            return Err(TextError::Control(c));
        }
        if c == '\u{200D}' {
            let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
            let after = chars.get(i + 1).copied();
            if before.is_some_and(emoji_part) && after.is_some_and(is_emoji) {
                continue;
            }
            return Err(TextError::Invisible(c));
        }
        if is_invisible(c) {
            return Err(TextError::Invisible(c));
        }
    }
    Ok(())
}

/// Characters of general category Cf (format), plus the invisible
/// characters outside it that are known to be abused to hide text (variation
/// selectors only pick a glyph's shape and are allowed): the
/// combining grapheme joiner, the Hangul fillers, the Khmer and Mongolian
/// invisible vowels and separators, the line and paragraph separators, and
/// the Braille blank.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x2800
            | 0x3164
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F
    )
}

/// Pictographic characters that take part in emoji ZWJ sequences.
fn is_emoji(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139
            | 0x2194..=0x21AA
            | 0x231A..=0x23FF
            | 0x24C2
            | 0x25AA..=0x27BF
            | 0x2934..=0x2935
            | 0x2B05..=0x2B55
            | 0x3030 | 0x303D | 0x3297 | 0x3299
            | 0x1F000..=0x1FAFF
    )
}

/// What may stand before a joiner in an emoji sequence: an emoji, the emoji
/// presentation selector (U+FE0F) or a skin-tone modifier (inside the emoji
/// range).
fn emoji_part(c: char) -> bool {
    c == '\u{FE0F}' || is_emoji(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes() {
        for s in [
            "at the gym until 7",
            "café · naïve — “quoted” 🙂",
            "line one\nline two\ttabbed",
            "שלום עולם and English", // right-to-left script without overrides
            "مرحبا",
            "👨\u{200D}👩\u{200D}👧 family",
            "🏳\u{FE0F}\u{200D}🌈",
            "👩🏽\u{200D}💻",
            "",
        ] {
            assert_eq!(check_text(s), Ok(()), "{s:?}");
        }
    }

    #[test]
    fn hidden_characters_are_refused() {
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200B}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{FEFF}',
            '\u{2060}',
            '\u{00AD}',
            '\u{034F}',
            '\u{3164}',
            '\u{E0041}',
            '\u{2028}',
            '\u{180E}',
        ] {
            let s = format!("pay 100{c} now");
            assert_eq!(check_text(&s), Err(TextError::Invisible(c)), "{c:?}");
        }
        for c in [
            '\u{0000}', '\u{0007}', '\u{001B}', '\u{007F}', '\r', '\u{0085}',
        ] {
            let s = format!("a{c}b");
            assert_eq!(check_text(&s), Err(TextError::Control(c)), "{c:?}");
        }
        // A joiner between letters, or at either end, hides nothing useful.
        for s in [
            "a\u{200D}b",
            "\u{200D}🙂",
            "🙂\u{200D}",
            "🙂\u{200D}a",
            "a\u{200D}🙂",
        ] {
            assert_eq!(
                check_text(s),
                Err(TextError::Invisible('\u{200D}')),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_message_names_the_character() {
        let e = check_text("x\u{202E}y").expect_err("refused");
        assert!(e.to_string().contains("U+202E"), "{e}");
    }
}
