//! Why a policy did not load, and where: [`PolicyError`], built either from the YAML
//! parser's own location or (for what is wrong after parsing) by finding the offending
//! text in the file ([`SourceText`]). Every message starts `file:line:column` when a place
//! is known.

use std::path::{Path, PathBuf};

/// Why a policy file could not be loaded. Every variant tells the user where to look.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: cannot read policy file: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is wrong at a known place.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The YAML parser refused the file without saying where.
    #[error("{path}: {message}")]
    InvalidWhole {
        /// The policy file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The file being compiled, to turn located-by-search errors into `PolicyError::Invalid`.
pub(super) struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl SourceText<'_> {
    /// An error at the first place `needle` appears (line 1 if it cannot be found).
    pub(super) fn error_at(
        &self,
        needle: &str,
        extra_column: usize,
        message: String,
    ) -> PolicyError {
        let (line, column) = self.locate(needle);
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column: column + extra_column,
            message,
        }
    }

    fn locate(&self, needle: &str) -> (usize, usize) {
        let needle = needle.trim();
        for (index, line) in self.text.lines().enumerate() {
            if let Some(column) = line.find(needle).filter(|_| !needle.is_empty()) {
                return (index + 1, line[..column].chars().count() + 1);
            }
        }
        (1, 1)
    }

    /// The line `needle` first appears on (1 if it cannot be found).
    pub(super) fn line_of(&self, needle: &str) -> usize {
        self.locate(needle).0
    }

    /// A YAML error at the parser's own location, when it has one.
    pub(super) fn yaml_error(&self, err: &serde_yaml_ng::Error) -> PolicyError {
        let path = self.path.to_path_buf();
        match err.location() {
            Some(loc) => PolicyError::Invalid {
                path,
                line: loc.line(),
                column: loc.column(),
                message: strip_location_suffix(&err.to_string()),
            },
            None => PolicyError::InvalidWhole {
                path,
                message: err.to_string(),
            },
        }
    }
}

/// serde_yaml_ng appends " at line L column C" to its messages; the location is already in
/// the `file:line:column` prefix, so the suffix would only repeat it.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Policy;
    use super::PolicyError;
    use std::path::Path;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_yaml(Path::new("test.yaml"), text)
    }

    #[test]
    fn unknown_top_level_key_names_file_line_and_column() {
        let err = load("tunnel: []\nbogus: 1\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml:2:1: unknown field `bogus`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_agent_field_is_an_error() {
        let err = load("agents:\n  bot:\n    tokn: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:3:5: agents.bot: unknown field `tokn`"),
            "{err}"
        );
    }

    #[test]
    fn a_compile_error_is_located_by_its_text() {
        let err = load("name: x\ntimezone: Mars/Olympus\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.yaml:2:11: unknown time zone `Mars/Olympus`"),
            "{err}"
        );
    }
}
