//! `cargo xtask compose-check`: every environment's merged Compose file (the base
//! `compose.yaml` plus that environment's override), validated against the Compose
//! specification, plus the rules our deployment promises.
//!
//! The merge is podman-compose's own (`podman-compose -f compose.yaml -f <env>.yaml config`), so
//! what is checked is what `up` would run; the schema check is `check-jsonschema
//! --builtin-schema vendor.compose-spec`, which rejects unknown keys (a misspelled `read_only`
//! is an error, not a silently ignored setting). Both are PyPI tools, looked up on PATH, then in
//! `target/ci-venv/bin` (where `.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use yaml_rust2::{Yaml, YamlLoader};

/// The base file every environment's override is merged onto.
pub const BASE_FILE: &str = "compose.yaml";
/// The directory holding the Compose files, relative to the repository.
pub const COMPOSE_DIR: &str = "deploy/compose";
/// Environments whose database is external: no database in the stack, migrations gate the server.
const EXTERNAL_DATABASE: [&str; 2] = ["staging", "production"];
/// Variables that would carry a secret value; secrets must come from files.
const SECRET_VARIABLES: [&str; 4] = [
    "DATABASE_URL",
    "MCP_AUTH_TOKEN",
    "COGMEM__DATABASE__URL",
    "COGMEM__SERVER__AUTH__TOKEN",
];

#[derive(Debug, Clone, clap::Args)]
pub struct ComposeCheckOptions {
    /// Directory with compose.yaml and one <environment>.yaml override each; default
    /// deploy/compose.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Merges and checks every override in the directory; fails listing every problem found.
pub fn run(repo: &Path, options: &ComposeCheckOptions) -> Result<()> {
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| repo.join(COMPOSE_DIR));
    let base = dir.join(BASE_FILE);
    if !base.is_file() {
        bail!("{} is missing", base.display());
    }
    let environments = overrides(&dir)?;
    if environments.is_empty() {
        bail!(
            "{} holds no environment override (<environment>.yaml)",
            dir.display()
        );
    }
    let podman_compose = tool(repo, "podman-compose")?;
    let check_jsonschema = tool(repo, "check-jsonschema")?;
    let out = target_dir(repo).join("compose-check");
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let mut problems = Vec::new();
    for environment in &environments {
        let merged = merge(&podman_compose, &dir, environment)?;
        let merged_file = out.join(format!("{environment}.yaml"));
        std::fs::write(&merged_file, &merged)
            .with_context(|| format!("write {}", merged_file.display()))?;
        let schema = Command::new(&check_jsonschema)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&merged_file)
            .output()
            .with_context(|| format!("run {}", check_jsonschema.display()))?;
        let said = String::from_utf8_lossy(&schema.stdout).trim().to_owned();
        if schema.status.success() {
            println!("compose-check: {environment}: compose-spec schema OK");
        } else {
            problems.push(format!(
                "{environment}: the merged file ({}) violates the Compose specification:\n{said}{}",
                merged_file.display(),
                String::from_utf8_lossy(&schema.stderr).trim()
            ));
        }
        let rules = deployment_rules(environment, &merged);
        if rules.is_empty() {
            println!("compose-check: {environment}: deployment rules OK");
        }
        problems.extend(rules.into_iter().map(|p| format!("{environment}: {p}")));
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in {}:\n{}",
            problems.len(),
            dir.display(),
            problems.join("\n")
        );
    }
    println!(
        "compose-check: {} environment(s) OK: {}",
        environments.len(),
        environments.join(", ")
    );
    Ok(())
}

/// `<environment>.yaml` beside the base file, in name order.
fn overrides(dir: &Path) -> Result<Vec<String>> {
    let mut environments = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(environment) = name.strip_suffix(".yaml")
            && name != BASE_FILE
        {
            environments.push(environment.to_owned());
        }
    }
    environments.sort();
    Ok(environments)
}

