//! The kustomize deployment under `deploy/kubernetes/`: every overlay renders and passes
//! `kubernetes-validate --strict` (schemas of Kubernetes 1.25–1.37, offline), a misspelled field
//! fails it, and the rendered objects keep the rules docs/kubernetes.md states.
//!
//! Needs `kubectl` (with its built-in kustomize) and `kubernetes-validate` (PyPI; `.ci/run`
//! installs it into `target/ci-venv`). Without them the tests print `skipped: <reason>` and pass
//! — unless `COGMEM_REQUIRE_KUBERNETES=1` (CI), which turns a skip into a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use yaml_rust2::{Yaml, YamlLoader};

const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tools, or why they are missing (a failure under `COGMEM_REQUIRE_KUBERNETES=1`).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let venv = repo().join("target/ci-venv/bin/kubernetes-validate");
    let validate = std::env::var_os("COGMEM_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .or_else(|| venv.exists().then_some(venv))
        .or_else(|| which("kubernetes-validate"));
    let found = match (which("kubectl"), validate) {
        (Some(kubectl), Some(validate)) => return Some((kubectl, validate)),
        (None, _) => "kubectl is not on PATH",
        (_, None) => "kubernetes-validate is not installed (pip install kubernetes-validate)",
    };
    if std::env::var_os("COGMEM_REQUIRE_KUBERNETES").is_some_and(|v| v == "1") {
        panic!("COGMEM_REQUIRE_KUBERNETES=1 but {found}");
    }
    eprintln!("skipped: {found}");
    None
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn render(kubectl: &Path, overlay: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(overlay)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        overlay.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubernetes-validate --strict -` on `manifests`: (passed, its output).
fn validate(tool: &Path, manifests: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(["--strict", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_overlay_renders_and_passes_strict_schema_validation() {
    let Some((kubectl, tool)) = tools() else {
        return;
    };
    for environment in ENVIRONMENTS {
        let overlay = repo().join("deploy/kubernetes/overlays").join(environment);
        let (passed, output) = validate(&tool, &render(&kubectl, &overlay));
        assert!(passed, "{environment} fails validation:\n{output}");
        assert!(output.contains("passed for resource deployment/cognitive-memory-mcp"));
    }
}

#[test]
fn a_misspelled_field_fails_strict_validation() {
    let Some((kubectl, tool)) = tools() else {
        return;
    };
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("deploy/kubernetes"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let deployment = copy.path().join("kubernetes/base/deployment.yaml");
    let text = std::fs::read_to_string(&deployment).unwrap();
    assert!(text.contains("readOnlyRootFilesystem: true"));
    std::fs::write(
        &deployment,
        text.replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"),
    )
    .unwrap();
    let rendered = render(
        &kubectl,
        &copy.path().join("kubernetes/overlays/production"),
    );
    let (passed, output) = validate(&tool, &rendered);
    assert!(!passed, "a misspelled field passed:\n{output}");
    assert!(output.contains("readOnlyRootFilesytem"), "{output}");
}

/// The rendered objects of one overlay, by kind and name.
fn objects(kubectl: &Path, environment: &str) -> Vec<Yaml> {
    let overlay = repo().join("deploy/kubernetes/overlays").join(environment);
    YamlLoader::load_from_str(&render(kubectl, &overlay)).unwrap()
}

fn find<'a>(objects: &'a [Yaml], kind: &str) -> &'a Yaml {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// What the daemon reads in `environment` from the rendered ConfigMaps: (shutdown grace,
/// connect wait) from config.yaml, and the variables.
fn config_of(objects: &[Yaml], environment: &str) -> (i64, i64, Yaml) {
    let maps: Vec<&Yaml> = objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("ConfigMap"))
        .collect();
    let file = maps
        .iter()
        .find_map(|m| m["data"]["config.yaml"].as_str())
        .expect("a ConfigMap holds config.yaml");
    let config = &YamlLoader::load_from_str(file).unwrap()[0];
    let env = maps
        .iter()
        .find(|m| !m["data"]["ENVIRONMENT"].is_badvalue())
        .map(|m| m["data"].clone())
        .expect("a ConfigMap holds the variables");
    assert_eq!(env["ENVIRONMENT"].as_str(), Some(environment));
    let pick = |key: &str| {
        config[environment]["server"][key]
            .as_i64()
            .or(config["server"][key].as_i64())
    };
    let grace = pick("shutdown_grace_secs").unwrap();
    let wait = config[environment]["database"]["connect_wait_secs"]
        .as_i64()
        .or(config["database"]["connect_wait_secs"].as_i64())
        .unwrap();
    (grace, wait, env)
}

#[test]
fn rendered_pods_keep_the_restricted_profile_probes_and_drain_timing() {
    let Some((kubectl, _)) = tools() else {
        return;
    };
    for environment in ENVIRONMENTS {
        let objects = objects(&kubectl, environment);
        let (grace, connect_wait, env) = config_of(&objects, environment);
        let account = find(&objects, "ServiceAccount");
        assert_eq!(
            account["automountServiceAccountToken"].as_bool(),
            Some(false)
        );
        for kind in ["Deployment", "Job"] {
            let pod = &find(&objects, kind)["spec"]["template"]["spec"];
            assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
            assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
            let container = &pod["containers"][0];
            let security = &container["securityContext"];
            assert_eq!(
                security["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{kind}"
            );
            assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
            assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
            assert_eq!(
                security["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault")
            );
            let secrets = pod["volumes"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|v| !v["secret"].is_badvalue())
                .expect("secrets come from a Secret volume");
            // 0400 (the kubelet adds group read for fsGroup; nothing for others).
            assert_eq!(secrets["secret"]["defaultMode"].as_i64(), Some(0o400));
        }
        let job = &find(&objects, "Job")["spec"]["template"]["spec"]["containers"][0];
        assert!(
            job["args"]
                .as_vec()
                .unwrap()
                .iter()
                .any(|a| a.as_str() == Some("migrate")),
            "the Job runs migrate"
        );
        let pod = &find(&objects, "Deployment")["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/health")
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/ready")
        );
        let startup = &container["startupProbe"];
        let startup_budget = startup["periodSeconds"].as_i64().unwrap()
            * startup["failureThreshold"].as_i64().unwrap();
        assert!(
            startup_budget > connect_wait,
            "{environment}: the startup probe ({startup_budget}s) must outlast database.connect_wait_secs ({connect_wait}s)"
        );
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_i64()
            .expect("a preStop sleep");
        let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        assert!(
            termination > pre_stop + grace,
            "{environment}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + server.shutdown_grace_secs {grace}"
        );
        let strategy = &find(&objects, "Deployment")["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(strategy["maxUnavailable"].as_i64(), Some(0));
        let bind = env["COGMEM__SERVER__HTTP__BIND"].as_str().unwrap();
        let port = container["ports"][0]["containerPort"].as_i64().unwrap();
        assert!(bind.ends_with(&format!(":{port}")), "{bind} vs {port}");
        let policy = &find(&objects, "NetworkPolicy")["spec"];
        assert_eq!(
            policy["ingress"][0]["ports"][0]["port"].as_i64(),
            Some(port)
        );
        assert_eq!(policy["ingress"].as_vec().unwrap().len(), 1);
        if environment != "development" {
            let ca = env["COGMEM__DATABASE__SSL_ROOT_CERT"].as_str().unwrap();
            let mounted = container["volumeMounts"]
                .as_vec()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"].as_str().is_some_and(|p| ca.starts_with(p)));
            assert!(mounted, "{environment}: the root CA {ca} is mounted");
        }
    }
}

#[test]
fn the_base_configmap_carries_config_yaml_unchanged() {
    let copy = std::fs::read_to_string(repo().join("deploy/kubernetes/base/config.yaml")).unwrap();
    let original = std::fs::read_to_string(repo().join("config/config.yaml")).unwrap();
    assert!(
        copy == original,
        "deploy/kubernetes/base/config.yaml differs from config/config.yaml: cp config/config.yaml deploy/kubernetes/base/config.yaml"
    );
}
