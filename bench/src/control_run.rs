//! Scenario `mode-change`: how long a group's mode change through the REST API takes to reach
//! the dataplane. Starts `palisade up` with a `palisade-dp` (one adaptive worker forwarding
//! `net_null` -> `net_null`), declares a workload, then flips its group between monitor and
//! protect: each time, the time from sending `PATCH /v1/groups/{name}` until the dataplane's
//! running policy generation (polled through `GET /v1/stats`, which asks the dataplane) is
//! newer than before the change. The goal is 100 ms.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bench::median;
use serde::Serialize;
use serde_json::{Value, json};

use super::Probe;

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct ModeChangeReport {
    /// Changes measured.
    pub changes: usize,
    /// Milliseconds per change, in order.
    pub ms: Vec<f64>,
    /// Median.
    pub median_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Goal.
    pub goal_ms: f64,
}

struct Http {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Http {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("authorization", &auth)
                .send_json(b),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_json(b),
            _ => return Err(format!("{method} {path}: unsupported")),
        };
        let mut r = r.map_err(|e| format!("{method} {path}: {e}"))?;
        r.body_mut()
            .read_json::<Value>()
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    fn generation(&self) -> Option<u64> {
        self.call("GET", "/v1/stats", None)
            .ok()?
            .get("dataplane")?
            .get("generation")?
            .as_u64()
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Runs `changes` mode changes.
pub fn run(
    palisade: &Path,
    dp: &Path,
    tag: &str,
    changes: usize,
) -> Result<ModeChangeReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let cfg = dir.path().join("palisade.toml");
    let text = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{}\"\n\
         [dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"{tag}mode\"\nidle = \"adaptive\"\nstats_interval_s = 0\nsocket = \"{}\"\n\
         [[dataplane.port]]\nname = \"in\"\nkind = \"null\"\nsize = 64\n\
         [[dataplane.port]]\nname = \"sink\"\nkind = \"null\"\nno_rx = true\n\
         [[dataplane.pair]]\nports = [\"in\", \"sink\"]\n",
        dir.path().join("data").display(),
        dir.path().join("dp.sock").display()
    );
    std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
    let password = "bench-admin-password";
    let mut cmd = Command::new(palisade);
    cmd.arg("up")
        .arg("--config")
        .arg(&cfg)
        .arg("--dp")
        .arg(dp)
        .env("PALISADE_ADMIN_PASSWORD", password)
        .env("RUST_LOG", "warn");
    let mut up = Probe::spawn("palisade up", cmd, true, |_| None)?;
    let result = (|| {
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(30);
        let token = loop {
            up.check_alive()?;
            let r = agent
                .post(format!("{base}/v1/auth"))
                .send_json(json!({"username": "admin", "password": password}));
            if let Ok(mut r) = r
                && let Ok(v) = r.body_mut().read_json::<Value>()
                && let Some(t) = v.get("token").and_then(Value::as_str)
            {
                break t.to_owned();
            }
            if Instant::now() > deadline {
                return Err("palisade up did not answer a login within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let http = Http { base, token, agent };
        http.call(
            "POST",
            "/v1/workloads",
            Some(json!({"id": "bench1", "image": "bench", "ips": ["198.18.0.9"]})),
        )?;
        // Wait until the dataplane runs a policy at all.
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.generation().unwrap_or(0) == 0 {
            up.check_alive()?;
            if Instant::now() > deadline {
                return Err("the dataplane never ran a policy".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut ms = Vec::with_capacity(changes);
        for i in 0..changes {
            // Let any earlier push settle so the generation read is the running one.
            std::thread::sleep(Duration::from_millis(200));
            let before = http.generation().ok_or("no dataplane stats")?;
            let mode = if i % 2 == 0 { "protect" } else { "monitor" };
            let t = Instant::now();
            http.call(
                "PATCH",
                "/v1/groups/auto.bench",
                Some(json!({"network_mode": mode})),
            )?;
            loop {
                if http.generation().is_some_and(|g| g > before) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(format!(
                        "mode change {i} did not reach the dataplane in 10 s"
                    ));
                }
            }
            let took = t.elapsed().as_secs_f64() * 1e3;
            eprintln!("mode change {}/{changes}: {took:.1} ms", i + 1);
            ms.push(took);
        }
        Ok(ms)
    })();
    let lines = up.stop();
    let ms = result.map_err(|e| format!("{e}\npalisade up said:\n{}", lines.join("\n")))?;
    Ok(ModeChangeReport {
        changes: ms.len(),
        median_ms: median(&ms).unwrap_or(0.0),
        max_ms: ms.iter().copied().fold(0.0, f64::max),
        ms,
        goal_ms: 100.0,
    })
}
