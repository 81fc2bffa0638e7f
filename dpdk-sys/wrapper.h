/* Headers Rampart binds. Kept narrow: bindgen allowlists in build.rs pick the items. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_acl.h>
#include <rte_pdump.h>
#include "shim.h"
