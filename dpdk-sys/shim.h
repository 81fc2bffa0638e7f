/* One-line wrappers for DPDK's static inline functions that Rampart calls once per burst or at
 * set-up. Per-packet helpers are written in Rust so they inline; nothing here holds logic. */
#ifndef RAMPART_SHIM_H
#define RAMPART_SHIM_H
#include <stdint.h>
struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t rampart_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                              uint16_t nb_pkts);
uint16_t rampart_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                              uint16_t nb_pkts);
struct rte_mbuf *rampart_pktmbuf_alloc(struct rte_mempool *mp);
int rampart_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void rampart_pktmbuf_free(struct rte_mbuf *m);
char *rampart_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rampart_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int rampart_pktmbuf_linearize(struct rte_mbuf *m);
unsigned rampart_lcore_id(void);
int rampart_errno(void);
uint64_t rampart_rdtsc(void);
uint64_t rampart_tsc_hz(void);
unsigned rampart_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned rampart_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned rampart_ring_count(const struct rte_ring *r);
#endif
