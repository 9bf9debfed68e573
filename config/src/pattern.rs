//! [`Pattern`]: a descriptor value with `*` wildcards, each matching any run of characters
//! (including none). No other character is special.

/// A wildcard value such as `files/*`, `*.example.com` or `svc*ep*rpc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern(String);

impl Pattern {
    pub(crate) fn new(pattern: String) -> Self {
        Self(pattern)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern. No allocation; O(pattern × text) at worst.
    pub(crate) fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

/// Iterative `*` matcher that backtracks only to the most recent star: a later star can
/// absorb anything an earlier one could, so older choices never need revisiting.
///
/// Bytes rather than chars are safe for UTF-8: `*` is ASCII, and a literal byte run that
/// starts with a leading byte can never match from the middle of a character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // (pattern index just after the last star, text index that star's match ends at)
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                backtrack = Some((p, t));
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last star swallow one more byte and retry.
                Some((after_star, star_end)) => {
                    p = after_star;
                    t = star_end + 1;
                    backtrack = Some((after_star, star_end + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Pattern::new(pattern.to_owned()).matches(text)
    }

    #[test]
    fn a_star_at_the_end_matches_any_suffix() {
        assert!(matches("foo*", "foo"));
        assert!(matches("foo*", "foo1"));
        assert!(!matches("foo*", "fo"));
        assert!(!matches("foo*", "bar"));
    }

    #[test]
    fn a_star_at_the_start_matches_any_prefix() {
        assert!(matches("*.example.com", "api.example.com"));
        assert!(matches("*.example.com", ".example.com"));
        assert!(!matches("*.example.com", "example.com"));
    }

    #[test]
    fn a_star_in_the_middle_matches_any_infix() {
        assert!(matches("bar*b", "barab"));
        assert!(matches("bar*b", "barb"));
        assert!(!matches("bar*b", "barba"));
    }

    #[test]
    fn several_stars_each_match_any_run() {
        assert!(matches("svc*ep*rpc", "svc-a-ep-b-rpc"));
        assert!(matches("svc*ep*rpc", "svceprpc"));
        assert!(!matches("svc*ep*rpc", "svc-rpc-ep"));
        assert!(matches("*a*a*", "banana"));
        assert!(matches("**", ""));
        assert!(matches("*", "anything"));
    }

    /// The definition, by recursion: `*` matches nothing, or one more character.
    fn naive(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => {
                naive(rest, text) || (!text.is_empty() && naive(pattern, &text[1..]))
            }
            Some((c, rest)) => text.first() == Some(c) && naive(rest, &text[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn the_matcher_agrees_with_the_recursive_definition(
            pattern in "[ab*é]{0,8}",
            text in "[abé]{0,10}",
        ) {
            let chars = |s: &str| s.chars().collect::<Vec<_>>();
            proptest::prop_assert_eq!(
                matches(&pattern, &text),
                naive(&chars(&pattern), &chars(&text))
            );
        }
    }

    #[test]
    fn multibyte_text_matches_by_whole_characters() {
        assert!(matches("ü*ß", "ü日本ß"));
        assert!(matches("*日*", "こんにちは日本"));
        assert!(!matches("*日", "日本"));
    }
}
