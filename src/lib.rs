//! rangekeeper's code as a library. The `rangekeeper` binary (`main.rs`) only parses the
//! command line, runs a command and maps the outcome to an exit code; the fuzz targets
//! (`fuzz/`) reach the declaration loader through [`fuzzing`]. Not a stable API.

#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod commands;
#[doc(hidden)]
pub mod declaration;
mod discovery;
mod extip;
mod guard;
mod import;
#[cfg(feature = "kubernetes")]
mod leader;
mod lease;
mod output;
mod plan;
mod reconcile;
mod registry;
mod retry;
mod sources;

/// Entry points for the fuzz targets in `fuzz/`.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::PathBuf;

    use crate::declaration::{DeclText, Diagnostic, LoadOptions, SourceValues};

    /// Parse and resolve declaration text as `validate` does (file `fuzz.yaml`, no live
    /// source values, the built-in providers and their import hooks), returning every
    /// diagnostic.
    pub fn load_declaration(text: &str, is_json: bool) -> Vec<Diagnostic> {
        let text = DeclText {
            text: text.to_owned(),
            file: "fuzz.yaml".to_owned(),
            base_dir: PathBuf::from("."),
            is_json,
            generated: false,
        };
        let (_, diags) = text.load(
            LoadOptions::default(),
            &crate::registry::catalog(),
            &SourceValues::new(),
        );
        diags
    }
}
