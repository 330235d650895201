//! Finds the system DPDK with pkg-config, compiles the C shim and generates narrow bindings.
//!
//! Both the shim and bindgen get exactly pkg-config's cflags (`-include rte_config.h
//! -march=...`): DPDK's headers change layout with them, so the two must agree with the
//! library that was built. Nothing here hard-codes a DPDK library list or `-march=native`.
#![allow(clippy::print_stderr, clippy::expect_used, clippy::panic)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";

const MISSING_HINT: &str = "DPDK >= 22.11 development files were not found by pkg-config.\n\
     On Debian 12 install them with:\n\
     \n    apt-get install dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev\n\
     \n\
     or run `scripts/setup.sh` as root (it also reserves hugepages).\n\
     If DPDK lives elsewhere, point PKG_CONFIG_PATH at the directory holding libdpdk.pc.";

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// Raw `pkg-config --cflags libdpdk`, split into arguments.
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let out = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {pkg_config}: {e}\n{MISSING_HINT}")));
    if !out.status.success() {
        fail(&format!(
            "{pkg_config} --cflags libdpdk failed: {}\n{MISSING_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .probe("libdpdk")
        .unwrap_or_else(|e| fail(&format!("{e}\n\n{MISSING_HINT}")));

    // `rte_eth_from_rings` (used to build in-process ring ports) is exported by the ring PMD,
    // which pkg-config lists only for static linking: name that one driver explicitly, from the
    // libdir pkg-config reported.
    for dir in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");

    let cflags = dpdk_cflags();

    let mut shim = cc::Build::new();
    shim.file("src/shim.c")
        .warnings(true)
        .extra_warnings(true)
        .opt_level(2);
    for f in &cflags {
        shim.flag(f);
    }
    shim.compile("palisade_dpdk_shim");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        // Narrow allowlist: `rte_.*` pulls in the AMX/AVX-512 intrinsics and breaks the build.
        .allowlist_function("shim_.*")
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|wait_lcore|mp_wait_lcore|process_type|hotplug_add|hotplug_remove|get_runtime_dir)")
        .allowlist_function("rte_(get_next_lcore|get_main_lcore|lcore_count|lcore_is_enabled|lcore_to_socket_id|socket_id|get_tsc_hz)")
        .allowlist_function("rte_(strerror|openlog_stream|log_set_global_level|log_get_global_level|log_cur_msg_loglevel)")
        .allowlist_function("rte_dev_(probe|remove)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count)")
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function("rte_eth_from_rings")
        .allowlist_function("rte_eth_dev_(configure|start|stop|close|info_get|socket_id|get_port_by_name|get_name_by_port|is_valid_port|count_avail|set_link_up|set_link_down)")
        .allowlist_function("rte_eth_(rx_queue_setup|tx_queue_setup|dev_adjust_nb_rx_tx_desc|stats_get|stats_reset|link_get_nowait|macaddr_get|promiscuous_enable|find_next_owned_by)")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_(conf|stats|link|dev_info|rxconf|txconf)")
        .allowlist_var("RTE_(MAX_LCORE|MAX_ETHPORTS|PKTMBUF_HEADROOM|MBUF_DEFAULT_DATAROOM|MEMPOOL_CACHE_MAX_SIZE|ETH_NAME_MAX_LEN|DEV_NAME_MAX_LEN)")
        .allowlist_var("RTE_ETH_(LINK_UP|LINK_DOWN|LINK_FULL_DUPLEX|MQ_RX_NONE|MQ_RX_RSS|MQ_TX_NONE|SPEED_NUM_.*)")
        .allowlist_var("RTE_LOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)")
        .allowlist_var("RING_F_(SP_ENQ|SC_DEQ)")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("rte_lcore_state_t|WAIT|RUNNING")
        .allowlist_type("rte_rmt_call_main_t")
        .allowlist_var("(SKIP|CALL)_MAIN")
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on DPDK's headers: {e}\nIs libclang-dev installed?")));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));
}
