/*
 * Shims for DPDK functions that are `static inline` (or macros) in DPDK's headers and so have
 * no symbol to link against. Each is a one-line forwarder; the Rust side re-exports them under
 * DPDK's own names (see src/lib.rs). Only per-burst and setup calls live here: per-packet mbuf
 * accessors are computed in Rust from the struct layout.
 */
#ifndef PALISADE_FFI_SHIM_H
#define PALISADE_FFI_SHIM_H

#define _GNU_SOURCE
#include <stdio.h>
#include <sys/types.h>

#include <rte_config.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

int shim_rte_errno(void);

/* Points DPDK's log at a glibc cookie stream whose writes go to `write_fn` (fopencookie has no
 * binding in the libc crate). Returns 0, or -1 when the stream cannot be created. */
int shim_rte_openlog_cookie(ssize_t (*write_fn)(void *cookie, const char *buf, size_t size));
unsigned shim_rte_lcore_id(void);

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                               uint16_t nb_pkts);
uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                               uint16_t nb_pkts);

struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp);
int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void shim_rte_pktmbuf_free(struct rte_mbuf *m);

unsigned shim_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n);
unsigned shim_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n);
unsigned shim_rte_ring_count(const struct rte_ring *r);

/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP (function-like macros bindgen cannot
 * evaluate): the hash types symmetric RSS asks for. */
uint64_t shim_eth_rss_ip_tcp_udp(void);

#endif
