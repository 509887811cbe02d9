//! Hostile input, fuzzed on stable Rust: structured mutations of real AdmissionReviews,
//! manifests and policies, plus raw bytes, fed to the webhook's handler (the review
//! parser and everything behind it), to `graceful mutate`'s whole pipeline (the manifest
//! reader, the policy reader, the mutation and the writer) and to the policy reader.
//! Nothing may panic or hang, and every input that is refused is refused with a message.
//!
//! `GRACEFUL_FUZZ_CASES` sets the cases per target (a bounded number by default, for
//! `make test`, the same cases every run; `make fuzz` runs a long one, new cases each
//! time with `GRACEFUL_FUZZ_RANDOM` set). Each target prints `fuzz: <target>: N
//! cases (A accepted, R refused) in T`.

#[path = "fixtures/admission.rs"]
mod fixtures;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use graceful::api::Mode;
use graceful::cli::mutate::{Output, render};
use graceful::kinds::Kind;
use graceful::metrics::Metrics;
use graceful::mutate::Capabilities;
use graceful::webhook::watch::Caches;
use graceful::webhook::{Webhook, router};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Cases per target unless `GRACEFUL_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 1500;
/// Longer than any case takes, by orders of magnitude: past it, a case hangs.
const HANG: Duration = Duration::from_secs(60);

fn cases() -> u32 {
    std::env::var("GRACEFUL_FUZZ_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// One change to a JSON document: at the `at`-th node (modulo their number), do `edit`.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    /// Wrap the node in an array, or in an object under a key.
    Wrap(Option<String>),
    /// Nest the node this deep in arrays.
    Deep(usize),
    /// Repeat an array's items, or insert the value into an object under a key.
    Grow(usize),
}

/// One change to a document's bytes.
#[derive(Debug, Clone)]
enum Splice {
    Flip { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Cut { at: usize, len: usize },
    Truncate { at: usize },
}

/// Words of the formats, so that mutations reach past the first checks.
const WORDS: &[&str] = &[
    "",
    "CREATE",
    "UPDATE",
    "Pod",
    "v1",
    "apps/v1",
    "ReplicaSet",
    "Deployment",
    "Job",
    "graceful.dev/policy",
    "web",
    "false",
    "Enforce",
    "Audit",
    "Serving",
    "All",
    "-1",
    "1e400",
    "18446744073709551616",
    "\u{0}",
    "\u{feff}",
    "---",
    "*a",
    "&a",
    "<<",
    "0x1F",
    "yes",
    "~",
    "!!binary",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(0),
            Just(-1),
            Just(86_401)
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(WORDS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(WORDS), inner, 0..4).prop_map(|map| {
                Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn edit() -> impl Strategy<Value = (usize, Edit)> {
    let edit = prop_oneof![
        4 => value().prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        1 => prop::option::of(prop::sample::select(WORDS).prop_map(str::to_owned)).prop_map(Edit::Wrap),
        1 => (1usize..400).prop_map(Edit::Deep),
        1 => (1usize..64).prop_map(Edit::Grow),
    ];
    (any::<usize>(), edit)
}

fn splice() -> impl Strategy<Value = Splice> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Splice::Flip { at, byte }),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..16),
                prop::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
                prop::sample::select(&["{", "[", "\"", ":", "\n- ", "\n  ", ": &a ", " *a"][..])
                    .prop_map(|w| w.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Splice::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Splice::Cut { at, len }),
        any::<usize>().prop_map(|at| Splice::Truncate { at }),
    ]
}

/// Every node of `value`, as JSON pointers, in document order.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply_edit(document: &mut Value, (at, edit): &(usize, Edit)) {
    let mut all = Vec::new();
    pointers(document, String::new(), &mut all);
    let pointer = &all[at % all.len()];
    if pointer.is_empty() && matches!(edit, Edit::Remove) {
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", ""));
    let Some(node) = document.pointer_mut(pointer) else {
        return;
    };
    match edit {
        Edit::Replace(value) => *node = value.clone(),
        Edit::Wrap(None) => *node = json!([node.take()]),
        Edit::Wrap(Some(key)) => *node = json!({key.as_str(): node.take()}),
        Edit::Deep(depth) => {
            for _ in 0..*depth {
                *node = json!([node.take()]);
            }
        }
        Edit::Grow(times) => match node {
            Value::Array(items) if !items.is_empty() => {
                let first = items[0].clone();
                items.extend(std::iter::repeat_n(first, *times));
            }
            Value::Object(map) => {
                map.insert(format!("k{times}"), json!(times));
            }
            _ => {}
        },
        Edit::Remove => match document.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                let key = key.replace("~1", "/").replace("~0", "~");
                map.remove(&key);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = key.parse::<usize>() {
                    items.remove(i.min(items.len().saturating_sub(1)));
                }
            }
            _ => {}
        },
    }
}

fn apply_splice(bytes: &mut Vec<u8>, splice: &Splice) {
    let at = |at: usize| at % (bytes.len() + 1);
    match splice {
        Splice::Flip { at: i, byte } if !bytes.is_empty() => {
            let i = *i % bytes.len();
            bytes[i] = *byte;
        }
        Splice::Flip { .. } => {}
        Splice::Insert { at: i, bytes: new } => {
            let i = at(*i);
            bytes.splice(i..i, new.iter().copied());
        }
        Splice::Cut { at: i, len } => {
            let i = at(*i);
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Splice::Truncate { at: i } => {
            let i = at(*i);
            bytes.truncate(i);
        }
    }
}

/// A case: a seed, edits to its value, then splices of its bytes; or bytes alone.
#[derive(Debug, Clone)]
enum Case {
    Mutated {
        seed: usize,
        edits: Vec<(usize, Edit)>,
        splices: Vec<Splice>,
    },
    Raw(Vec<u8>),
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        6 => (
            any::<usize>(),
            prop::collection::vec(edit(), 0..4),
            prop::collection::vec(splice(), 0..3)
        )
            .prop_map(|(seed, edits, splices)| Case::Mutated { seed, edits, splices }),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Case::Raw),
    ]
}

/// The bytes of `case` over `seeds`, written back as JSON or YAML by `write`.
fn bytes_of(case: &Case, seeds: &[Value], write: fn(&Value) -> Vec<u8>) -> Vec<u8> {
    match case {
        Case::Raw(bytes) => bytes.clone(),
        Case::Mutated {
            seed,
            edits,
            splices,
        } => {
            let mut document = seeds[seed % seeds.len()].clone();
            edits.iter().for_each(|e| apply_edit(&mut document, e));
            let mut bytes = write(&document);
            splices.iter().for_each(|s| apply_splice(&mut bytes, s));
            bytes
        }
    }
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

fn yaml_bytes(value: &Value) -> Vec<u8> {
    graceful::manifest::yaml::to_yaml(value).into_bytes()
}

/// What a target made of one input.
enum Verdict {
    Accepted,
    Refused,
}

/// Runs `cases()` cases of `target` on a thread of its own, failing on the first that
/// panics or is refused without a message, or when one takes longer than [`HANG`]
/// (naming it); prints the counts.
fn fuzz<S>(
    name: &'static str,
    strategy: fn() -> S,
    target: fn(&S::Value) -> Result<Verdict, String>,
) where
    S: Strategy + 'static,
    S::Value: std::fmt::Debug,
{
    let cases = cases();
    let current: Arc<Mutex<Option<String>>> = Arc::default();
    let (done, finished) = mpsc::channel();
    let started = Instant::now();
    let worker = std::thread::spawn({
        let current = current.clone();
        move || {
            let config = Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            };
            // `make test` replays the same cases every run, so that it fails only on a
            // change; `make fuzz` looks for new ones.
            let mut runner = if std::env::var_os("GRACEFUL_FUZZ_RANDOM").is_some() {
                TestRunner::new(config)
            } else {
                TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
            };
            let (accepted, refused) = (Cell::new(0u64), Cell::new(0u64));
            let outcome = runner.run(&strategy(), |input| {
                *current.lock().unwrap() = Some(format!("{input:?}"));
                match target(&input) {
                    Ok(Verdict::Accepted) => accepted.set(accepted.get() + 1),
                    Ok(Verdict::Refused) => refused.set(refused.get() + 1),
                    Err(why) => return Err(TestCaseError::fail(why)),
                }
                let _ = done.send(None);
                Ok(())
            });
            let outcome = outcome.map_err(|e| e.to_string());
            let _ = done.send(Some((outcome, accepted.get(), refused.get())));
        }
    });
    loop {
        match finished.recv_timeout(HANG) {
            Ok(None) => continue,
            Ok(Some((outcome, accepted, refused))) => {
                worker.join().expect("the fuzz thread");
                if let Err(failure) = outcome {
                    panic!("fuzz: {name}: {failure}");
                }
                eprintln!(
                    "fuzz: {name}: {} cases ({accepted} accepted, {refused} refused) in {:.1?}",
                    accepted + refused,
                    started.elapsed()
                );
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "fuzz: {name}: a case took longer than {HANG:?}: {}",
                current.lock().unwrap().clone().unwrap_or_default()
            ),
            // The thread died without a word: a panic proptest did not catch.
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "fuzz: {name}: the fuzz thread died on {:?}: {:?}",
                current.lock().unwrap().clone(),
                worker.join().err()
            ),
        }
    }
}

/// A refusal must say why.
fn refused(message: &str) -> Result<Verdict, String> {
    if message.trim().is_empty() {
        Err("refused without a message".to_owned())
    } else {
        Ok(Verdict::Refused)
    }
}

// --- the webhook ---------------------------------------------------------------

fn review_seeds() -> Vec<Value> {
    let mut seeds = Vec::new();
    for pod in fixtures::pods() {
        for (operation, dry_run) in [("CREATE", false), ("CREATE", true), ("UPDATE", false)] {
            let review = fixtures::review(operation, dry_run, &pod);
            seeds.push(serde_json::from_slice(&review).expect("a review"));
        }
    }
    seeds
}

struct Handler {
    runtime: tokio::runtime::Runtime,
    seeds: Vec<Value>,
    metrics: Arc<Metrics>,
    app: axum::Router,
}

fn handler() -> &'static Handler {
    static HANDLER: std::sync::OnceLock<Handler> = std::sync::OnceLock::new();
    HANDLER.get_or_init(|| {
        let metrics = Arc::new(Metrics::new());
        let caches = Caches::new(None, metrics.clone());
        caches.policies_listed(&[
            fixtures::policy("web", Mode::Enforce, None),
            fixtures::policy("observe", Mode::Audit, None),
        ]);
        for kind in Kind::ALL {
            caches.owners_listed(kind, Vec::new());
        }
        let app = router(Webhook {
            lookup: Arc::new(caches),
            caps: Capabilities::default(),
            metrics: metrics.clone(),
        });
        Handler {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            seeds: review_seeds(),
            metrics,
            app,
        }
    })
}

/// The handler's answer: a 200 that allows, with the request's uid when it had one
/// (a patch only where it applies), or a 400 that says why. Never a panic inside.
fn admit(case: &Case) -> Result<Verdict, String> {
    let handler = handler();
    let body = bytes_of(case, &handler.seeds, json_bytes);
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .map_err(|e| e.to_string())?;
    let (status, answer) = handler.runtime.block_on(async {
        let response = handler
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, bytes.map(|b| b.to_vec()).unwrap_or_default())
    });
    let panics = handler
        .metrics
        .encode()
        .map_err(|e| e.to_string())?
        .lines()
        .any(|line| line.starts_with("graceful_admission_fail_open_total{reason=\"panic\"}"));
    if panics {
        return Err("the handler panicked (it failed open on a panic)".to_owned());
    }
    match status {
        StatusCode::BAD_REQUEST => refused(&String::from_utf8_lossy(&answer)),
        StatusCode::OK => {
            let review: Value = serde_json::from_slice(&answer)
                .map_err(|e| format!("an unreadable answer: {e}"))?;
            let response = &review["response"];
            if response["allowed"] != true {
                return Err(format!("not allowed: {review}"));
            }
            // The handler skips the fields it does not read, bad bytes in them included:
            // the rest is checked where the test can read the request too.
            let Ok(sent) = serde_json::from_slice::<Value>(&body) else {
                return Ok(Verdict::Accepted);
            };
            if response["uid"] != sent["request"]["uid"] {
                return Err(format!(
                    "uid {} for {}",
                    response["uid"], sent["request"]["uid"]
                ));
            }
            if let Some(patch) = response["patch"].as_str() {
                use base64::Engine;
                let patch = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .map_err(|e| e.to_string())?;
                let patch: json_patch::Patch =
                    serde_json::from_slice(&patch).map_err(|e| e.to_string())?;
                let mut pod = sent["request"]["object"].clone();
                json_patch::patch(&mut pod, &patch)
                    .map_err(|e| format!("the patch does not apply to the pod: {e}"))?;
            }
            Ok(Verdict::Accepted)
        }
        other => Err(format!("answered {other}")),
    }
}

#[test]
fn hostile_admission_reviews_get_an_answer_or_a_400_that_says_why() {
    fuzz("admission review", case, admit);
}

// --- graceful mutate -----------------------------------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The manifests and policies of the golden tests and the examples, as values.
fn manifest_seeds() -> (Vec<Value>, Vec<String>) {
    let mut files = vec![repo().join("examples/checkout.yaml")];
    for entry in std::fs::read_dir(repo().join("tests/golden")).expect("the golden tests") {
        let dir = entry.expect("an entry").path();
        for name in ["input.yaml", "input.json"] {
            if dir.join(name).exists() {
                files.push(dir.join(name));
            }
        }
    }
    let (mut seeds, mut texts) = (Vec::new(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a seed");
        texts.push(text.clone());
        let stream = graceful::manifest::read(&text).expect("a seed reads");
        // One document per seed; a stream of several is a `kind: List` of them.
        let values: Vec<Value> = stream
            .documents
            .into_iter()
            .filter_map(|d| d.value)
            .collect();
        seeds.push(json!({"apiVersion": "v1", "kind": "List", "items": values.clone()}));
        seeds.extend(values);
    }
    (seeds, texts)
}

fn policy_seeds() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("examples/policy.yaml")).expect("the example");
    let mut policy: Value = serde_yaml_ng::from_str(&text).expect("a policy");
    let mut seeds = vec![policy.clone()];
    policy["spec"]["selector"] = json!({"matchLabels": {"app": "checkout"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]});
    policy["spec"]["mode"] = json!("Audit");
    policy["spec"]["targets"] = json!("Serving");
    seeds.push(policy.clone());
    policy["spec"]["readiness"]["probe"] = json!({"httpGet": {"path": "/ready", "port": 8080}});
    seeds.push(policy);
    seeds
}

/// A manifest that leans on anchors, aliases and merge keys, which only text keeps.
const ANCHORED: &str = "base: &base {a: 1, b: &b [x, y]}\nlist: &l [*base, *b, *b]\n\
                        more: {<<: *base, c: [*l, *l]}\n---\nkind: Pod\napiVersion: v1\n\
                        metadata: {name: p, annotations: {graceful.dev/policy: web}}\n\
                        spec: {containers: [&c {name: app, image: app}], initContainers: [*c]}\n";

struct Manifests {
    seeds: Vec<Value>,
    /// The seed files as they are written, for splices of their text.
    texts: Vec<String>,
    policies: Vec<Value>,
}

fn manifests() -> &'static Manifests {
    static SEEDS: std::sync::OnceLock<Manifests> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let (seeds, mut texts) = manifest_seeds();
        texts.push(ANCHORED.to_owned());
        Manifests {
            seeds,
            texts,
            policies: policy_seeds(),
        }
    })
}

/// `graceful mutate` of the case as the manifest, with the example policy: output, or
/// an error that says what.
fn mutate(case: &Case) -> Result<Verdict, String> {
    let seeds = manifests();
    // A third of the cases splice the seed files' own text; the rest write the edited
    // values as JSON or YAML.
    let bytes = match case {
        Case::Mutated { seed, splices, .. } if seed % 3 == 0 => {
            let mut bytes = seeds.texts[seed / 3 % seeds.texts.len()]
                .clone()
                .into_bytes();
            splices.iter().for_each(|s| apply_splice(&mut bytes, s));
            bytes
        }
        Case::Mutated { seed, .. } if seed % 3 == 1 => bytes_of(case, &seeds.seeds, json_bytes),
        _ => bytes_of(case, &seeds.seeds, yaml_bytes),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let policy = yaml_bytes(&seeds.policies[0]);
    let policies = [(
        PathBuf::from("policy.yaml"),
        String::from_utf8(policy).map_err(|e| e.to_string())?,
    )];
    for output in [Output::Manifest, Output::Patch] {
        match render(
            Path::new("manifest.yaml"),
            &text,
            &policies,
            output,
            Capabilities::default(),
        ) {
            Ok(_) => {}
            Err(error) => {
                let message = format!("{error:#}");
                if message.contains("this is a bug") {
                    return Err(message);
                }
                return refused(&message);
            }
        }
    }
    Ok(Verdict::Accepted)
}

#[test]
fn hostile_manifests_are_mutated_or_refused_with_a_message() {
    fuzz("graceful mutate manifest", case, mutate);
}

/// The policy reader, as `graceful mutate --policy` reads a file: the case as the
/// policy file, mutated from the example's policies.
fn read_policy(case: &Case) -> Result<Verdict, String> {
    let seeds = manifests();
    let text = String::from_utf8_lossy(&bytes_of(case, &seeds.policies, yaml_bytes)).into_owned();
    let manifest = std::fs::read_to_string(repo().join("examples/checkout.yaml"))
        .map_err(|e| e.to_string())?;
    match render(
        Path::new("checkout.yaml"),
        &manifest,
        &[(PathBuf::from("policy.yaml"), text)],
        Output::Patch,
        Capabilities::default(),
    ) {
        Ok(_) => Ok(Verdict::Accepted),
        Err(error) => {
            let message = format!("{error:#}");
            if message.contains("this is a bug") {
                return Err(message);
            }
            refused(&message)
        }
    }
}

#[test]
fn hostile_policies_are_used_or_refused_with_a_message() {
    fuzz("policy reader", case, read_policy);
}

// --- the body cap, over TLS ------------------------------------------------------

/// The webhook's router behind the TLS server `graceful run` uses, on a free loopback
/// port, with a self-signed certificate; the port and that certificate.
async fn serve_tls() -> (u16, rustls::pki_types::CertificateDer<'static>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("a cert");
    let serving = Arc::new(graceful::tls::Serving::default());
    let key = graceful::tls::certified_key(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .expect("a serving certificate");
    serving.set(key);
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        serving.server_config().expect("a TLS configuration"),
    ));
    let metrics = Arc::new(Metrics::new());
    let app = router(Webhook {
        lookup: Arc::new(Caches::new(None, metrics.clone())),
        caps: Capabilities::default(),
        metrics,
    });
    let handle = axum_server::Handle::new();
    let server = axum_server::bind_rustls("127.0.0.1:0".parse().expect("an address"), tls)
        .handle(handle.clone())
        .serve(app.into_make_service());
    tokio::spawn(server);
    let address = handle.listening().await.expect("listening");
    (address.port(), cert.cert.der().clone())
}

/// POSTs a body of `len` bytes to `/mutate` over TLS, HTTP/1.1, writing it while it
/// reads the answer (as a client that sends a whole body does); the answer's head.
async fn post_tls(port: u16, ca: rustls::pki_types::CertificateDer<'static>, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("a root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("a connection");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let stream = connector.connect(name, tcp).await.expect("a TLS session");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.flush().await
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(error) => panic!(
                "the connection failed after {} bytes of answer: {error}",
                answer.len()
            ),
        }
    }
    sender.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_over_the_cap_gets_a_413_over_tls_not_a_dropped_connection() {
    let (port, ca) = serve_tls().await;
    let cap = graceful::webhook::MAX_BODY_BYTES;
    let over = post_tls(port, ca.clone(), cap + 1024 * 1024).await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over:?}");
    // At the cap the body is read whole: spaces are not JSON, so a 400 that says so.
    let at = post_tls(port, ca, cap).await;
    assert!(at.starts_with("HTTP/1.1 400"), "{at:?}");
    eprintln!(
        "fuzz: body cap: {} bytes + 1 MiB answered {:?}",
        cap,
        over.lines().next()
    );
}
