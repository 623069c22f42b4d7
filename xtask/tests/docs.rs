//! The documentation tells the truth: `docs/configuration.md` is what the schema generates, and
//! every `cognitive-memory-mcp …` and `cargo xtask …` command in README.md and docs/*.md parses
//! with the real programs (each is run with `--help` appended: clap rejects an unknown
//! subcommand or flag before it prints help).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_configuration_reference_is_what_the_schema_generates() {
    let yaml_root = tempfile::tempdir().unwrap();
    std::fs::create_dir(yaml_root.path().join("config")).unwrap();
    std::fs::copy(
        workspace().join("config/config.yaml"),
        yaml_root.path().join("config/config.yaml"),
    )
    .unwrap();
    let generated = cognitive_memory_mcp::config::reference_markdown(yaml_root.path()).unwrap();
    let committed = std::fs::read_to_string(workspace().join("docs/configuration.md")).unwrap();
    assert!(
        generated == committed,
        "docs/configuration.md is stale: run `cargo xtask docs`"
    );
    // Every key of the schema is in it.
    let schema = config_core::Schema::of::<cognitive_memory_mcp::config::AppConfig>(
        cognitive_memory_mcp::config::ENV_PREFIX,
    );
    for key in &schema.keys {
        assert!(
            committed.contains(&format!("`{}`", key.path)),
            "{}",
            key.path
        );
    }
}

/// Which program a documented command runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Program {
    Server,
    Xtask,
}

#[test]
fn every_documented_command_is_a_real_command() {
    let xtask = PathBuf::from(env!("CARGO_BIN_EXE_xtask"));
    let server = xtask.with_file_name("cognitive-memory-mcp");
    assert!(
        server.exists(),
        "{} is missing: run the workspace tests (`cargo test --workspace`)",
        server.display()
    );
    let mut files = vec![workspace().join("README.md")];
    for entry in std::fs::read_dir(workspace().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, command) in shell_lines(&text) {
            for (program, args) in invocations(&command) {
                let binary = match program {
                    Program::Server => &server,
                    Program::Xtask => &xtask,
                };
                let output = Command::new(binary)
                    .args(&args)
                    .arg("--help")
                    .env_clear()
                    .output()
                    .unwrap();
                checked += 1;
                if !output.status.success() {
                    failures.push(format!(
                        "{}:{line}: {program:?} {}\n{}",
                        file.strip_prefix(workspace()).unwrap().display(),
                        args.join(" "),
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
            }
        }
    }
    println!("documented commands checked: {checked}");
    assert!(
        checked >= 20,
        "only {checked} commands found: is the extraction broken?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Shell lines: every line of a code block (with `\` continuations joined) and every inline code
/// span elsewhere, with their line numbers.
fn shell_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
            joined.push_str(line.trim());
            match joined.strip_suffix('\\') {
                Some(head) => pending = Some((start, format!("{} ", head.trim_end()))),
                None => out.push((start, joined)),
            }
        } else {
            out.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|span| (number, span.to_owned())),
            );
        }
    }
    out
}

/// The invocations of our programs in one shell line, as argument lists.
fn invocations(line: &str) -> Vec<(Program, Vec<String>)> {
    let line = line.split(" #").next().unwrap_or(line);
    let mut found = Vec::new();
    for segment in line.split(['|', ';', '&']) {
        let words: Vec<&str> = segment
            .split_whitespace()
            .take_while(|word| !is_redirection(word))
            .map(|word| {
                if is_placeholder(word) {
                    "placeholder"
                } else {
                    word
                }
            })
            .collect();
        // `cargo xtask …` abbreviates; there is nothing to check.
        if words.contains(&"…") {
            continue;
        }
        let words: Vec<&str> = words
            .into_iter()
            .skip_while(|word| *word == "sudo" || is_assignment(word))
            .collect();
        let Some((first, rest)) = words.split_first() else {
            continue;
        };
        let args = |words: &[&str]| words.iter().map(|word| (*word).to_owned()).collect();
        if *first == "cognitive-memory-mcp" || first.ends_with("/cognitive-memory-mcp") {
            found.push((Program::Server, args(rest)));
        } else if *first == "cargo" && rest.first() == Some(&"xtask") {
            found.push((Program::Xtask, args(&rest[1..])));
        } else if *first == "cargo"
            && rest.first() == Some(&"run")
            && rest
                .windows(2)
                .any(|pair| pair == ["-p", "cognitive-memory-mcp"])
            && let Some(separator) = rest.iter().position(|word| *word == "--")
        {
            found.push((Program::Server, args(&rest[separator + 1..])));
        }
    }
    found
}

/// `<env>`-style placeholders stand for a value.
fn is_placeholder(word: &str) -> bool {
    word.len() > 2 && word.starts_with('<') && word.ends_with('>') && !word[1..].contains('<')
}

fn is_redirection(word: &str) -> bool {
    !is_placeholder(word)
        && (word.starts_with('>') || word.starts_with('<') || word.starts_with("2>"))
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    })
}

#[test]
fn the_extraction_finds_commands_in_their_usual_shapes() {
    let found = invocations(
        "CREDENTIALS_DIRECTORY=/x cognitive-memory-mcp --env production doctor && cargo xtask dev --bind 127.0.0.1:0 # run",
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, Program::Server);
    assert_eq!(found[0].1, ["--env", "production", "doctor"]);
    assert_eq!(found[1].1, ["dev", "--bind", "127.0.0.1:0"]);
    let found = invocations("cargo run -p cognitive-memory-mcp -- config template > .env.template");
    assert_eq!(found[0].1, ["config", "template"]);
    assert!(invocations("journalctl -u cognitive-memory-mcp -f").is_empty());
    assert!(invocations("systemctl start cognitive-memory-mcp").is_empty());
    let lines = shell_lines("text `cargo xtask docs` more\n```sh\nfoo \\\n  --bar\n```\n");
    assert_eq!(
        lines,
        [
            (1, "cargo xtask docs".to_owned()),
            (3, "foo --bar".to_owned())
        ]
    );
}
