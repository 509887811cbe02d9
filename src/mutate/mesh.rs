//! Mesh proxies (Istio's `istio-proxy`, Linkerd's `linkerd-proxy`) and their own drain
//! settings on the pod, held against the policy's arithmetic. Pure.
//!
//! A proxy injected as a regular container is sent SIGTERM as the pod starts
//! terminating, beside the app; it must keep the app's network up for the app's sleep
//! and budget. A proxy injected as a native sidecar is sent SIGTERM only after the app
//! has exited; its drain must fit in the sidecars' shutdown time.

use serde_json::Value;

use super::ContainerView;

/// Istio's per-pod ProxyConfig (YAML or JSON); its `terminationDrainDuration` is how long
/// the proxy drains after SIGTERM. pilot-agent reads it from the pod's annotations when
/// it starts, so a value written after injection still counts.
pub const ISTIO_CONFIG: &str = "proxy.istio.io/config";

/// Linkerd's wait: the injector gives `linkerd-proxy` a preStop hook `/bin/sleep N`.
pub const LINKERD_WAIT: &str = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mesh {
    Istio,
    Linkerd,
}

impl Mesh {
    /// The mesh whose proxy `container` is, by name or image.
    pub fn of(container: &ContainerView) -> Option<Mesh> {
        let repository = container.image.as_deref().map(repository).unwrap_or("");
        match container.name.as_str() {
            "istio-proxy" => Some(Mesh::Istio),
            "linkerd-proxy" => Some(Mesh::Linkerd),
            _ if repository.ends_with("/proxyv2") => Some(Mesh::Istio),
            _ if repository.ends_with("linkerd/proxy") => Some(Mesh::Linkerd),
            _ => None,
        }
    }

    pub fn annotation(self) -> &'static str {
        match self {
            Mesh::Istio => ISTIO_CONFIG,
            Mesh::Linkerd => LINKERD_WAIT,
        }
    }

    /// The setting as users know it.
    pub fn setting(self) -> &'static str {
        match self {
            Mesh::Istio => "terminationDrainDuration",
            Mesh::Linkerd => "proxy-wait-before-exit-seconds",
        }
    }
}

/// What the policy needs of a proxy's drain, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The proxy must stay up at least this long from the start of termination.
    AtLeast(i64),
    /// The proxy's drain after its SIGTERM must fit in this long.
    AtMost(i64),
}

impl Need {
    /// For the proxy of `mesh`, a native sidecar or not, under a policy whose app needs
    /// `app_seconds` (sleep plus budget) and whose sidecars get `sidecar_seconds`; `None`
    /// where the setting does not bear on the arithmetic (Linkerd's wait on a native
    /// sidecar, which is stopped after the app anyway).
    pub fn of(mesh: Mesh, native: bool, app_seconds: i64, sidecar_seconds: i64) -> Option<Need> {
        match (mesh, native) {
            (Mesh::Istio, false) | (Mesh::Linkerd, false) => Some(Need::AtLeast(app_seconds)),
            (Mesh::Istio, true) => Some(Need::AtMost(sidecar_seconds)),
            (Mesh::Linkerd, true) => None,
        }
    }

    pub fn holds(self, seconds: f64) -> bool {
        match self {
            Need::AtLeast(want) => seconds >= want as f64,
            Need::AtMost(want) => seconds <= want as f64,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Need::AtLeast(seconds) | Need::AtMost(seconds) => seconds,
        }
    }
}

/// The proxy's drain in seconds as the annotation's text says it.
pub fn read(mesh: Mesh, text: &str) -> Result<f64, String> {
    match mesh {
        Mesh::Istio => {
            let config: Value = serde_yaml_ng::from_str(text)
                .map_err(|error| format!("{ISTIO_CONFIG} is not YAML: {error}"))?;
            match config.get("terminationDrainDuration") {
                Some(Value::String(duration)) => duration_seconds(duration),
                Some(other) => Err(format!(
                    "terminationDrainDuration in {ISTIO_CONFIG} is not a duration: {other}"
                )),
                None => Err(format!("{ISTIO_CONFIG} sets no terminationDrainDuration")),
            }
        }
        Mesh::Linkerd => text
            .trim()
            .parse::<u32>()
            .map(f64::from)
            .map_err(|_| format!("{LINKERD_WAIT} is not a number of seconds: {text:?}")),
    }
}

