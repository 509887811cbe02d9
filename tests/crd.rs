//! crds/ and the chart's crds/ hold exactly what `graceful crd` prints, so that what users
//! apply is what the code defines.

#[test]
fn crds_directories_are_up_to_date() {
    let generated = graceful::api::crd_yaml().expect("the CRD serializes");
    for dir in ["crds", "charts/graceful/crds"] {
        let path = format!(
            "{}/{dir}/graceful.dev_gracefulpolicies.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let committed = std::fs::read_to_string(&path).expect("the directory holds the CRD");
        assert!(
            committed == generated,
            "{dir}/ is out of date: run `make crds`"
        );
    }
}
