//! `rangekeeper man`: the manual page, generated from the command-line definition itself
//! (`clap_mangen`), so it never disagrees with `--help`.

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::ManArgs;
use crate::commands::Outcome;

/// Print `rangekeeper.1` on stdout, or write it and one page per subcommand to `--out-dir`.
pub fn run(cmd: clap::Command, args: &ManArgs) -> anyhow::Result<Outcome> {
    match &args.out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("cannot render the manual page")?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page).context("cannot write to stdout")?;
            out.flush().context("cannot write to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
            tracing::info!(
                "wrote the manual pages (rangekeeper.1 and one per command) to {}",
                dir.display()
            );
        }
    }
    Ok(Outcome::Success)
}
