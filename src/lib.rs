//! rangekeeper's code as a library. The `rangekeeper` binary (`main.rs`) only parses the
//! command line, runs a command and maps the outcome to an exit code; the fuzz targets
//! (`fuzz/`) reach the declaration loader through [`fuzzing`]. Not a stable API.

#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod commands;
#[doc(hidden)]
pub mod declaration;
mod guard;
mod import;
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

    use crate::declaration::{Declaration, Diagnostic, LoadOptions};

    /// Parse and resolve declaration text as `validate` does (file `fuzz.yaml`, no live
    /// source values, the built-in providers), returning every diagnostic.
    pub fn load_declaration(text: &str, is_json: bool) -> Vec<Diagnostic> {
        let names = crate::registry::names();
        let (_, diags) = Declaration::parse(
            text,
            "fuzz.yaml",
            PathBuf::from("."),
            is_json,
            LoadOptions::default(),
            &names,
        );
        diags
    }
}
