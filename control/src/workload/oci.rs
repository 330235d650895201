//! Kubernetes metadata without a runtime API: the OCI annotations the CRI runtimes write into
//! a container's bundle (`config.json`), read from the filesystem.
//!
//! Where the bundle is, by runtime ([`Roots::host`]):
//!
//! | runtime | `config.json` |
//! |---|---|
//! | containerd (namespace `k8s.io` for Kubernetes; also `moby` for Docker) | `/run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json` (k3s: below `/run/k3s/containerd`) |
//! | CRI-O | `/run/containers/storage/overlay-containers/<id>/userdata/config.json` |
//! | podman (root) | `/var/lib/containers/storage/overlay-containers/<id>/userdata/config.json` |
//!
//! What they write (podman writes none of these by itself: only `io.container.manager`,
//! `io.podman.annotations.*`, `io.kubernetes.cri-o.Created`/`TTY` and
//! `org.opencontainers.image.stopSignal`, plus whatever `--annotation` adds):
//!
//! | | containerd (CRI) | CRI-O |
//! |---|---|---|
//! | namespace | `io.kubernetes.cri.sandbox-namespace` | `io.kubernetes.pod.namespace` |
//! | pod | `io.kubernetes.cri.sandbox-name` | `io.kubernetes.pod.name` |
//! | pod uid | `io.kubernetes.cri.sandbox-uid` | `io.kubernetes.pod.uid` |
//! | container | `io.kubernetes.cri.container-name` | `io.kubernetes.container.name` |
//! | image | `io.kubernetes.cri.image-name` | `io.kubernetes.cri-o.ImageName` |
//! | pod sandbox (pause) | `io.kubernetes.cri.container-type` = `sandbox` | `io.kubernetes.cri-o.ContainerType` = `sandbox` |
//!
//! [`PodInfo::labels`] maps them to the labels a Docker-compatible runtime shows for a
//! Kubernetes container (`io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`,
//! `io.kubernetes.pod.uid`, `io.kubernetes.container.name`), so groups and criteria see one
//! set of keys whatever the runtime. A file larger than [`MAX_CONFIG`] or not JSON is an
//! error value; a container without a bundle under any root is `None`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest `config.json` read (they are tens of KiB).
pub const MAX_CONFIG: u64 = 4 << 20;

/// Most containerd namespaces looked into.
const MAX_NAMESPACES: usize = 64;

/// The label keys a Docker-compatible runtime shows for a Kubernetes container.
pub mod label {
    /// The pod's namespace.
    pub const NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The pod's name.
    pub const POD: &str = "io.kubernetes.pod.name";
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The container's name in the pod spec.
    pub const CONTAINER: &str = "io.kubernetes.container.name";
    /// `podsandbox` on a pod's sandbox (pause) container under Docker (dockershim,
    /// cri-dockerd), `container` on the others.
    pub const DOCKER_TYPE: &str = "io.kubernetes.docker.type";
}

/// Where bundles are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// containerd's task directories: `<root>/<namespace>/<id>/config.json`.
    pub containerd: Vec<PathBuf>,
    /// containers/storage (CRI-O, podman): `<root>/<id>/userdata/config.json`.
    pub storage: Vec<PathBuf>,
}

impl Roots {
    /// The runtimes' default locations (module documentation).
    pub fn host() -> Self {
        Self {
            containerd: vec![
                PathBuf::from("/run/containerd/io.containerd.runtime.v2.task"),
                PathBuf::from("/run/k3s/containerd/io.containerd.runtime.v2.task"),
            ],
            storage: vec![
                PathBuf::from("/run/containers/storage/overlay-containers"),
                PathBuf::from("/var/lib/containers/storage/overlay-containers"),
            ],
        }
    }
}

