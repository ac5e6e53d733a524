//! What an install puts beside the binary: the manual pages (`rangekeeper man`) and the shell
//! completions (`rangekeeper completions SHELL`), both generated from the command-line
//! definition, so every subcommand is in them.

use clap::CommandFactory;

use crate::common::{Scratch, code, seen, stdout};

/// Every subcommand's name, from the definition itself.
fn subcommands() -> Vec<String> {
    rangekeeper::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

fn head(text: &str, lines: usize) -> String {
    text.lines().take(lines).collect::<Vec<_>>().join("\n")
}

#[test]
fn man_prints_the_page_with_every_subcommand() {
    let s = Scratch::new("version: 1\n");
    let o = s.run(&["man"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let page = stdout(&o);
    insta::assert_snapshot!("man_head", head(&page, 12));
    assert!(page.contains(".SH SUBCOMMANDS"));
    for sub in subcommands() {
        assert!(
            page.contains(&format!("rangekeeper\\-{}(1)", sub.replace('-', "\\-"))),
            "the page lists `{sub}`"
        );
    }
}

#[test]
fn man_out_dir_writes_a_page_per_command() {
    let s = Scratch::new("version: 1\n");
    let o = s.run(&["man", "--out-dir", "man/man1"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert_eq!(stdout(&o), "", "pages go to the directory, not stdout");
    let dir = s.path().join("man/man1");
    assert!(dir.join("rangekeeper.1").is_file());
    for sub in subcommands() {
        let page = dir.join(format!("rangekeeper-{sub}.1"));
        assert!(page.is_file(), "{} is missing", page.display());
    }
    let plan = std::fs::read_to_string(dir.join("rangekeeper-plan.1")).unwrap();
    assert!(plan.contains("markdown"), "the plan page lists -o markdown");
}

#[test]
fn man_out_dir_that_cannot_be_created_is_an_error_naming_it() {
    let s = Scratch::new("version: 1\n");
    s.write("taken", "a file, not a directory\n");
    let o = s.run(&["man", "--out-dir", "taken/man1"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("man_out_dir_error", seen(&o));
}

/// Each shell's script is generated, names every subcommand, and loads in its shell where
/// that shell is installed (bash always is).
#[test]
fn completions_for_bash_zsh_and_fish() {
    let s = Scratch::new("version: 1\n");
    let mut heads = String::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = s.run(&["completions", shell]);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        let script = stdout(&o);
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell} completions lack `{sub}`");
        }
        heads.push_str(&format!("--- {shell}\n{}\n", head(&script, 4)));
        s.write(&format!("completions.{shell}"), &script);
    }
    insta::assert_snapshot!("completions_head", heads);

    // bash: the script loads and registers a completion for `rangekeeper`, which offers
    // the subcommands after `rangekeeper pl`.
    let bash = std::process::Command::new("bash")
        .current_dir(s.path())
        .args([
            "--norc",
            "-c",
            "source completions.bash && complete -p rangekeeper && \
             COMP_WORDS=(rangekeeper pl) COMP_CWORD=1 COMP_LINE='rangekeeper pl' COMP_POINT=14 && \
             _rangekeeper rangekeeper pl rangekeeper && printf '%s\\n' \"${COMPREPLY[@]}\"",
        ])
        .output()
        .unwrap();
    insta::assert_snapshot!("completions_bash_smoke", seen(&bash));
    for shell in ["zsh", "fish"] {
        let Ok(o) = std::process::Command::new(shell)
            .current_dir(s.path())
            .args(["-n", &format!("completions.{shell}")])
            .output()
        else {
            eprintln!("{shell} is not installed: its script's syntax is not checked");
            continue;
        };
        assert!(o.status.success(), "{shell} -n: {}", seen(&o));
    }
}
