/* cuse_dev.c: /dev/gvmmem, the broker's character device (CUSE), served on
 * the broker's libuv loop: cuse_lowlevel_new() makes the session, the
 * /dev/cuse fd we open is given to it with fuse_session_custom_io(), and a
 * uv_poll on that fd feeds fuse_session_process_buf(). Restricted ioctls
 * with the fixed structs of gvmmem_ioctl.h: VERSION, HELLO (a one-time
 * token) and STATS; read() is the status as text. Tokens and counters come
 * from the host (struct bk_cuse_host, broker/device.c); no broker header is
 * included here. The device's group and mode (udev) decide who may attach. */
#define FUSE_USE_VERSION 31
#include "cuse_dev.h"

#include <cuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gvm_proto.h"
#include "gvmmem_ioctl.h"
#include "log.h"

#define CUSE_CONTROL_DEV "/dev/cuse"
#define CUSE_STATUS_MAX_BYTES 4096u

struct bk_cuse {
	struct bk_cuse_host host;
	struct fuse_session *se;
	struct fuse_buf buf;
	uv_poll_t poll;
	int fd;
	bool ready, closing;
	char name[64];
};

static struct bk_cuse *dev_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void dev_open(fuse_req_t req, struct fuse_file_info *fi)
{
	fi->direct_io = 1;
	fi->nonseekable = 0;
	fuse_reply_open(req, fi);
}

static void dev_release(fuse_req_t req, struct fuse_file_info *fi)
{
	(void)fi;
	fuse_reply_err(req, 0);
}

static void dev_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	const struct bk_cuse_host *host = &dev_of(req)->host;
	char text[CUSE_STATUS_MAX_BYTES];
	size_t len = host->stats_text(host->ctx, text, sizeof(text));

	(void)fi;
	if (off < 0 || (size_t)off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	fuse_reply_buf(req, text + off, size);
}

static void dev_write(fuse_req_t req, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	(void)buf;
	(void)size;
	(void)off;
	(void)fi;
	fuse_reply_err(req, EINVAL);
}

static void dev_ioctl(fuse_req_t req, int cmd, void *arg, struct fuse_file_info *fi,
		      unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct bk_cuse *d = dev_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int err;

	(void)arg;
	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	switch ((unsigned)cmd) {
	case GVMMEM_IOC_VERSION: {
		struct gvmmem_version v = {
			.ioctl_version = GVMMEM_IOCTL_VERSION,
			.protocol_version = GVM_CTL_VERSION,
			.page_size = GVM_PAGE_SIZE,
			.extent_pages = d->host.extent_pages,
		};

		if (out_bufsz < sizeof(v))
			break;
		fuse_reply_ioctl(req, 0, &v, sizeof(v));
		return;
	}
	case GVMMEM_IOC_HELLO: {
		struct gvmmem_hello h = {
			.protocol_version = GVM_CTL_VERSION,
			.token_ttl_ms = d->host.token_ttl_ms,
		};

		if (out_bufsz < sizeof(h))
			break;
		snprintf(h.socket_path, sizeof(h.socket_path), "%s", d->host.socket_path);
		err = d->host.token(d->host.ctx, ctx->pid, ctx->uid, h.token);
		if (err) { /* the host said why, once */
			fuse_reply_err(req, -err);
			return;
		}
		gvm_debug("%s: token for pid %d uid %d", d->name, (int)ctx->pid, (int)ctx->uid);
		fuse_reply_ioctl(req, 0, &h, sizeof(h));
		memset(&h, 0, sizeof(h));
		return;
	}
	case GVMMEM_IOC_STATS: {
		struct gvmmem_stats s;

		if (out_bufsz < sizeof(s))
			break;
		d->host.stats(d->host.ctx, &s);
		fuse_reply_ioctl(req, 0, &s, sizeof(s));
		return;
	}
	default:
		fuse_reply_err(req, ENOTTY);
		return;
	}
	fuse_reply_err(req, EINVAL);
}