/// What a bundle says about the pod a container belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod's name.
    pub pod: Option<String>,
    /// The pod's uid.
    pub pod_uid: Option<String>,
    /// The container's name in the pod.
    pub container: Option<String>,
    /// The image as the pod spec names it.
    pub image: Option<String>,
    /// The pod's sandbox (pause) container, which only holds the pod's namespaces.
    pub sandbox: bool,
}

impl PodInfo {
    /// What `annotations` say; `None` when they name no pod (not a Kubernetes container).
    /// containerd's keys win over CRI-O's when both are present. Empty values count as
    /// absent.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| annotations.get(*k).filter(|v| !v.is_empty()))
                .cloned()
        };
        let info = Self {
            namespace: get(&["io.kubernetes.cri.sandbox-namespace", label::NAMESPACE]),
            pod: get(&["io.kubernetes.cri.sandbox-name", label::POD]),
            pod_uid: get(&["io.kubernetes.cri.sandbox-uid", label::POD_UID]),
            container: get(&["io.kubernetes.cri.container-name", label::CONTAINER]),
            image: get(&[
                "io.kubernetes.cri.image-name",
                "io.kubernetes.cri-o.ImageName",
            ]),
            sandbox: get(&[
                "io.kubernetes.cri.container-type",
                "io.kubernetes.cri-o.ContainerType",
            ])
            .is_some_and(|t| t == "sandbox"),
        };
        (info.namespace.is_some() || info.pod.is_some() || info.sandbox).then_some(info)
    }

    /// As the labels a Docker-compatible runtime shows.
    pub fn labels(&self) -> BTreeMap<String, String> {
        [
            (label::NAMESPACE, &self.namespace),
            (label::POD, &self.pod),
            (label::POD_UID, &self.pod_uid),
            (label::CONTAINER, &self.container),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }

    /// `<namespace>/<pod>/<container>`, as far as known; `None` without a pod name.
    pub fn name(&self) -> Option<String> {
        let pod = self.pod.as_deref()?;
        let mut name = match &self.namespace {
            Some(ns) => format!("{ns}/{pod}"),
            None => pod.to_owned(),
        };
        if let Some(c) = &self.container {
            name.push('/');
            name.push_str(c);
        }
        Some(name)
    }
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Opening or reading it failed (not because it does not exist).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_CONFIG`].
    #[error("{} is larger than {MAX_CONFIG} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not an OCI runtime configuration (annotations must be a map of strings).
    #[error("{} is not an OCI runtime configuration", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The id could name another path.
    #[error("bad container id `{0}`")]
    BadId(String),
}

#[derive(Debug, Deserialize)]
struct Spec {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// The bundle's `config.json` of container `id` under `roots`: the first that exists, in the
/// order containerd (every namespace), then containers/storage.
pub fn find_config(roots: &Roots, id: &str) -> Result<Option<PathBuf>, OciError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(OciError::BadId(id.to_owned()));
    }
    for root in &roots.containerd {
        let Ok(namespaces) = std::fs::read_dir(root) else {
            continue;
        };
        for ns in namespaces.flatten().take(MAX_NAMESPACES) {
            let path = ns.path().join(id).join("config.json");
            if path.is_file() {
                return Ok(Some(path));
            }
        }
    }
    Ok(roots
        .storage
        .iter()
        .map(|root| root.join(id).join("userdata").join("config.json"))
        .find(|p| p.is_file()))
}

/// The annotations of the OCI runtime configuration at `path`; `None` when it does not exist.
pub fn read_annotations(path: &Path) -> Result<Option<BTreeMap<String, String>>, OciError> {
    let read = |source| OciError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let mut raw = Vec::new();
    // One byte more than allowed tells a file that is too large, whatever its metadata says.
    file.take(MAX_CONFIG + 1)
        .read_to_end(&mut raw)
        .map_err(read)?;
    if raw.len() as u64 > MAX_CONFIG {
        return Err(OciError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let spec: Spec = serde_json::from_slice(&raw).map_err(|source| OciError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(spec.annotations.unwrap_or_default()))
}

/// What container `id`'s bundle under `roots` says about its pod: `None` without a bundle or
/// when its annotations name no pod.
pub fn pod_info(roots: &Roots, id: &str) -> Result<Option<PodInfo>, OciError> {
    let Some(path) = find_config(roots, id)? else {
        return Ok(None);
    };
    Ok(read_annotations(&path)?.and_then(|a| PodInfo::from_annotations(&a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn roots(dir: &Path) -> Roots {
        Roots {
            containerd: vec![dir.join("containerd")],
            storage: vec![dir.join("run-storage"), dir.join("lib-storage")],
        }
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// containerd's CRI plugin, as a Kubernetes node writes it (trimmed).
    const CONTAINERD: &str = r#"{"ociVersion":"1.1.0","process":{"args":["/app"]},
        "annotations":{
          "io.kubernetes.cri.container-name":"coredns",
          "io.kubernetes.cri.container-type":"container",
          "io.kubernetes.cri.image-name":"registry.k8s.io/coredns/coredns:v1.11.1",
          "io.kubernetes.cri.sandbox-id":"5f1b",
          "io.kubernetes.cri.sandbox-name":"coredns-76f75df574-x2x7d",
          "io.kubernetes.cri.sandbox-namespace":"kube-system",
          "io.kubernetes.cri.sandbox-uid":"4cad64d0-7a36-452a-8a08-bd3a694cdad5"}}"#;

    /// CRI-O's pause container.
    const CRIO_SANDBOX: &str = r#"{"annotations":{
          "io.kubernetes.cri-o.ContainerType":"sandbox",
          "io.kubernetes.container.name":"POD",
          "io.kubernetes.pod.name":"web-0",
          "io.kubernetes.pod.namespace":"shop",
          "io.kubernetes.pod.uid":"u-1"}}"#;

    /// What podman 4.3 writes for `podman run` without `--annotation`.
    const PODMAN: &str = r#"{"annotations":{
          "io.container.manager":"libpod",
          "io.kubernetes.cri-o.Created":"2026-11-29T14:23:45.721579153Z",
          "io.kubernetes.cri-o.TTY":"false",
          "io.podman.annotations.autoremove":"FALSE",
          "org.opencontainers.image.stopSignal":"15"}}"#;

    #[test]
    fn containerd_annotations_become_docker_labels() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        // An unrelated namespace first, the bundle in k8s.io.
        fs::create_dir_all(dir.path().join("containerd/moby")).unwrap();
        write(
            &dir.path()
                .join("containerd/k8s.io")
                .join(ID)
                .join("config.json"),
            CONTAINERD,
        );
        let info = pod_info(&r, ID).unwrap().unwrap();
        assert_eq!(
            info,
            PodInfo {
                namespace: Some("kube-system".into()),
                pod: Some("coredns-76f75df574-x2x7d".into()),
                pod_uid: Some("4cad64d0-7a36-452a-8a08-bd3a694cdad5".into()),
                container: Some("coredns".into()),
                image: Some("registry.k8s.io/coredns/coredns:v1.11.1".into()),
                sandbox: false,
            }
        );
        assert_eq!(
            info.labels(),
            BTreeMap::from([
                (label::NAMESPACE.into(), "kube-system".into()),
                (label::POD.into(), "coredns-76f75df574-x2x7d".into()),
                (
                    label::POD_UID.into(),
                    "4cad64d0-7a36-452a-8a08-bd3a694cdad5".into()
                ),
                (label::CONTAINER.into(), "coredns".into()),
            ])
        );
        assert_eq!(
            info.name().as_deref(),
            Some("kube-system/coredns-76f75df574-x2x7d/coredns")
        );
    }

    #[test]
    fn crio_sandbox_and_storage_roots() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        // Only in the second storage root (podman's graph root).
        write(
            &dir.path()
                .join("lib-storage")
                .join(ID)
                .join("userdata/config.json"),
            CRIO_SANDBOX,
        );
        let info = pod_info(&r, ID).unwrap().unwrap();
        assert!(info.sandbox);
        assert_eq!(info.namespace.as_deref(), Some("shop"));
        assert_eq!(info.container.as_deref(), Some("POD"));
        assert_eq!(info.image, None);
        assert_eq!(info.labels().len(), 4);
        // The run root wins over the graph root.
        write(
            &dir.path()
                .join("run-storage")
                .join(ID)
                .join("userdata/config.json"),
            PODMAN,
        );
        assert_eq!(pod_info(&r, ID).unwrap(), None);
    }

    #[test]
    fn no_bundle_no_pod() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        assert_eq!(pod_info(&r, ID).unwrap(), None);
        assert_eq!(find_config(&r, ID).unwrap(), None);
        assert_eq!(
            read_annotations(&dir.path().join("none.json")).unwrap(),
            None
        );
        write(&dir.path().join("a.json"), r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(
            read_annotations(&dir.path().join("a.json")).unwrap(),
            Some(BTreeMap::new())
        );
        write(&dir.path().join("n.json"), r#"{"annotations":null}"#);
        assert_eq!(
            read_annotations(&dir.path().join("n.json")).unwrap(),
            Some(BTreeMap::new())
        );
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let path = dir
            .path()
            .join("run-storage")
            .join(ID)
            .join("userdata/config.json");
        for bad in [
            "",
            "{",
            "not json",
            r#"{"annotations":{"io.kubernetes.pod.name":1}}"#,
            r#"{"annotations":["a"]}"#,
            "[1,2]",
            "\u{0}\u{1}",
        ] {
            write(&path, bad);
            assert!(
                matches!(pod_info(&r, ID), Err(OciError::Json { .. })),
                "{bad:?}"
            );
        }
        let mut big = String::from(r#"{"annotations":{},"pad":""#);
        big.push_str(&"a".repeat(usize::try_from(MAX_CONFIG).unwrap()));
        big.push_str("\"}");
        write(&path, &big);
        assert!(matches!(pod_info(&r, ID), Err(OciError::TooLarge { .. })));
        // A directory where the file should be is skipped, not read.
        fs::remove_file(&path).unwrap();
        fs::create_dir_all(&path).unwrap();
        assert_eq!(pod_info(&r, ID).unwrap(), None);
        assert!(matches!(
            read_annotations(&path),
            Err(OciError::Read { .. })
        ));
        for id in ["", "../etc", "a/b", ".", &"a".repeat(129)] {
            assert!(
                matches!(pod_info(&r, id), Err(OciError::BadId(_))),
                "{id:?}"
            );
        }
    }

    #[test]
    fn which_annotations_name_a_pod() {
        let a = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(PodInfo::from_annotations(&a(&[])), None);
        assert_eq!(
            PodInfo::from_annotations(&a(&[("io.kubernetes.container.name", "c")])),
            None
        );
        assert_eq!(
            PodInfo::from_annotations(&a(&[("io.kubernetes.pod.namespace", "")])),
            None
        );
        // containerd's pause container names no container.
        let s = PodInfo::from_annotations(&a(&[
            ("io.kubernetes.cri.container-type", "sandbox"),
            ("io.kubernetes.cri.sandbox-name", "p"),
        ]))
        .unwrap();
        assert!(s.sandbox);
        assert_eq!(s.name().as_deref(), Some("p"));
        // containerd's keys win over CRI-O's.
        let both = PodInfo::from_annotations(&a(&[
            ("io.kubernetes.cri.sandbox-namespace", "a"),
            ("io.kubernetes.pod.namespace", "b"),
        ]))
        .unwrap();
        assert_eq!(both.namespace.as_deref(), Some("a"));
        assert_eq!(both.name(), None);
        assert!(!both.sandbox);
    }
}
