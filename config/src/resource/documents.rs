//! `documents`: the documents of one quota file, each either in the reference format or a
//! `kind: RateLimit` resource, told apart by a top-level `kind` key.
//!
//! serde-saphyr reads every document of a text as one type, so a file that holds both is
//! cut into its documents first. Each piece is padded with the newlines before it, so lines
//! and columns in errors stay those of the whole file.

use serde_saphyr::Spanned;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::error::ConfigError;
use crate::file::{self, DomainFile};
use crate::load::LoadOptions;
use crate::resource::dto::ResourceDto;
use crate::resource::model::RateLimitResource;
use crate::resource::validate::RulePlace;
use crate::resource::{descriptor, validate};

/// One non-empty document of a quota file.
pub(crate) enum Document {
    /// The reference format (with our extensions).
    Quota(Spanned<DomainFile>),
    /// A `kind: RateLimit` resource, the quota document it serves as, and where each of
    /// its rules is.
    RateLimit {
        resource: RateLimitResource,
        served: Spanned<DomainFile>,
        places: Vec<RulePlace>,
    },
}

/// Parses and validates every non-empty document of `text` (named `file` in errors), in
/// order. Reference-format documents are only parsed here; the tree validates them.
pub(crate) fn documents(
    file: &str,
    text: &str,
    load: &LoadOptions,
) -> Result<Vec<Document>, ConfigError> {
    let Some(pieces) = pieces(text) else {
        // No resource: the file is read whole, exactly as before resources existed.
        let docs = file::parse_documents(file, text, load)?;
        return Ok(docs.into_iter().map(Document::Quota).collect());
    };
    let mut documents = Vec::with_capacity(pieces.len());
    for piece in pieces {
        if !piece.has_kind {
            let docs = file::parse_documents(file, &piece.text, load)?;
            documents.extend(docs.into_iter().map(Document::Quota));
            continue;
        }
        let options = serde_saphyr::options! {
            with_snippet: false,
            budget: Some(crate::budget::yaml_budget(load)),
        };
        let docs: Vec<Spanned<ResourceDto>> =
            serde_saphyr::from_str_multiple_with_options(&piece.text, options)
                .map_err(|err| crate::yaml_error::convert(file, &piece.text, &err, load))?;
        for doc in docs {
            let at = doc.referenced;
            let valid = validate::resource(file, doc)?;
            let served = descriptor::domain_document(&valid, at);
            documents.push(Document::RateLimit {
                resource: valid.resource,
                served,
                places: valid.places,
            });
        }
    }
    Ok(documents)
}

/// One document's lines, padded to its place in the file.
struct Piece {
    text: String,
    has_kind: bool,
}

/// The documents of `text`, when at least one has a top-level `kind` key; `None` when
/// none has, or when `text` is not valid YAML (the whole-file parse then reports it).
fn pieces(text: &str) -> Option<Vec<Piece>> {
    // (first line, 1-based; has a top-level `kind`)
    let mut starts: Vec<(usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut root_is_map = false;
    let mut key_next = true;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        let at_root = depth == 1;
        match event {
            Event::DocumentStart(..) => {
                // The first document also takes any comments before it.
                let line = if starts.is_empty() {
                    1
                } else {
                    span.start.line()
                };
                starts.push((line, false));
                depth = 0;
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 0 {
                    root_is_map = matches!(event, Event::MappingStart(..));
                    key_next = true;
                } else if at_root {
                    key_next = !key_next;
                }
                depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            Event::Scalar(value, ..) if at_root => {
                if root_is_map
                    && key_next
                    && value == "kind"
                    && let Some(last) = starts.last_mut()
                {
                    last.1 = true;
                }
                key_next = !key_next;
            }
            Event::Alias(..) if at_root => key_next = !key_next,
            _ => {}
        }
    }
    if !starts.iter().any(|&(_, has_kind)| has_kind) {
        return None;
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut pieces = Vec::with_capacity(starts.len());
    for (i, &(line, has_kind)) in starts.iter().enumerate() {
        let first = line.saturating_sub(1).min(lines.len());
        let end = starts.get(i + 1).map_or(lines.len(), |&(next, _)| {
            next.saturating_sub(1).min(lines.len())
        });
        let mut piece = "\n".repeat(first);
        piece.extend(lines[first..end.max(first)].iter().copied());
        pieces.push(Piece {
            text: piece,
            has_kind,
        });
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_each_document_on_its_own_lines() {
        let text = "# head\ndomain: a\n---\nkind: RateLimit\nspec: {}\n---\n# tail\ndomain: b\n";
        let pieces = pieces(text).expect("a document has kind");
        let kinds: Vec<bool> = pieces.iter().map(|p| p.has_kind).collect();
        assert_eq!(kinds, [false, true, false]);
        assert_eq!(pieces[0].text, "# head\ndomain: a\n");
        assert_eq!(pieces[1].text, "\n\n---\nkind: RateLimit\nspec: {}\n");
        assert_eq!(pieces[2].text, "\n\n\n\n\n---\n# tail\ndomain: b\n");
    }

    #[test]
    fn only_a_top_level_kind_key_counts() {
        assert!(pieces("domain: a\ndescriptors:\n  - key: kind\n    kind: x\n").is_none());
        assert!(pieces("domain: kind\n").is_none());
        assert!(pieces("- kind\n").is_none());
        assert!(pieces("metadata: {kind: a}\nkind: RateLimit\n").is_some());
    }

    #[test]
    fn text_that_is_not_yaml_is_left_to_the_whole_file_parse() {
        assert!(pieces("kind: [unclosed\n").is_none());
    }
}
