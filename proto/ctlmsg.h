/* ctlmsg.h: the control protocol's transport, shared by client-lib/,
 * broker/control.c and gvmctl: one protobuf `gvm.Control` per SOCK_SEQPACKET
 * datagram, with file descriptors riding along as SCM_RIGHTS. */
#ifndef GVM_CTLMSG_H
#define GVM_CTLMSG_H

#include <stddef.h>

#include "gvm.pb-c.h"
#include "gvm_proto.h"

/* Sends m with nfds descriptors. 0 or -errno. */
int gvm_ctl_send(int sock, const Gvm__Control *m, const int *fds, int nfds);

/* Receives one message and up to maxfds descriptors (the rest, if any, are
 * closed and -EMSGSIZE returned). *m must be freed with
 * gvm__control__free_unpacked(*m, NULL). -ECONNRESET when the peer has
 * gone, -EAGAIN on a non-blocking socket with nothing to read, -EBADMSG for
 * a datagram that is not a Control message (its fds are closed). */
int gvm_ctl_recv(int sock, Gvm__Control **m, int *fds, int *nfds, int maxfds);

/* Closes n descriptors (after a failed exchange). */
void gvm_ctl_close_fds(const int *fds, int n);

/* A connected SOCK_SEQPACKET socket to the broker at path, or -errno. */
int gvm_ctl_connect(const char *path);
/* Asks the broker listening on socket path for its counters: 0 with its
 * Stats message in *m (free with gvm__control__free_unpacked), or -errno
 * (-EBADMSG for an answer that is no Stats). */
int gvm_ctl_stats(const char *path, Gvm__Control **m);
/* The same for a page of the donor table from index first: a Donors
 * message in *m. */
int gvm_ctl_donors(const char *path, unsigned first, Gvm__Control **m);

#endif
