//! One version for everything a release ships: `graceful --version`, the image tag the
//! manifests and the chart use, the chart's version and appVersion, the CRD's
//! annotation in crds/ and in the chart, and a CHANGELOG section; and the release
//! workflow builds what the README promises.

mod support;

use std::process::Command;

use serde_json::Value;

use support::repo;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_binary_the_image_the_chart_and_the_crds_share_one_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_graceful"))
        .arg("--version")
        .output()
        .expect("graceful runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("graceful {VERSION}")
    );

    let chart = yaml("charts/graceful/Chart.yaml");
    assert_eq!(chart["version"], VERSION);
    assert_eq!(chart["appVersion"], VERSION);

    let deployment = read("manifests/base/deployment.yaml");
    assert!(
        deployment.contains(&format!("image: ghcr.io/graceful-dev/graceful:{VERSION}\n")),
        "manifests/base/deployment.yaml does not use the image {VERSION}"
    );
    let values = yaml("charts/graceful/values.yaml");
    assert_eq!(
        values["image"]["repository"],
        "ghcr.io/graceful-dev/graceful"
    );
    assert_eq!(
        values["image"]["tag"], "",
        "the chart's image tag is its appVersion"
    );

    for crd in [
        "crds/graceful.dev_gracefulpolicies.yaml",
        "charts/graceful/crds/graceful.dev_gracefulpolicies.yaml",
    ] {
        assert_eq!(
            yaml(crd)["metadata"]["annotations"]["graceful.dev/version"],
            VERSION,
            "{crd}"
        );
    }
    assert!(
        read("CHANGELOG.md").contains(&format!("\n## [{VERSION}]")),
        "CHANGELOG.md has no section for {VERSION}"
    );
}

#[test]
fn the_release_workflow_builds_both_platforms_and_attaches_the_crds_and_the_chart() {
    let workflow = yaml(".github/workflows/release.yml");
    let jobs = &workflow["jobs"];
    let steps = |job: &str| jobs[job]["steps"].as_array().cloned().unwrap_or_default();
    let build = steps("image")
        .into_iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action"))
        })
        .expect("a step builds the image");
    assert_eq!(build["with"]["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(build["with"]["context"], ".");
    let release = serde_json::to_string(&steps("release")).expect("JSON");
    for attached in ["helm package charts/graceful", "crds", "gh release create"] {
        assert!(
            release.contains(attached),
            "the release job lacks {attached:?}"
        );
    }
}
