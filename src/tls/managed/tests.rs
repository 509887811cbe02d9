use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn chain(ca: &str, renew_after: Timestamp) -> Chain {
    Chain {
        ca: format!("{ca}\n"),
        cert: format!("{ca}-cert\n"),
        key: format!("{ca}-key\n"),
        renew_after,
    }
}

fn minted(
    ca: &'static str,
    renew_after: Timestamp,
) -> impl FnOnce() -> Result<Chain, rcgen::Error> {
    move || Ok(chain(ca, renew_after))
}

fn no_mint() -> Result<Chain, rcgen::Error> {
    panic!("nothing is minted in this step")
}

#[test]
fn a_renewal_publishes_then_switches_then_retires_and_the_bundle_always_trusts_what_is_served() {
    let settle = SignedDuration::try_from(SETTLE).unwrap();
    assert_eq!(step(None, at(0), false), Step::Create);
    let first = apply(Step::Create, None, at(0), minted("one", at(40)))
        .unwrap()
        .unwrap();
    assert_eq!(first.bundle(), "one\n");
    assert_eq!(step(Some(&first), at(39), false), Step::Nothing);

    // Due: the next chain is trusted first, not served.
    assert_eq!(step(Some(&first), at(40), false), Step::PublishNext);
    let published = apply(
        Step::PublishNext,
        Some(first.clone()),
        at(40),
        minted("two", at(80)),
    )
    .unwrap()
    .unwrap();
    assert_eq!(published.current, first.current);
    assert_eq!(published.bundle(), "one\ntwo\n");

    // Served only once settled and trusted by the webhook configuration.
    let settled = at(40) + settle;
    assert_eq!(
        step(
            Some(&published),
            settled - SignedDuration::from_secs(1),
            true
        ),
        Step::Nothing
    );
    assert_eq!(step(Some(&published), settled, false), Step::Nothing);
    assert_eq!(step(Some(&published), settled, true), Step::Switch);
    let switched = apply(Step::Switch, Some(published), settled, no_mint)
        .unwrap()
        .unwrap();
    assert_eq!(switched.current, chain("two", at(80)));
    assert_eq!(switched.bundle(), "two\none\n", "the old CA stays trusted");

    // Retired once every replica has reloaded.
    let retire_at = settled + settle;
    assert_eq!(
        step(
            Some(&switched),
            retire_at - SignedDuration::from_secs(1),
            true
        ),
        Step::Nothing
    );
    assert_eq!(step(Some(&switched), retire_at, true), Step::RetirePrevious);
    let retired = apply(Step::RetirePrevious, Some(switched), retire_at, no_mint)
        .unwrap()
        .unwrap();
    assert_eq!(retired.bundle(), "two\n");
    assert_eq!(step(Some(&retired), retire_at, true), Step::Nothing);
    assert_eq!(
        apply(Step::Nothing, Some(retired), at(99), no_mint).unwrap(),
        None
    );
}

#[test]
fn the_secret_round_trips_and_a_broken_one_is_not_used() {
    let stored = Stored {
        current: chain("one", at(1)),
        next: Some((chain("two", at(2)), at(3))),
        previous_ca: Some(("zero\n".to_owned(), at(4))),
    };
    let base = ObjectMeta {
        name: Some("tls".into()),
        annotations: Some([("keep".to_owned(), "me".to_owned())].into()),
        ..ObjectMeta::default()
    };
    let secret = stored.to_secret(base.clone());
    assert_eq!(Stored::from_secret(&secret), Some(stored.clone()));
    assert_eq!(secret.metadata.annotations.as_ref().unwrap()["keep"], "me");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));

    // Stages left behind are dropped from the Secret as from the content.
    let plain = Stored {
        next: None,
        previous_ca: None,
        ..stored
    };
    let rewritten = plain.to_secret(secret.metadata.clone());
    assert_eq!(rewritten.data.as_ref().unwrap().len(), 3);
    assert_eq!(Stored::from_secret(&rewritten), Some(plain));

    let mut broken = rewritten;
    broken.data.as_mut().unwrap().remove(KEY);
    assert_eq!(Stored::from_secret(&broken), None);
    assert_eq!(Stored::from_secret(&Secret::default()), None);
}

#[test]
fn a_minted_chain_serves_its_names_and_renews_at_two_thirds() {
    let names = CertConfig::service_names("graceful", "graceful-system", &["127.0.0.1".to_owned()]);
    assert_eq!(names[2], "graceful.graceful-system.svc");
    let now = Timestamp::now();
    let chain = mint(&names, Duration::from_secs(90), now).unwrap();
    assert_eq!(chain.renew_after, now + SignedDuration::from_secs(60));
    assert!(certified_key(chain.cert.as_bytes(), chain.key.as_bytes()).is_ok());
    assert!(chain.ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(chain.ca, chain.cert);
    let other = mint(&names, Duration::from_secs(90), now).unwrap();
    assert_ne!(other.ca, chain.ca, "every chain has a CA of its own");
}
