//! crds/ holds exactly what `graceful crd` prints, so that what users apply is what the
//! code defines.

#[test]
fn crds_directory_is_up_to_date() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/graceful.dev_gracefulpolicies.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ holds the CRD");
    let generated = graceful::api::crd_yaml().expect("the CRD serializes");
    assert!(
        committed == generated,
        "crds/ is out of date: run `cargo run -- crd > crds/graceful.dev_gracefulpolicies.yaml`"
    );
}