/// The annotation's text with the drain set to `seconds`, everything else kept.
pub fn write(mesh: Mesh, text: &str, seconds: i64) -> Result<String, String> {
    match mesh {
        Mesh::Istio => {
            let mut config: Value = serde_yaml_ng::from_str(text)
                .map_err(|error| format!("{ISTIO_CONFIG} is not YAML: {error}"))?;
            let Value::Object(map) = &mut config else {
                return Err(format!("{ISTIO_CONFIG} is not a mapping"));
            };
            map.insert(
                "terminationDrainDuration".to_owned(),
                Value::String(format!("{seconds}s")),
            );
            serde_json::to_string(&config).map_err(|error| error.to_string())
        }
        Mesh::Linkerd => Ok(seconds.to_string()),
    }
}

/// A Go duration (`5s`, `1m30s`, `1.5s`, `500ms`) in seconds.
pub fn duration_seconds(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a duration");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// `registry:5000/istio/proxyv2:1.24.0@sha256:...` without its tag and digest.
pub(super) fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: &str) -> ContainerView {
        ContainerView {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            ..ContainerView::default()
        }
    }

    #[test]
    fn proxies_are_known_by_name_or_image() {
        assert_eq!(Mesh::of(&container("istio-proxy", "x")), Some(Mesh::Istio));
        assert_eq!(
            Mesh::of(&container("proxy", "registry:5000/istio/proxyv2:1.24.0")),
            Some(Mesh::Istio)
        );
        assert_eq!(
            Mesh::of(&container("sidecar", "cr.l5d.io/linkerd/proxy:edge-25.1.1")),
            Some(Mesh::Linkerd)
        );
        assert_eq!(Mesh::of(&container("app", "nginx:1.27")), None);
    }

    #[test]
    fn go_durations_are_read() {
        assert_eq!(duration_seconds("5s"), Ok(5.0));
        assert_eq!(duration_seconds("1m30s"), Ok(90.0));
        assert_eq!(duration_seconds("1.5s"), Ok(1.5));
        assert_eq!(duration_seconds("500ms"), Ok(0.5));
        assert_eq!(duration_seconds("0"), Ok(0.0));
        assert!(duration_seconds("5").is_err());
        assert!(duration_seconds("5x").is_err());
        assert!(duration_seconds("").is_ok_and(|s| s == 0.0));
    }

    #[test]
    fn istio_config_is_read_and_rewritten_keeping_the_rest() {
        let text = "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 5s\n";
        assert_eq!(read(Mesh::Istio, text), Ok(5.0));
        let written = write(Mesh::Istio, text, 25).unwrap();
        assert_eq!(read(Mesh::Istio, &written), Ok(25.0));
        assert!(written.contains("holdApplicationUntilProxyStarts"));
        assert!(read(Mesh::Istio, "holdApplicationUntilProxyStarts: true").is_err());
        assert!(read(Mesh::Istio, "terminationDrainDuration: [").is_err());
        assert_eq!(read(Mesh::Linkerd, "30"), Ok(30.0));
        assert!(read(Mesh::Linkerd, "30s").is_err());
    }

    #[test]
    fn a_regular_proxy_must_outlast_the_app_and_a_native_one_fit_after_it() {
        assert_eq!(Need::of(Mesh::Istio, false, 25, 5), Some(Need::AtLeast(25)));
        assert_eq!(Need::of(Mesh::Istio, true, 25, 5), Some(Need::AtMost(5)));
        assert_eq!(Need::of(Mesh::Linkerd, true, 25, 5), None);
        assert!(Need::AtLeast(25).holds(25.0));
        assert!(!Need::AtLeast(25).holds(5.0));
        assert!(!Need::AtMost(5).holds(30.0));
    }
}
