//! The netlink proc connector against the real kernel (needs root and the host's network
//! namespace; CI is both): the self-test, fork/exec/exit of a child, loss reported as
//! `Batch::Lost` (never hidden), and the plain-words refusal outside the host namespace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control::process::connector::{Batch, Connector, ConnectorError, ProcEvent};

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

#[test]
fn a_child_is_seen_forking_executing_and_exiting() {
    let mut c = Connector::self_test(Duration::from_secs(5), 4 << 20)
        .unwrap_or_else(|e| panic!("{}", control::error_chain(&e)));
    let mut child = quiet(&mut Command::new("/bin/sh"))
        .args(["-c", "/bin/true; exit 3"])
        .spawn()
        .unwrap();
    let sh = child.id();
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let me = std::process::id();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !seen.contains(&ProcEvent::Exit {
            pid: sh,
            code: 3 << 8,
        })
    {
        if let Batch::Events(evs) = c.next(Duration::from_millis(100)).unwrap() {
            seen.extend(evs);
        }
    }
    assert!(
        seen.contains(&ProcEvent::Fork {
            parent: me,
            child: sh
        }),
        "{seen:?}"
    );
    assert!(seen.contains(&ProcEvent::Exec { pid: sh }), "{seen:?}");
    // The shell forked /bin/true, which executed and exited.
    let true_pid = seen.iter().find_map(|e| match e {
        ProcEvent::Fork { parent, child } if *parent == sh => Some(*child),
        _ => None,
    });
    let true_pid = true_pid.unwrap_or_else(|| panic!("no fork by the shell: {seen:?}"));
    assert!(
        seen.contains(&ProcEvent::Exec { pid: true_pid }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&ProcEvent::Exit {
            pid: true_pid,
            code: 0
        }),
        "{seen:?}"
    );
    assert!(
        seen.contains(&ProcEvent::Exit {
            pid: sh,
            code: 3 << 8
        }),
        "{seen:?}"
    );
}

#[test]
fn a_slow_reader_is_told_it_lost_events() {
    // The smallest receive buffer the kernel allows, and nobody reading while 3000 processes
    // come and go: the kernel must drop, and say so.
    let mut c = Connector::open(0).unwrap_or_else(|e| panic!("{}", control::error_chain(&e)));
    let started = Instant::now();
    let mut storm = quiet(&mut Command::new("/bin/sh"))
        .args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done",
        ])
        .spawn()
        .unwrap();
    storm.wait().unwrap();
    eprintln!("3000 fork+exec in {:?}", started.elapsed());
    let mut lost = false;
    let mut events = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.next(Duration::from_millis(100)).unwrap() {
            Batch::Lost => lost = true,
            Batch::Events(evs) if evs.is_empty() => break,
            Batch::Events(evs) => events += evs.len(),
        }
    }
    eprintln!("read {events} events after the storm; loss reported: {lost}");
    assert!(
        lost,
        "3000 processes through a minimal buffer lost nothing?"
    );
    assert!(
        c.counters.lost.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "counted"
    );
}

#[test]
fn outside_the_host_network_namespace_the_refusal_says_why() {
    // A thread of our own in a fresh network namespace (namespaces are per thread); it ends
    // right after, taking the namespace with it.
    let r = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        Connector::open(1 << 20).map(drop)
    })
    .join()
    .unwrap();
    match r {
        Err(e @ ConnectorError::NotHostNetns) => {
            assert!(e.to_string().contains("host's network namespace"), "{e}");
        }
        other => panic!("expected NotHostNetns, got {other:?}"),
    }
}