static void dev_init_done(void *userdata)
{
	struct bk_cuse *d = userdata;

	d->ready = true;
	gvm_info("/dev/%s ready: VMs attach through it (group and mode from the udev rule)",
		 d->name);
}

static const struct cuse_lowlevel_ops dev_ops = {
	.init_done = dev_init_done,
	.open = dev_open,
	.read = dev_read,
	.write = dev_write,
	.release = dev_release,
	.ioctl = dev_ioctl,
};

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	return writev(fd, iov, count);
}

static const struct fuse_custom_io dev_io = { .read = io_read, .writev = io_writev };

static void dev_close(struct bk_cuse *d);

static void on_request(uv_poll_t *h, int status, int events)
{
	struct bk_cuse *d = h->data;
	int n;

	(void)events;
	if (status < 0) {
		gvm_err("/dev/%s: %s; the device is gone, the socket still serves",
			d->name, uv_strerror(status));
		dev_close(d);
		return;
	}
	n = fuse_session_receive_buf(d->se, &d->buf);
	if (n == -EINTR || n == -EAGAIN)
		return;
	if (n <= 0) {
		gvm_err("/dev/%s: the kernel ended the session (%s); the socket still serves",
			d->name, n ? strerror(-n) : "closed");
		dev_close(d);
		return;
	}
	fuse_session_process_buf(d->se, &d->buf);
}

static void dev_closed(uv_handle_t *h)
{
	struct bk_cuse *d = h->data;

	fuse_session_destroy(d->se); /* closes the fd: the device disappears */
	free(d->buf.mem);
	free(d);
}

static void dev_close(struct bk_cuse *d)
{
	if (d->closing)
		return;
	d->closing = true;
	d->host.gone(d->host.ctx);
	uv_poll_stop(&d->poll);
	uv_close((uv_handle_t *)&d->poll, dev_closed);
}

int bk_cuse_start(uv_loop_t *loop, const struct bk_cuse_host *host, const char *name,
		  struct bk_cuse **out, char *why, size_t n)
{
	char devname[80];
	const char *dev_argv[] = { devname };
	/* At --log-level debug, libfuse traces every request to stderr. */
	const char *argv[] = { "gvm-broker", "-d", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(gvm_log_enabled(GVM_LOG_DEBUG) ? 2 : 1, (char **)argv);
	struct cuse_info ci = { .dev_info_argc = 1, .dev_info_argv = dev_argv,
				.flags = 0 /* restricted ioctls only */ };
	struct bk_cuse *d;
	int err;

	if (!host->token || !host->stats || !host->stats_text || !host->gone) {
		snprintf(why, n, "/dev/%s: its host lacks a call", name);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(why, n, "/dev/%s: out of memory", name);
		return -ENOMEM;
	}
	d->host = *host;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(devname, sizeof(devname), "DEVNAME=%s", name);
	d->fd = open(CUSE_CONTROL_DEV, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (d->fd < 0) {
		err = -errno;
		snprintf(why, n, "%s: %s", CUSE_CONTROL_DEV, strerror(errno));
		free(d);
		return err == -ENOENT || err == -ENXIO ? -ENODEV : err;
	}
	d->se = cuse_lowlevel_new(&args, &ci, &dev_ops, d);
	if (!d->se || fuse_session_custom_io(d->se, &dev_io, d->fd) < 0) {
		snprintf(why, n, "cannot create the CUSE session for /dev/%s", name);
		if (d->se)
			fuse_session_destroy(d->se);
		close(d->fd);
		free(d);
		return -EIO;
	}
	uv_poll_init(loop, &d->poll, d->fd);
	d->poll.data = d;
	uv_poll_start(&d->poll, UV_READABLE, on_request);
	*out = d;
	return 0;
}

void bk_cuse_stop(struct bk_cuse *d)
{
	if (d)
		dev_close(d);
}
