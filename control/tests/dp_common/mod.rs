//! Shared by the `dp_*` tests: where `palisade-dp` is, and a guard that kills the dataplanes a
//! failing test leaves behind.

use std::path::PathBuf;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `PALISADE_DP`, else `palisade-dp` next to the test executable's `deps` directory
/// (`cargo build -p dataplane --bin palisade-dp`).
pub fn dp_binary() -> PathBuf {
    std::env::var_os("PALISADE_DP")
        .map(PathBuf::from)
        .unwrap_or_else(|| palisade_tests::bin("palisade-dp"))
}

/// Kills, on drop, every `palisade-dp` pid it was given that still runs (a failing test must
/// not leave one behind), checking first that the pid still names a palisade-dp.
#[derive(Debug, Default)]
pub struct Reaper(pub Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("palisade-dp")
                && let Ok(p) = i32::try_from(pid)
            {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
    }
}
