/* server.h: gvm-memserver's network side: N libuv loops (one per thread)
 * accepting on SO_REUSEPORT sockets, authenticating peers and serving the
 * donor protocol from the shared store (store.h). */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include <stdbool.h>

#include "config.h"
#include "memserver.h"
#include "store.h"

/* Blocks (or unblocks) SIGTERM and SIGINT in the calling thread; threads
 * it starts later inherit that. */
void ms_block_stop_signals(bool block);
/* Binds, serves until SIGTERM/SIGINT, then closes every connection.
 * Returns 0, or -errno after logging why it could not start. */
int ms_server_run(const struct ms_config *cfg, struct ms_store *store,
		  const struct gvm_key *key);

#endif
