//! The DSL's tokens: words and symbols with the 1-based character column each starts at,
//! and the error constructors that point at such a column.

use crate::policy::rules::DslError;

/// An error pointing at `column`.
pub(super) fn err(column: usize, message: impl Into<String>) -> DslError {
    let message = message.into();
    DslError { column, message }
}

/// [`err`] as a result, for `return fail(...)`.
pub(super) fn fail<T>(column: usize, message: impl Into<String>) -> Result<T, DslError> {
    Err(err(column, message))
}

/// Characters that end a word and stand alone (or pair with a following `=`). Anything
/// else that is not whitespace is a word character, so host patterns (`[::1]:8443`),
/// times (`09:00-17:00`) and numbers stay one token each, and the parser, which knows
/// what it expects, validates them.
fn is_symbol(c: char) -> bool {
    matches!(c, '(' | ')' | ',' | '%' | '@' | '<' | '>' | '=' | '!' | '#')
}

/// A word or symbol, and the 1-based character column it starts at.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token<'a> {
    pub(super) text: &'a str,
    pub(super) col: usize,
}

impl Token<'_> {
    /// Keywords and symbols alike compare case-insensitively.
    pub(super) fn is(&self, keyword: &str) -> bool {
        self.text.eq_ignore_ascii_case(keyword)
    }

    /// A name, number, keyword or pattern, rather than a symbol.
    pub(super) fn is_word(&self) -> bool {
        !self.text.starts_with(is_symbol)
    }
}

/// Splits `text` into tokens; `#` comments and whitespace are dropped.
pub(super) fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().zip(1usize..).peekable();
    while let Some(((start, c), col)) = chars.next() {
        let mut end = start + c.len_utf8();
        if c == '#' {
            while chars.next_if(|((_, c), _)| *c != '\n').is_some() {}
            continue;
        } else if c.is_whitespace() {
            continue;
        } else if is_symbol(c) {
            // `>=`, `<=`, `==` and `!=` are the only two-character symbols.
            let pairs = matches!(c, '<' | '>' | '=' | '!');
            end += usize::from(pairs && chars.next_if(|((_, n), _)| *n == '=').is_some());
        } else {
            while let Some(((at, n), _)) = chars.next_if(|((_, n), _)| !ends_word(*n)) {
                end = at + n.len_utf8();
            }
        }
        let text = &text[start..end];
        tokens.push(Token { text, col });
    }
    tokens
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || is_symbol(c)
}
