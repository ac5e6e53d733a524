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

/// Every command's `--help`, the top level's and each subcommand's at every depth, in one
/// snapshot: the arguments of a subcommand are built only when it runs (`cli::Lazy`), and
/// this proves each still shows its own description and all of its flags. (The providers'
/// flags of `update` and `disable` depend on the features built.)
#[cfg(feature = "every-provider")]
#[test]
fn every_command_prints_its_help() {
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        out.push(prefix.to_vec());
        for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            let mut p = prefix.to_vec();
            p.push(sub.get_name().to_owned());
            paths(sub, &p, out);
        }
    }
    let mut cmd = rangekeeper::cli::Cli::command();
    cmd.build();
    let mut all = Vec::new();
    paths(&cmd, &[], &mut all);
    let s = Scratch::new("version: 1\n");
    let mut text = String::new();
    for path in all {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = s.run(&args);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        text.push_str(&format!(
            "=== rangekeeper {}\n{}\n",
            args.join(" "),
            stdout(&o)
        ));
    }
    insta::assert_snapshot!("help_every_command", text);
}
