//! `Report`: an error and its causes, each said once, as the binaries print them.

use std::error::Error;
use std::fmt;

/// Displays an error and the chain of its causes as `error: cause: cause`, leaving out a
/// cause whose text the line already ends with. Errors that put their cause in their own
/// message (so that a log line shows it) and libraries that wrap an error in one of the
/// same text (hyper's `tcp connect error` does) would otherwise say it twice.
///
/// ```
/// let error = std::io::Error::other("connection refused");
/// assert_eq!(config::Report(&error).to_string(), "connection refused");
/// ```
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !said.ends_with(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut texts = texts.iter().rev();
        let innermost = Layer(texts.next().expect("one text at least"), None);
        texts.fold(innermost, |inner, text| Layer(text, Some(Box::new(inner))))
    }

    // Reproduces "tcp connect error: tcp connect error: Connection refused": hyper wraps
    // the connect error in one of the same text, and the chain printed both.
    #[test]
    fn a_cause_of_the_same_text_as_its_wrapper_is_said_once() {
        let error = chain(&[
            "cannot connect to 127.0.0.1:1",
            "transport error",
            "tcp connect error",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            Report(&error).to_string(),
            "cannot connect to 127.0.0.1:1: transport error: tcp connect error: \
             Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_not_repeated() {
        let error = chain(&[
            "cannot serve on 0.0.0.0:8081: Address in use (os error 98)",
            "Address in use (os error 98)",
        ]);
        assert_eq!(
            Report(&error).to_string(),
            "cannot serve on 0.0.0.0:8081: Address in use (os error 98)"
        );
        let alone = chain(&["no quota files"]);
        assert_eq!(Report(&alone).to_string(), "no quota files");
    }
}
