//! `e2e/graceful-image` assembles the Dockerfile's image without a container engine:
//! read back from the archive, its config names the same user and entrypoint, its one
//! layer holds the binary where the Dockerfile puts it with everything it needs to run
//! (it runs, chrooted into the layer), and the Deployment runs as that user.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("a blob")).expect("JSON")
}

fn blob(layout: &Path, descriptor: &Value) -> std::path::PathBuf {
    let digest = descriptor["digest"].as_str().expect("a digest");
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn the_local_image_matches_the_dockerfile_and_runs() {
    let repo = support::repo();
    let dir = std::env::temp_dir().join(format!("graceful-image-{}", std::process::id()));
    let (layout, root) = (dir.join("layout"), dir.join("root"));
    std::fs::create_dir_all(&layout).expect("a directory");
    std::fs::create_dir_all(&root).expect("a directory");
    let archive = dir.join("image.tar");
    let printed = run(Command::new(repo.join("e2e/graceful-image"))
        .args([
            "--ref",
            "localhost/graceful:test",
            "--binary",
            env!("CARGO_BIN_EXE_graceful"),
        ])
        .arg("--out")
        .arg(&archive));
    assert_eq!(printed.trim(), "localhost/graceful:test");

    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-xf")
        .arg(&archive));
    let index = json(&layout.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        "localhost/graceful:test"
    );
    let manifest = json(&blob(&layout, entry));
    let config = json(&blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);

    // The Dockerfile's user and entrypoint, in the Dockerfile's words.
    let dockerfile = std::fs::read_to_string(repo.join("Dockerfile")).expect("the Dockerfile");
    let user = config["config"]["User"].as_str().expect("a user");
    assert_eq!(user, "65532:65532");
    assert!(
        dockerfile.contains(&format!("\nUSER {user}\n")),
        "{dockerfile}"
    );
    let entrypoint = config["config"]["Entrypoint"].to_string();
    assert_eq!(entrypoint, r#"["/graceful","run"]"#);
    assert!(
        dockerfile.contains(&format!("\nENTRYPOINT {}\n", entrypoint.replace(',', ", "))),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("/src/target/release/graceful /graceful\n"));

    // The layer: the binary, its libraries and loader, the user's account.
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-xf")
        .arg(blob(&layout, &layers[0])));
    for file in [
        "graceful",
        "etc/passwd",
        "etc/group",
        "etc/ssl/certs/ca-certificates.crt",
        "lib64/ld-linux-x86-64.so.2",
    ] {
        assert!(root.join(file).is_file(), "{file} in the image");
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    let version = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "chroot"])
        .arg(&root)
        .args(["/graceful", "--version"]));
    assert_eq!(
        version.trim(),
        concat!("graceful ", env!("CARGO_PKG_VERSION"))
    );

    // The Deployment runs the image as its user.
    let deployment = std::fs::read_to_string(repo.join("manifests/base/deployment.yaml"))
        .expect("the Deployment");
    assert!(
        deployment.contains("runAsUser: 65532\n") && deployment.contains("runAsGroup: 65532\n")
    );
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}