fn merge(podman_compose: &Path, dir: &Path, environment: &str) -> Result<String> {
    let output = Command::new(podman_compose)
        .arg("-f")
        .arg(dir.join(BASE_FILE))
        .arg("-f")
        .arg(dir.join(format!("{environment}.yaml")))
        .arg("config")
        .env_remove("COGMEM_SECRETS_DIR")
        .output()
        .with_context(|| format!("run {}", podman_compose.display()))?;
    if !output.status.success() {
        bail!(
            "{environment}: podman-compose cannot merge {BASE_FILE} with {environment}.yaml:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What our deployment promises beyond the specification, checked on the merged file.
fn deployment_rules(environment: &str, merged: &str) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(merged) {
        Ok(docs) => docs,
        Err(err) => return vec![format!("the merged file is not YAML: {err}")],
    };
    let Some(root) = docs.first() else {
        return vec!["the merged file is empty".to_owned()];
    };
    let services = &root["services"];
    let mut problems = Vec::new();
    for name in ["migrate", "server"] {
        let service = &services[name];
        if service.is_badvalue() {
            problems.push(format!("no `{name}` service"));
            continue;
        }
        if service["read_only"].as_bool() != Some(true) {
            problems.push(format!("{name}: read_only must be true"));
        }
        if !contains(&service["cap_drop"], "ALL") {
            problems.push(format!("{name}: cap_drop must list ALL"));
        }
        if !contains(&service["security_opt"], "no-new-privileges:true") {
            problems.push(format!(
                "{name}: security_opt must list no-new-privileges:true"
            ));
        }
        for variable in SECRET_VARIABLES {
            if has_variable(&service["environment"], variable) {
                problems.push(format!(
                    "{name}: {variable} is set in `environment`; secrets come from secret files (/run/secrets)"
                ));
            }
        }
        if !contains(&service["secrets"], "database-url") {
            problems.push(format!("{name}: the secret database-url is not mounted"));
        }
    }
    let server = &services["server"];
    if !server.is_badvalue() {
        let test = server["healthcheck"]["test"].as_vec();
        let checks_ready = test.is_some_and(|test| {
            test.iter().any(|t| t.as_str() == Some("health"))
                && test.iter().any(|t| t.as_str() == Some("--ready"))
        });
        if !checks_ready {
            problems.push("server: the healthcheck must run `health --ready`".to_owned());
        }
        let restart = server["restart"].as_str().unwrap_or("no");
        if restart == "always" || restart == "unless-stopped" {
            problems.push(format!(
                "server: restart `{restart}` would loop on a configuration error (exit 78); use on-failure:N"
            ));
        }
        if server["deploy"]["resources"]["limits"]["memory"].is_badvalue() {
            problems.push("server: no deploy.resources.limits.memory".to_owned());
        }
    }
    if EXTERNAL_DATABASE.contains(&environment) {
        if server["depends_on"]["migrate"]["condition"].as_str()
            != Some("service_completed_successfully")
        {
            problems.push(
                "server: must depend on migrate with condition service_completed_successfully"
                    .to_owned(),
            );
        }
        if let Some(services) = services.as_hash() {
            for (name, service) in services {
                let image = service["image"].as_str().unwrap_or_default();
                if image.contains("postgres") {
                    problems.push(format!(
                        "{}: a bundled database ({image}); {environment} uses an external one",
                        name.as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    problems
}

fn contains(list: &Yaml, wanted: &str) -> bool {
    list.as_vec()
        .is_some_and(|items| items.iter().any(|item| item.as_str() == Some(wanted)))
}

/// Whether `environment` (a mapping or a list of `NAME=value`) sets `variable`.
fn has_variable(environment: &Yaml, variable: &str) -> bool {
    match environment {
        Yaml::Hash(map) => map.keys().any(|key| key.as_str() == Some(variable)),
        Yaml::Array(items) => items.iter().any(|item| {
            item.as_str()
                .is_some_and(|entry| entry.split('=').next() == Some(variable))
        }),
        _ => false,
    }
}

fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
}

/// A PyPI tool: on PATH, else in `target/ci-venv/bin`.
pub fn tool(repo: &Path, name: &str) -> Result<PathBuf> {
    let on_path = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if on_path {
        return Ok(PathBuf::from(name));
    }
    let venv = target_dir(repo).join("ci-venv/bin").join(name);
    if venv.is_file() {
        return Ok(venv);
    }
    bail!(
        "{name} is not installed; install it with: python3 -m venv target/ci-venv && target/ci-venv/bin/pip install podman-compose==1.6.0 check-jsonschema==0.39.0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "services:\n  migrate:\n    read_only: true\n    cap_drop: [ALL]\n    security_opt: ['no-new-privileges:true']\n    secrets: [database-url]\n  server:\n    read_only: true\n    cap_drop: [ALL]\n    security_opt: ['no-new-privileges:true']\n    secrets: [database-url]\n    healthcheck:\n      test: [CMD, /bin/x, health, --ready]\n    restart: on-failure:3\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n    deploy:\n      resources:\n        limits:\n          memory: 256M\n";

    #[test]
    fn the_rules_pass_a_hardened_stack_and_name_each_weakness() {
        assert_eq!(deployment_rules("production", GOOD), Vec::<String>::new());
        let weak = GOOD
            .replace("    read_only: true\n    cap_drop: [ALL]\n    security_opt: ['no-new-privileges:true']\n    secrets: [database-url]\n    healthcheck", "    read_only: false\n    cap_drop: []\n    environment:\n      DATABASE_URL: postgres://x\n    secrets: [database-url]\n    healthcheck")
            .replace("on-failure:3", "always");
        let problems = deployment_rules("production", &weak).join("\n");
        for expected in [
            "server: read_only must be true",
            "server: cap_drop must list ALL",
            "server: security_opt must list no-new-privileges:true",
            "server: DATABASE_URL is set in `environment`",
            "server: restart `always`",
        ] {
            assert!(problems.contains(expected), "{expected}\n{problems}");
        }
        let bundled = format!("{GOOD}  postgres:\n    image: postgres:16\n");
        assert!(deployment_rules("staging", &bundled)[0].contains("bundled database"));
        assert!(deployment_rules("development", &bundled).is_empty());
    }
}
