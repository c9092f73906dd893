//! Input normalisation: the one place where the text that goes onto a page is decided.
//!
//! Rules, applied in one left-to-right pass (so a prefix of the input normalises to a prefix of the
//! output, except for a `\r` cut off from its `\n`):
//! 1. `\r\n`, a lone `\r`, U+2028 and U+2029 are line breaks (treated as `\n`).
//! 2. `\t` becomes spaces up to the next tab stop; stops are every `tab_width` columns, a column being
//!    one character, counted from the last line break of the *input* (so the result does not depend on
//!    the font or its size).
//! 3. `\n` becomes what the [`NewlinePolicy`] says: kept, the marker character, or a space.
//! 4. Every other control character (Unicode general category Cc: U+0000–U+001F, U+007F–U+009F) becomes
//!    U+FFFD `�`, which is drawn (DejaVu has it) and so stays visible in both page and ground truth.
//! 5. Everything else, runs of spaces included, is kept as is. No Unicode normalisation (NFC) and no
//!    bidi reordering is done here: the text stays in logical order (right-to-left lines are reordered
//!    only when they are drawn, see `crate::bidi`).

use crate::spec::NewlinePolicy;

/// The character that replaces control characters.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Normalises `text` for a page (see the module docs for the rules).
pub fn normalize(text: &str, newline: NewlinePolicy, tab_width: u32) -> String {
    let tab = tab_width.max(1) as usize;
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut column = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let is_break = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                true
            }
            '\n' | '\u{2028}' | '\u{2029}' => true,
            _ => false,
        };
        if is_break {
            match newline {
                NewlinePolicy::Keep => out.push('\n'),
                NewlinePolicy::Marker(m) => out.push(m),
                NewlinePolicy::Space => out.push(' '),
            }
            column = 0;
        } else if c == '\t' {
            let n = tab - column % tab;
            out.extend(std::iter::repeat_n(' ', n));
            column += n;
        } else if c.is_control() {
            out.push(REPLACEMENT);
            column += 1;
        } else {
            out.push(c);
            column += 1;
        }
    }
    out
}
