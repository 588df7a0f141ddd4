/* procs.h: test support for running real gvmmem daemons: a scratch folder,
 * key files, a gvm-memserver on a free loopback port with its log captured,
 * and stopping it to read its exit status. Binaries come from $GVM_BIN_DIR
 * (tests/run.sh sets it), else build/bin. */
#ifndef GVMT_PROCS_H
#define GVMT_PROCS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct gvmt_proc {
	pid_t pid;
	char addr[64]; /* "127.0.0.1:PORT" */
	char log[512];
};

/* A fresh folder under $TMPDIR for this test program. */
const char *gvmt_dir(void);
/* path = gvmt_dir()/name. */
void gvmt_path(char *out, size_t n, const char *name);
/* Writes len random bytes, mode 0600; loads it into key if not NULL. */
void gvmt_make_key(const char *path, size_t len, struct gvm_key *key);

/* Starts gvm-memserver with --listen on a free port, --key-file key_path and
 * the extra arguments (NULL-terminated); waits until it accepts. Returns
 * false if it exited instead (then p->log says why). */
bool gvmt_memserver_start(struct gvmt_proc *p, const char *key_path,
			  const char *const *extra);
/* Runs a program to completion (stdout+stderr to log): its exit status. */
int gvmt_run(const char *log, const char *const *argv);
/* Sends sig and waits: the exit status, or 128+signal if killed. */
int gvmt_proc_stop(struct gvmt_proc *p, int sig);
bool gvmt_proc_alive(const struct gvmt_proc *p);
/* Whether the file contains needle; counts occurrences. */
int gvmt_file_count(const char *path, const char *needle);
uint64_t gvmt_proc_rss_kib(const struct gvmt_proc *p);
const char *gvmt_bin(const char *name, char *buf, size_t n);

uint64_t gvmt_checksum(const uint8_t *data, size_t len);

#endif
