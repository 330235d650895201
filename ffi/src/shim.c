#include "shim.h"

int shim_rte_errno(void) { return rte_errno; }

int shim_rte_openlog_cookie(ssize_t (*write_fn)(void *cookie, const char *buf, size_t size)) {
    cookie_io_functions_t funcs = {.read = NULL, .write = write_fn, .seek = NULL, .close = NULL};
    FILE *f = fopencookie(NULL, "w", funcs);
    if (f == NULL) return -1;
    return rte_openlog_stream(f);
}

unsigned shim_rte_lcore_id(void) { return rte_lcore_id(); }

uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                               uint16_t nb_pkts) {
    return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                               uint16_t nb_pkts) {
    return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count) {
    return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void shim_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

unsigned shim_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n) {
    return rte_ring_enqueue_burst(r, obj_table, n, NULL);
}

unsigned shim_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n) {
    return rte_ring_dequeue_burst(r, obj_table, n, NULL);
}

unsigned shim_rte_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

uint64_t shim_eth_rss_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
