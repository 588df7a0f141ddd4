/* ctlmsg.c: sending and receiving `gvm.Control` datagrams with descriptors
 * (ctlmsg.h). Every received descriptor is either handed to the caller or
 * closed: nothing leaks on a malformed or oversized message. */
#include "ctlmsg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int gvm_ctl_send(int sock, const Gvm__Control *m, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * GVM_CTL_FDS_MAX)];
		struct cmsghdr align;
	} u;
	size_t len = gvm__control__get_packed_size(m);
	struct msghdr msg = { 0 };
	struct iovec iov;
	uint8_t *buf;
	ssize_t n;

	if (len > GVM_CTL_MSG_MAX_BYTES || nfds < 0 || nfds > (int)GVM_CTL_FDS_MAX)
		return -EMSGSIZE;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	gvm__control__pack(m, buf);
	iov.iov_base = buf;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (nfds) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	free(buf);
	if (n < 0)
		return errno == EPIPE ? -ECONNRESET : -errno;
	return 0;
}

void gvm_ctl_close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int gvm_ctl_recv(int sock, Gvm__Control **m, int *fds, int *nfds, int maxfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * GVM_CTL_FDS_MAX)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { 0 };
	struct iovec iov;
	struct cmsghdr *c;
	uint8_t *buf;
	ssize_t n;
	int got = 0, err = 0;

	*nfds = 0;
	*m = NULL;
	buf = malloc(GVM_CTL_MSG_MAX_BYTES);
	if (!buf)
		return -ENOMEM;
	iov.iov_base = buf;
	iov.iov_len = GVM_CTL_MSG_MAX_BYTES;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		err = errno == EWOULDBLOCK ? -EAGAIN : -errno;
		free(buf);
		return err;
	}
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		int k, *in;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		in = (int *)CMSG_DATA(c);
		for (int i = 0; i < k; i++) {
			if (got < maxfds)
				fds[got++] = in[i];
			else {
				close(in[i]);
				err = -EMSGSIZE;
			}
		}
	}
	if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		err = -EMSGSIZE;
	if (n == 0 && !got && !err) {
		free(buf);
		return -ECONNRESET;
	}
	if (!err) {
		*m = gvm__control__unpack(NULL, (size_t)n, buf);
		if (!*m)
			err = -EBADMSG;
	}
	free(buf);
	if (err) {
		gvm_ctl_close_fds(fds, got);
		return err;
	}
	*nfds = got;
	return 0;
}

int gvm_ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(s);
		return err;
	}
	return s;
}

/* Sends req to the broker at path and receives its answer, which must be
 * of case want (else -EBADMSG). */
static int ctl_ask(const char *path, const Gvm__Control *req, Gvm__Control__MsgCase want,
		   Gvm__Control **m)
{
	int s = gvm_ctl_connect(path), fds[1], nfds, err;

	if (s < 0)
		return s;
	err = gvm_ctl_send(s, req, NULL, 0);
	if (!err)
		err = gvm_ctl_recv(s, m, fds, &nfds, 1);
	close(s);
	if (!err && (*m)->msg_case != want) {
		gvm__control__free_unpacked(*m, NULL);
		err = -EBADMSG;
	}
	return err;
}

int gvm_ctl_stats(const char *path, Gvm__Control **m)
{
	Gvm__Control req = GVM__CONTROL__INIT;
	Gvm__StatsRequest sr = GVM__STATS_REQUEST__INIT;

	req.msg_case = GVM__CONTROL__MSG_STATS_REQUEST;
	req.stats_request = &sr;
	return ctl_ask(path, &req, GVM__CONTROL__MSG_STATS, m);
}

int gvm_ctl_donors(const char *path, unsigned first, Gvm__Control **m)
{
	Gvm__Control req = GVM__CONTROL__INIT;
	Gvm__DonorsRequest dr = GVM__DONORS_REQUEST__INIT;

	dr.first = first;
	req.msg_case = GVM__CONTROL__MSG_DONORS_REQUEST;
	req.donors_request = &dr;
	return ctl_ask(path, &req, GVM__CONTROL__MSG_DONORS, m);
}
