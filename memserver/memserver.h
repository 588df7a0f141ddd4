/* memserver.h: defaults and limits of gvm-memserver, the donor daemon
 * (main.c parses them, server.c serves the protocol, store.c keeps pages). */
#ifndef MS_MEMSERVER_H
#define MS_MEMSERVER_H

#include <stdint.h>

#define MS_DEFAULT_LISTEN "127.0.0.1:7700"
#define MS_DEFAULT_CAPACITY_BYTES (1ull << 30)
#define MS_THREADS_MAX 64u
#define MS_CONNS_MAX 1024u             /* connections over all threads */
#define MS_LISTEN_BACKLOG 128
#define MS_READ_BUF_BYTES (64u * 1024u) /* per connection */
#define MS_CONN_BACKLOG_MAX_BYTES (8u << 20) /* unsent replies before we stop reading */
#define MS_AUTH_TIMEOUT_MS 10000u
#define MS_NAMESPACES_MAX 4096u
#define MS_STORE_SLOTS_MAX 0xfffffff0u /* 4 KiB slots: just under 16 TiB */

struct ms_config {
	const char *listen;
	uint64_t capacity_bytes; /* 0: the backing file's, or the default */
	const char *key_file;
	const char *backing; /* NULL: anonymous memory */
	unsigned threads;
};

#endif
